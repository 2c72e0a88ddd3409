"""A learner's own `Value` class, loaded from a file and checked for what the model needs.

    value_cls = load_engine("my_engine.py")          # the class named Value
    value_cls = load_engine("my_engine.py:Scalar")   # another name

The scalar model runs on any class with the operations below, so the comparison can train
the learner's engine against torch exactly as it trains the project's.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

# What microgpt_scalar's model.py and train.py ask of a number, and where. The test
# `test_required_operations_are_the_ones_the_step_calls` records the calls a training step
# makes from those two files and finds exactly these. __rsub__ and __rtruediv__ are never
# called: the model only subtracts a plain float from a Value (softmax's shift) and only
# divides a Value by something.
REQUIRED_METHODS = {
    "__add__": "x + y: embeddings, residuals, ms + 1e-5 and every sum",
    "__radd__": "0 + x: the built-in sum starts from the integer 0",
    "__mul__": "x * y: every product in linear, attention and rmsnorm",
    "__rmul__": "(1 / n) * x: the mean of the per-position losses",
    "__sub__": "x - max: softmax's shift by a plain float",
    "__neg__": "-log(p): the loss",
    "__truediv__": "x / y: softmax, rmsnorm's mean and the attention scale",
    "__pow__": "x ** -0.5 in rmsnorm, relu(x) ** 2 in the MLP",
    "log": "log(p) in the loss",
    "exp": "softmax",
    "relu": "the MLP's activation",
    "backward": "loss.backward()",
}
REQUIRED_ATTRIBUTES = {
    "data": "the number a node holds",
    "grad": "d loss / d node, filled in by backward and reset by the optimizer",
}


class EngineError(ValueError):
    """An engine that cannot be loaded or lacks what the model needs; the message is one line."""


def parse_engine_spec(spec: str) -> tuple[Path, str]:
    """"FILE" or "FILE:CLASS" -> (path, class name); the class name defaults to Value."""
    path, sep, class_name = spec.rpartition(":")
    if sep and class_name.isidentifier():
        return Path(path), class_name
    return Path(spec), "Value"


def load_engine(spec: str):
    """The class `spec` names, after checking it has every operation the model uses."""
    path, class_name = parse_engine_spec(spec)
    module = _import_file(path)
    value_cls = getattr(module, class_name, None)
    if not isinstance(value_cls, type):
        found = sorted(name for name, obj in vars(module).items() if isinstance(obj, type) and obj.__module__ == module.__name__)
        hint = f" (classes there: {', '.join(found)})" if found else " (it defines no class)"
        raise EngineError(f"{path} has no class {class_name}{hint}; name one with --engine {path}:CLASS")
    missing = missing_operations(value_cls)
    if missing:
        needs = "; ".join(f"{name} ({REQUIRED_METHODS.get(name) or REQUIRED_ATTRIBUTES[name]})" for name in missing)
        raise EngineError(f"class {class_name} in {path} lacks what the transformer needs: {needs}")
    return value_cls


def _import_file(path: Path):
    if not path.is_file():
        raise EngineError(f"engine file not found: {path}")
    name = f"learner_engine_{abs(hash(str(path.resolve())))}"
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    try:
        loader.exec_module(module)
    except (Exception, SystemExit) as error:  # a learner's file can fail in any way
        raise EngineError(f"cannot import {path}: {type(error).__name__}: {first_line(error)}") from None
    return module


def missing_operations(value_cls) -> list[str]:
    """The names of the required methods and attributes `value_cls` does not have."""
    missing = [name for name in REQUIRED_METHODS if not callable(getattr(value_cls, name, None))]
    try:
        instance = value_cls(1.0)  # the model makes every parameter as value_cls(float)
    except Exception as error:
        raise EngineError(f"{value_cls.__name__}(1.0) fails: {type(error).__name__}: {first_line(error)}") from None
    return missing + [name for name in REQUIRED_ATTRIBUTES if not hasattr(instance, name)]


def first_line(error: BaseException) -> str:
    """The first line of an exception's message: a learner's engine may raise anything, and
    the errors that report it are one line."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
