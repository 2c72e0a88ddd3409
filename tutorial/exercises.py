"""The thirteen exercises and the check of one.

Each exercise is a file under docs/exercises/ with a TODO (its answer is in docs/exercises/answers/);
its check runs the learner's code and the scalar engine on the same inputs and weights. `run`
is the check itself; the command `python scripts/exercise.py NAME` (`tutorial.exercise_command`)
runs it in a process of its own (`tutorial.own_process`).
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXERCISES = Path("docs") / "exercises"
DEFAULT_TIMEOUT_S = 120  # the slowest check (the training loop) takes a few seconds


class Unusable(Exception):
    """A learner's file that cannot be checked at all (empty, does not parse, raises or exits
    while it is imported): one line, naming the file, the line and the problem."""


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    title: str
    check_name: str  # "module:function" in this package: Learner -> report lines; raises Wrong

    @property
    def stub(self) -> Path:
        return EXERCISES / f"{self.name}.py"

    @property
    def answer(self) -> Path:
        return EXERCISES / "answers" / f"{self.name}.py"

    def check(self, learner) -> list[str]:
        """The check, imported when first used (the checks import torch; the command does not)."""
        module, function = self.check_name.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(learner)


STEPS = [
    Step(1, "gradient", "a tensor expression and its gradient", "model_steps:check_gradient"),
    Step(2, "rmsnorm", "rmsnorm on a batch", "model_steps:check_rmsnorm"),
    Step(3, "linear", "a Linear without bias, as an nn.Module", "model_steps:check_linear"),
    Step(4, "mlp", "the MLP as an nn.Module", "model_steps:check_mlp"),
    Step(5, "attention", "one attention head, then multi-head with the causal mask", "model_steps:check_attention"),
    Step(6, "block", "the Block: two sublayers added to the stream", "model_steps:check_block"),
    Step(7, "gpt", "the GPT, with the project's parameter names", "model_steps:check_gpt"),
    Step(8, "loss", "the loss with F.cross_entropy on a padded batch", "training_steps:check_loss"),
    Step(9, "train", "the training loop: zero_grad, backward, step, LambdaLR", "training_steps:check_train"),
    Step(10, "data", "a Dataset and a DataLoader that pads", "training_steps:check_data"),
    Step(11, "checkpoint", "state_dict: save, load and resume", "training_steps:check_checkpoint"),
    Step(12, "sample", "model.eval() and torch.no_grad() for sampling", "training_steps:check_sample"),
    Step(13, "device", "the device: CPU, CUDA or MPS", "training_steps:check_device"),
]
BY_NAME = {step.name: step for step in STEPS}


def load_learner(path: Path, shown: str | None = None, stub: Path | None = None):
    """The learner's file as a module; Unusable if it is empty, does not parse or raises."""
    from .verdict import Learner, Wrong

    shown = shown or str(path)
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Unusable(f"cannot read {shown}: {getattr(error, 'strerror', None) or error}") from None
    if not source.strip():
        start = f"copy the stub {stub}" if stub else "start from the exercise's stub in docs/exercises/"
        raise Unusable(f"{shown} is empty: {start} and write where its TODO is")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as error:
        raise Unusable(f"{shown}, line {error.lineno}: {error.msg} (Python cannot read the file)") from None
    except ValueError as error:  # a NUL byte
        raise Unusable(f"{shown}: {error}") from None
    spec = importlib.util.spec_from_file_location(f"exercise_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    learner = Learner(module, path, shown)
    try:
        learner.call(f"importing {shown}", spec.loader.exec_module, module)
    except Wrong as wrong:
        raise Unusable(f"{wrong.headline} ({'; '.join(d.removeprefix('at ') for d in wrong.details)})") from None
    return learner


def run(name: str, path: Path | None = None) -> tuple[bool, list[str]]:
    """(passed, report lines) of exercise `name` on the file at `path` (default: its stub), run
    in this process; Unusable if the file cannot be checked at all."""
    from .verdict import Wrong

    step = BY_NAME[name]
    path = Path(path) if path is not None else REPO / step.stub
    shown = shown_path(path)
    head = f"step {step.number}, {step.title}: {shown}"
    learner = load_learner(path, shown, step.stub)
    try:
        lines = step.check(learner)
    except Wrong as wrong:
        return False, [head, f"WRONG: {wrong.headline}"] + [f"  {detail}" for detail in wrong.details]
    return True, [head, "OK: it agrees with the scalar engine"] + lines


def shown_path(path: Path) -> str:
    """The path relative to the repository (where the commands run), else as given."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)
