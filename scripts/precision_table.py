"""How far torch's loss and gradients land from the scalar engine's, per device and precision.

    python scripts/precision_table.py                        # print the table (markdown)
    python scripts/precision_table.py --write docs/bridge.md # and put it in the guide

Every row takes one training step from the same weights ("dense": every matrix drawn with
init_std, so no gradient is zero by construction) on the same documents (compare's built-in
six names, all in one batch) and reports the largest error against the scalar engine, which
computes in Python floats (IEEE float64). The float32 and float64 rows are
`compare.check.compare_step` itself; TF32 and bf16 autocast are switches it does not offer
(it turns TF32 off), so those rows step compare's two sides directly, with the switch on
around the torch side. Rows that need CUDA say so when there is none.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this clone's packages first

if __name__ == "__main__":  # Ctrl-C while the modules load: one line and exit 130, not a traceback
    from microgpt_scalar.startup import quiet_while_starting

    quiet_while_starting()

import contextlib
import re
from dataclasses import dataclass, field

import torch  # noqa: E402

from compare.check import compare_step  # noqa: E402
from compare.judge.diff import compare_tensor  # noqa: E402
from compare.judge.tolerances import Tolerances, tolerances_for  # noqa: E402
from compare.step.documents import ALPHABET, BUILTIN_DOCS, given_documents  # noqa: E402
from compare.step.scalar import ScalarSide  # noqa: E402
from compare.step.torch_side import TorchSide
from compare.step.weights import load_weights  # noqa: E402
from microgpt_scalar.cli import OneLineParser, command, print_error  # noqa: E402
from microgpt_scalar.config import get_config  # noqa: E402
from microgpt_scalar.engine import Value  # noqa: E402
from microgpt_scalar.files import FileError, claim_output, read_input  # noqa: E402
from microgpt_scalar.optim import Adam  # noqa: E402
from microgpt_torch.device import float32_precision  # noqa: E402

TABLE = re.compile(r"(<!-- precision-table -->\n).*?(<!-- /precision-table -->)", re.S)
WEIGHTS = "dense"


@dataclass(frozen=True)
class Setting:
    label: str  # the row's name in the table
    device: str
    dtype: str  # the parameters' dtype: "float64" or "float32"
    switch: str = ""  # "", "tf32" (TensorFloat-32 matrix products) or "bf16" (bfloat16 autocast)


SETTINGS = (
    Setting("CPU, float64", "cpu", "float64"),
    Setting("CPU, float32", "cpu", "float32"),
    Setting("CPU, float32 + bf16 autocast", "cpu", "float32", "bf16"),
    Setting("CUDA, float32, TF32 off", "cuda", "float32"),
    Setting("CUDA, float32, TF32 on", "cuda", "float32", "tf32"),
    Setting("CUDA, float32 + bf16 autocast", "cuda", "float32", "bf16"),
)


@dataclass
class Row:
    setting: Setting
    loss: float = 0.0  # the scalar engine's loss
    torch_loss: float = 0.0
    grads: dict = field(default_factory=dict)  # name -> (scalar gradients, torch gradients), flat
    not_run: str = ""  # why the row was not measured

    @property
    def loss_error(self) -> float:
        return abs(self.torch_loss - self.loss)

    @property
    def grad_error(self) -> float:
        """The largest |torch - scalar| over every gradient entry."""
        return max(abs(t - s) for ours, theirs in self.grads.values() for s, t in zip(ours, theirs))

    @property
    def grad_scale(self) -> float:
        """The largest |scalar gradient|."""
        return max(abs(g) for ours, _ in self.grads.values() for g in ours)


def measure(setting: Setting) -> Row:
    """One row: one step from the dense weights on the built-in documents."""
    if setting.device == "cuda" and not torch.cuda.is_available():
        return Row(setting, not_run=f"not run: no CUDA device (torch {torch.__version__})")
    if not setting.switch:
        report = compare_step(weights=WEIGHTS, dtype=setting.dtype, device=setting.device)
        grads = {name: (both["scalar"], both["torch"]) for name, both in report.gradient_values.items()}
        return Row(setting, report.losses[0].scalar, report.losses[0].torch, grads)
    return _measure_switched(setting)


def _measure_switched(setting: Setting) -> Row:
    """compare_step's first step, by hand, with TF32 or autocast on around the torch side."""
    start = load_weights(WEIGHTS, get_config(), ALPHABET)
    batch = given_documents(BUILTIN_DOCS, start.chars).batch(0)
    scalar = ScalarSide(start, Value, Adam).step(batch, 0)
    torch_side = TorchSide(start, getattr(torch, setting.dtype), setting.device)
    with _switch(setting):
        torch_result = torch_side.step(batch, 0)
    grads = {name: (_flat(scalar.grads[name]), _flat(torch_result.grads[name])) for name in scalar.grads}
    return Row(setting, scalar.loss, torch_result.loss, grads)


def _flat(rows: list) -> list:
    return [x for row in rows for x in row]


@contextlib.contextmanager
def _switch(setting: Setting):
    if setting.switch == "bf16":
        with torch.autocast(setting.device, dtype=torch.bfloat16):
            yield
        return
    with float32_precision("tf32" if setting.switch == "tf32" else "ieee"):
        yield


def within(row: Row, tolerances: Tolerances) -> bool:
    """Whether every number of a row passes compare's rule for these tolerances, entry by entry."""
    if not compare_tensor("loss", row.torch_loss, row.loss, tolerances.values).agrees:
        return False
    return all(compare_tensor(name, torch_grads, scalar_grads, tolerances.gradients).agrees
               for name, (scalar_grads, torch_grads) in row.grads.items())


def markdown(rows: list[Row]) -> str:
    lines = ["| torch run | loss error | largest gradient error | gradient error / largest gradient | "
             "within compare's float64 / float32 tolerance |",
             "|---|---|---|---|---|"]
    for row in rows:
        if row.not_run:
            lines.append(f"| {row.setting.label} | {row.not_run} | | | |")
            continue
        verdict = " / ".join("yes" if within(row, tolerances_for(d)) else "no" for d in ("float64", "float32"))
        lines.append(f"| {row.setting.label} | {row.loss_error:.1e} | {row.grad_error:.1e} | "
                     f"{row.grad_error / row.grad_scale:.1e} | {verdict} |")
    lines.append("")
    scale = next((row for row in rows if not row.not_run), None)
    if scale is not None:
        lines.append(f"The scalar engine's loss is {scale.loss:.4f} and its largest gradient "
                     f"{scale.grad_scale:.2e}; torch {torch.__version__}.")
    bounds = "; ".join(f"{d}: values {_bound(tolerances_for(d).values)}, "
                       f"gradients {_bound(tolerances_for(d).gradients)}" for d in ("float64", "float32"))
    lines.append(f"compare's tolerances, |torch - scalar| <= atol + rtol * |scalar| ({bounds}).")
    return "\n".join(lines) + "\n"


def _bound(tolerance) -> str:
    return f"atol {tolerance.atol:g}, rtol {tolerance.rtol:g}"


def with_table(text: str, table: str) -> str:
    """`text` with `table` between its precision-table markers; ValueError if it has none."""
    if not TABLE.search(text):
        raise ValueError("the guide has no <!-- precision-table --> ... <!-- /precision-table --> markers")
    return TABLE.sub(lambda m: m[1] + table + m[2], text)


@command
def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", metavar="GUIDE", help="replace the table between the guide's precision-table markers")
    args = parser.parse_args(argv)
    guide, text = None, ""
    try:
        if args.write is not None:
            guide = claim_output(args.write, "--write", overwrite=True)  # the guide it updates, no other run's
            text = read_input(args.write, "guide").decode("utf-8")
            with_table(text, "")  # fail before measuring if the markers are missing
    except UnicodeDecodeError:
        print_error(f"--write {args.write}: the guide is not UTF-8 text")
        return 2
    except ValueError as error:
        print_error(error)
        return 2
    table = markdown([measure(setting) for setting in SETTINGS])
    print(table, end="")
    if guide:
        try:
            guide.write(with_table(text, table).encode("utf-8"))  # all or nothing: the old guide stays whole
        except FileError as error:
            print_error(error)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
