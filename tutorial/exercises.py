"""The thirteen exercises and the command that checks one: `python scripts/exercise.py NAME`.

Each exercise is a file under docs/exercises/ with a TODO (its answer is in docs/exercises/answers/);
its check runs the learner's code and the scalar engine on the same inputs and weights.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from . import model_steps, training_steps
from .verdict import Learner, Wrong

REPO = Path(__file__).resolve().parents[1]
EXERCISES = Path("docs") / "exercises"


@dataclass(frozen=True)
class Step:
    number: int
    name: str
    title: str
    check: object  # Learner -> report lines; raises Wrong

    @property
    def stub(self) -> Path:
        return EXERCISES / f"{self.name}.py"

    @property
    def answer(self) -> Path:
        return EXERCISES / "answers" / f"{self.name}.py"


STEPS = [
    Step(1, "gradient", "a tensor expression and its gradient", model_steps.check_gradient),
    Step(2, "rmsnorm", "rmsnorm on a batch", model_steps.check_rmsnorm),
    Step(3, "linear", "a Linear without bias, as an nn.Module", model_steps.check_linear),
    Step(4, "mlp", "the MLP as an nn.Module", model_steps.check_mlp),
    Step(5, "attention", "one attention head, then multi-head with the causal mask", model_steps.check_attention),
    Step(6, "block", "the Block: two sublayers added to the stream", model_steps.check_block),
    Step(7, "gpt", "the GPT, with the project's parameter names", model_steps.check_gpt),
    Step(8, "loss", "the loss with F.cross_entropy on a padded batch", training_steps.check_loss),
    Step(9, "train", "the training loop: zero_grad, backward, step, LambdaLR", training_steps.check_train),
    Step(10, "data", "a Dataset and a DataLoader that pads", training_steps.check_data),
    Step(11, "checkpoint", "state_dict: save, load and resume", training_steps.check_checkpoint),
    Step(12, "sample", "model.eval() and torch.no_grad() for sampling", training_steps.check_sample),
    Step(13, "device", "the device: CPU, CUDA or MPS", training_steps.check_device),
]
BY_NAME = {step.name: step for step in STEPS}


def load_learner(path: Path, shown: str | None = None) -> Learner:
    """The learner's file as a module; a file that does not even import becomes a Wrong."""
    spec = importlib.util.spec_from_file_location(f"exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    learner = Learner(module, path, shown)
    learner.call(f"importing {path}", spec.loader.exec_module, module)
    return learner


def run(name: str, path: Path | None = None) -> tuple[bool, list[str]]:
    """(passed, report lines) of exercise `name` on the file at `path` (default: its stub)."""
    step = BY_NAME[name]
    path = Path(path) if path is not None else REPO / step.stub
    shown = shown_path(path)
    head = f"step {step.number}, {step.title}: {shown}"
    try:
        learner = load_learner(path, shown)
        lines = step.check(learner)
    except Wrong as wrong:
        return False, [head, f"WRONG: {wrong.headline}"] + [f"  {detail}" for detail in wrong.details]
    return True, [head, "OK: it agrees with the scalar engine"] + lines


def shown_path(path: Path) -> str:
    """The path relative to the repository (where the commands run), else as given."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def listing() -> list[str]:
    return [f"{step.number:2d}  {step.name:11} {step.title}   ({step.stub})" for step in STEPS]


def main(argv=None) -> int:
    from microgpt_scalar.cli import OneLineParser, print_error
    from microgpt_scalar.files import FileError, check_input

    parser = OneLineParser(description="Check one exercise of the tutorial against the scalar engine.")
    parser.add_argument("name", nargs="?", choices=[step.name for step in STEPS], metavar="NAME",
                        help="the exercise: " + ", ".join(step.name for step in STEPS))
    parser.add_argument("--file", help="check this file instead of docs/exercises/NAME.py")
    parser.add_argument("--list", action="store_true", help="list the exercises")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        print("\n".join(listing()))
        return 0 if args.list else 2
    try:
        path = check_input(args.file, "--file") if args.file is not None else None
    except FileError as error:  # no such file, a directory, a FIFO, a name no file can have
        print_error(error)
        return 2
    passed, lines = run(args.name, path.resolve() if path else None)
    print("\n".join(lines))
    return 0 if passed else 1
