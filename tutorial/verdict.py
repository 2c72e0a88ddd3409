"""How a check says what is wrong: in the learner's terms (shape, value, gradient, which element),
with the line of their file to look at, and the typical mistake their numbers match, if any."""
from __future__ import annotations

import inspect
import os
import traceback
from pathlib import Path

import torch

ATOL, RTOL = 1e-12, 1e-9  # float64 on both sides: only the order of sums differs (about 1e-16)


class Wrong(Exception):
    """What the learner's piece does wrong: a headline, then lines of detail."""

    def __init__(self, headline: str, *details: str):
        super().__init__(headline)
        self.headline, self.details = headline, [d for d in details if d]


class Learner:
    """The learner's file, loaded as a module, and calls into it that report failures by line."""

    def __init__(self, module, path: Path, shown: str | None = None):
        self.module, self.path = module, Path(path)
        self.shown = shown or str(path)  # the path as the learner knows it

    def get(self, name: str):
        if not hasattr(self.module, name):
            raise Wrong(f"{self.shown} has no {name}", f"the exercise asks for `{name}`: keep its name as the stub has it")
        return getattr(self.module, name)

    def call(self, what: str, function, *args, hints=(), **kwargs):
        """function(*args, **kwargs); an exception becomes a Wrong naming `what`, the learner's line
        and, where the message matches one of `hints` (text, advice), the advice."""
        try:
            return function(*args, **kwargs)
        except Wrong:
            raise
        except NotImplementedError as error:
            raise Wrong(f"{what} is not written yet ({error or 'NotImplementedError'})",
                        f"write it where the TODO is: {self.where(error)}") from None
        except Exception as error:  # the learner's code may raise anything
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            advice = [tip for text, tip in hints if text in str(error)]
            raise Wrong(f"{what} raised {message}", f"at {self.where(error)}", *advice) from None

    def where(self, error: BaseException) -> str:
        """'docs/exercises/mlp.py, line 12: x = self.fc1(x)': the last frame in the learner's file."""
        frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == self.path.resolve()]
        if not frames:
            return self.shown
        frame = frames[-1]
        return f"{self.shown}, line {frame.lineno}: {(frame.line or '').strip()}"


def as_float64(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu()


def element(index, axes) -> str:
    """(1, 3, 5), ("document", "position", "element") -> 'document 1, position 3, element 5'."""
    names = list(axes)[-len(index):] if index else []
    return ", ".join(f"{name} {i}" for name, i in zip(names, index)) or "the value"


def worst(got: torch.Tensor, expected: torch.Tensor):
    """(largest |diff|, its index, whether every element is within tolerance)."""
    diff = (got - expected).abs()
    within = bool((diff <= ATOL + RTOL * expected.abs()).all())
    flat = int(diff.argmax()) if diff.numel() else 0
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape)) if diff.dim() else ()
    return float(diff.max()) if diff.numel() else 0.0, index, within


def expect_close(what: str, got, expected, axes=("element",), mistakes=(), hint_none: str = "") -> str:
    """Check the learner's tensor `got` against the scalar engine's numbers `expected`; raise
    Wrong naming the shape, the dtype or the worst element (and the typical mistake whose numbers
    `got` matches, from `mistakes`: (description, a function giving that mistake's numbers)).
    Returns a line for the report when they agree."""
    expected = as_float64(expected)
    if got is None:
        raise Wrong(f"{what} is None", hint_none)
    if not isinstance(got, torch.Tensor):
        raise Wrong(f"{what} is a {type(got).__name__}, expected a tensor of shape {tuple(expected.shape)}")
    if tuple(got.shape) != tuple(expected.shape):
        raise Wrong(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)} "
                    f"({' x '.join(axes[-expected.dim():]) if expected.dim() else 'one number'})")
    if not got.is_floating_point():
        raise Wrong(f"{what} has dtype {got.dtype}, expected a floating-point tensor (torch.float64)")
    values = as_float64(got)
    largest, index, within = worst(values, expected)
    if within:
        if got.dtype != torch.float64:
            raise Wrong(f"{what} is {got.dtype}, expected torch.float64",
                        "the scalar engine computes in Python floats, which are float64: make the tensors with "
                        "dtype=torch.float64 (or call .double() on the module)")
        return f"  {what:28} {str(tuple(got.shape)):14} max |diff| {largest:.1e}  ok"
    details = [f"at {element(index, axes)}: expected {expected[index].item():.10g}, got {values[index].item():.10g} "
               f"(largest |diff| {largest:.2e}; {int((~close_mask(values, expected)).sum())} of {values.numel()} "
               f"elements differ)"]
    if got.dtype != torch.float64 and largest <= 1e-5 * max(1.0, float(expected.abs().max())):
        details.append(f"the difference is float32's rounding: {what} is {got.dtype}; compute in torch.float64")
    for description, make in mistakes:
        try:
            candidate = as_float64(make())
        except Exception:  # a mistake that cannot even run on these shapes is not this one
            continue
        if candidate.shape == values.shape and worst(values, candidate)[2]:
            details.append(f"these are the numbers of a known mistake: {description}")
            break
    raise Wrong(f"{what} differs from the scalar engine", *details)


def close_mask(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    return (got - expected).abs() <= ATOL + RTOL * expected.abs()


def load_weights(what: str, module: torch.nn.Module, state_dict: dict, naming: str = "") -> None:
    """module.load_state_dict(state_dict) in float64; a mismatch of names or shapes becomes a Wrong."""
    if not isinstance(module, torch.nn.Module):
        raise Wrong(f"{what} is a {type(module).__name__}, not an nn.Module", "subclass torch.nn.Module and call "
                    "super().__init__() first in __init__")
    own = dict(module.state_dict())
    if not own:
        raise Wrong(f"{what} has no parameters yet", f"create them in __init__, where the TODO is: {todo_in_init(module)}",
                    "a tensor becomes a parameter as an nn.Parameter, or inside a submodule such as nn.Linear")
    missing, extra = sorted(set(state_dict) - set(own)), sorted(set(own) - set(state_dict))
    if missing or extra:
        raise Wrong(f"{what}'s parameter names are not the project's, so its weights cannot load",
                    f"missing: {', '.join(missing) or 'none'}", f"unexpected: {', '.join(extra) or 'none'}", naming)
    for name, tensor in state_dict.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise Wrong(f"{what}'s {name} has shape {tuple(own[name].shape)}, the project's has {tuple(tensor.shape)}",
                        "a weight is kept as (n_out, n_in), as nn.Linear keeps it and as the scalar rows are")
    module.double()
    module.load_state_dict(state_dict)


def todo_in_init(module) -> str:
    """'docs/exercises/mlp.py, line 24: # TODO: ...' for the TODO in the module's __init__, if it has one."""
    try:
        lines, first = inspect.getsourcelines(type(module).__init__)
        path = Path(inspect.getsourcefile(type(module).__init__))
    except (OSError, TypeError):
        return f"{type(module).__name__}.__init__"
    shown = os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    for number, line in enumerate(lines, start=first):
        if "TODO" in line:
            return f"{shown}, line {number}: {line.strip()}"
    return f"{shown}, line {first}"


def leaf(values) -> torch.Tensor:
    """A float64 tensor that records its gradient: an input whose gradient the check compares."""
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)
