"""A certificate for a learner's scalar engine: train the reference model on it and compare
the log with a golden trace made by the project's engine.

The golden trace (`compare/golden/microgpt.json`, written by `scripts/make_golden.py`) holds,
for the first steps of the published run (preset microgpt, seed 42, names.txt), each step's
loss at full precision and as printed, the norm of every parameter tensor's gradient before
the update, and the names sampled after the last step with the run's continuing RNG:

    golden = load_golden(GOLDEN_PATH)
    certificate = certify(LearnerValue, load_docs("names.txt"), golden, steps=20)
    certificate.passed, certificate.difference   # the first step and tensor that differ

Gradient norms are kept for every step, not only the first: under the microgpt preset
`attn_wo` and `mlp_fc2` start at zero, so at step 1 the gradients of attn_wq/wk/wv and
mlp_fc1 are exactly zero in any correct engine (and in many broken ones); from step 2 on
no tensor's gradient is zero.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from compare.engine.loader import EngineError, first_line, missing_operations
from compare.engine.runner import StepRecord, record_run
from compare.judge.tolerances import GRAD_NORM_TOLERANCE, LOSS_TOLERANCE, close
from microgpt_scalar.config import GPTConfig, get_config, param_shapes
from microgpt_scalar.engine import Value
from microgpt_scalar.files import FileError, read_input, shown

GOLDEN_PATH = Path(__file__).resolve().parent / "golden" / "microgpt.json"
FORMAT = "microgpt-golden"
VERSION = 1


class GoldenError(ValueError):
    """A golden trace that cannot be read, or that does not fit the run asked for."""


@dataclass
class Difference:
    step: int | None  # 1-based step, or None for the samples drawn after training
    what: str  # "loss", "printed loss", "gradient of <tensor>", "samples", "error"
    message: str  # one line naming the culprit, with both numbers
    also: list = field(default_factory=list)  # further tensors that differ at the same step


@dataclass
class Certificate:
    steps: int  # steps compared (the run stops at the first difference)
    samples_compared: bool
    difference: Difference | None = None

    @property
    def passed(self) -> bool:
        return self.difference is None


def documents_digest(docs: list[str]) -> str:
    """sha256 of the documents in file order: identifies the data whatever its line endings."""
    return hashlib.sha256("\n".join(docs).encode("utf-8")).hexdigest()


def make_golden(docs: list[str], steps: int = 20, num_samples: int = 3, preset: str = "microgpt",
                seed: int = 42, overrides: dict | None = None) -> dict:
    """The golden trace of the project's engine, as a dict (`golden_text` gives the file's text).
    `overrides` (n_layer=8, ...) make the trace of another model, made when it is needed."""
    config = get_config(preset, **(overrides or {}))
    records, samples = record_run(docs, steps, num_samples, Value, config, seed)
    return {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        "seed": seed,
        **({"overrides": dict(overrides)} if overrides else {}),
        "num_steps": config.num_steps,  # the run's length, which sets the lr schedule
        "data": {"num_docs": len(docs), "sha256": documents_digest(docs)},
        "steps": [dataclasses.asdict(record) for record in records],
        "samples": {"after_step": steps, "temperature": 0.5, "names": samples},
    }


def golden_text(golden: dict) -> str:
    """The file's exact text: JSON with one step per line (floats round-trip exactly)."""
    head = {key: value for key, value in golden.items() if key not in ("steps", "samples")}
    lines = ["{"]
    lines += [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    lines.append('  "steps": [')
    lines += [f"    {json.dumps(step)}," for step in golden["steps"]]
    lines[-1] = lines[-1].rstrip(",")
    lines.append("  ],")
    lines.append(f'  "samples": {json.dumps(golden["samples"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def load_golden(path=GOLDEN_PATH) -> dict:
    try:
        raw = read_input(path, "golden trace")
    except FileError as error:
        raise GoldenError(str(error)) from None
    path = shown(path)
    try:
        golden = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GoldenError(f"golden trace is not valid JSON: {path} ({error})") from None
    except RecursionError:
        raise GoldenError(f"golden trace {path} is malformed: nested too deeply") from None
    if not isinstance(golden, dict) or golden.get("format") != FORMAT or golden.get("version") != VERSION:
        raise GoldenError(f"not a {FORMAT} file of version {VERSION}: {path}")
    missing = [key for key in ("preset", "seed", "num_steps", "data", "steps", "samples") if key not in golden]
    if missing:
        raise GoldenError(f"golden trace {path} lacks {', '.join(missing)}")
    problem = _golden_problem(golden)
    if problem:
        raise GoldenError(f"golden trace {path} is malformed: {problem}")
    return golden


def _golden_problem(golden: dict) -> str | None:
    """What is wrong inside a golden trace that has every key, or None: a fault here must not
    be blamed on the engine under test."""
    try:
        names = [name for name, _ in param_shapes(get_config(golden["preset"], num_steps=golden["num_steps"]))]
    except (TypeError, ValueError) as error:
        return str(error)
    if not isinstance(golden["seed"], int) or not isinstance(golden["data"], dict) \
            or not {"num_docs", "sha256"} <= set(golden["data"]):
        return "seed must be a whole number and data hold num_docs and sha256"
    for number, step in enumerate(golden["steps"], start=1):
        if not _is_step_record(step, number, names):
            return f"step {number} is not a record of its loss, printed loss and the norms of {', '.join(names)}"
    samples = golden["samples"]
    if not isinstance(samples, dict) or not isinstance(samples.get("after_step"), int) \
            or not isinstance(samples.get("names"), list):
        return "samples must hold after_step and names"
    return None


def _is_step_record(step, number: int, names: list) -> bool:
    """Whether `step` is the StepRecord of step `number` (1-based) as make_golden writes it."""
    return (isinstance(step, dict) and step.get("step") == number and isinstance(step.get("loss"), float)
            and isinstance(step.get("printed"), str) and isinstance(step.get("grad_norms"), dict)
            and sorted(step["grad_norms"]) == sorted(names)
            and all(isinstance(norm, float) for norm in step["grad_norms"].values()))


def check_fit(golden: dict, docs: list[str], steps: int) -> None:
    """Raise GoldenError unless the golden trace covers `steps` steps of a run on `docs`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise GoldenError(f"steps must be a positive whole number, got {steps!r}")
    if steps > len(golden["steps"]):
        raise GoldenError(f"the golden trace has {len(golden['steps'])} steps, fewer than the {steps} asked for")
    if documents_digest(docs) != golden["data"]["sha256"]:
        raise GoldenError(
            f"the documents ({len(docs)}) are not the ones the golden trace was made from "
            f"({golden['data']['num_docs']}); pass the names file with --data"
        )


def compare_record(record: StepRecord, expected: dict) -> Difference | None:
    """The first way one step differs from the golden one: loss, printed loss, gradients."""
    step, want = record.step, expected["loss"]
    if not close(record.loss, want, LOSS_TOLERANCE):
        return Difference(step, "loss", f"step {step}: loss {record.loss!r}, expected {want!r} "
                                        f"(relative difference {_relative(record.loss, want):.3g}, "
                                        f"tolerance {LOSS_TOLERANCE.rtol:g})")
    if record.printed != expected["printed"]:
        return Difference(step, "printed loss", f"step {step}: printed loss {record.printed}, "
                                                f"expected {expected['printed']}")
    wrong = [name for name, want in expected["grad_norms"].items()
             if not close(record.grad_norms.get(name, math.nan), want, GRAD_NORM_TOLERANCE)]
    if not wrong:
        return None
    name, want = wrong[0], expected["grad_norms"][wrong[0]]
    got = record.grad_norms.get(name, math.nan)
    others = f"; also {', '.join(wrong[1:])}" if wrong[1:] else ""
    matching = [other for other in expected["grad_norms"] if other not in wrong]
    fine = f"; these match: {', '.join(matching)}" if matching else ""
    return Difference(step, f"gradient of {name}",
                      f"step {step}: gradient of {name} has norm {got!r}, expected {want!r} (relative "
                      f"difference {_relative(got, want):.3g}, tolerance {GRAD_NORM_TOLERANCE.rtol:g}){others}{fine}",
                      wrong[1:])


def _relative(got: float, want: float) -> float:
    return abs(got - want) / abs(want) if want else math.inf


def certify(value_cls, docs: list[str], golden: dict, steps: int = 20, on_step=None) -> Certificate:
    """Train on `value_cls` and compare with the golden trace, stopping at the first difference.

    `on_step(record)` sees each step as it ends (a script prints the log from it).
    Raises GoldenError if the golden trace does not fit the documents or the steps, and
    EngineError if `value_cls` lacks an operation the model uses.
    """
    check_fit(golden, docs, steps)
    missing = missing_operations(value_cls)
    if missing:
        raise EngineError(f"class {value_cls.__name__} lacks what the transformer needs: {', '.join(missing)}")
    want_samples = wanted_samples(golden, steps)
    config = golden_config(golden)

    def run(check):
        return record_run(docs, steps, len(want_samples), value_cls, config, golden["seed"], check)

    return judge_run(run, golden, steps, on_step)


def wanted_samples(golden: dict, steps: int) -> list:
    """The names the golden trace sampled, if it sampled them after `steps` steps."""
    return golden["samples"]["names"] if steps == golden["samples"]["after_step"] else []


def golden_config(golden: dict) -> GPTConfig:
    return get_config(golden["preset"], num_steps=golden["num_steps"], **golden.get("overrides", {}))


def judge_run(run, golden: dict, steps: int, on_step=None, passthrough: tuple = ()) -> Certificate:
    """Compare what `run(check)` trains with the golden trace. `run` calls `check(record)` after
    each step (which returns False at the first difference, to stop) and returns (records,
    samples); it may train in this process or have another process do it. Errors of the
    `passthrough` types are raised; any other becomes the certificate's difference."""
    want_samples = wanted_samples(golden, steps)
    found, done = [], []

    def check(record: StepRecord):
        done.append(record.step)
        if on_step is not None:
            on_step(record)
        difference = compare_record(record, golden["steps"][record.step - 1])
        if difference is not None:
            found.append(difference)
        return difference is None

    try:
        _, samples = run(check)
    except passthrough:
        raise
    except Exception as error:  # the learner's engine may fail in any way; say where and how
        where = f"step {len(done) + 1}" if len(done) < steps else "sampling"
        step = len(done) + 1 if len(done) < steps else None
        message = f"{where}: the engine raised {type(error).__name__}: {first_line(error)}"
        return Certificate(len(done), False, Difference(step, "error", message))
    if found:
        return Certificate(found[0].step, False, found[0])
    if samples != want_samples:
        return Certificate(steps, True, Difference(None, "samples", f"samples after step {steps}: "
                                                                   f"{samples}, expected {want_samples}"))
    return Certificate(steps, bool(want_samples))
