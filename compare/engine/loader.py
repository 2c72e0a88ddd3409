"""A learner's own `Value` class, loaded from a file and checked for what the model needs.

    value_cls = load_engine("my_engine.py")          # the class named Value
    value_cls = load_engine("my_engine.py:Scalar")   # another name
    loaded = load_engine_file("train.py")            # the class and the loader's notes

The file is taken as learners have it: its folder is on sys.path while it loads (for `from
config import ...`), sys.argv is the file alone, what it prints is kept out of the report,
and the recursion limit, sys.argv, sys.path and the working folder are put back afterwards.
Every top-level statement runs, each under a guard (compare.engine.statements): one that reaches
the network, starts a process, writes a file or runs for more than a second (training,
sampling) is stopped and skipped, and so is one that fails; `loaded.skipped` lists each
with its line and reason. The comparison loads a file in a process of its own
(compare.engine.worker).

The scalar model runs on any class with the operations below, so the comparison can train
the learner's engine against torch exactly as it trains the project's.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import io
import os
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path

from .statements import IMPORT_BUDGET, STATEMENT_BUDGET, Overran, guarded, run_statements

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
    """An engine that cannot be loaded or lacks what the model needs; the message is one line.
    `skipped`: the lines of the file the loader skipped (SkippedLine), when it got that far."""

    def __init__(self, message: str, skipped: list | None = None):
        super().__init__(message)
        self.skipped = list(skipped or [])


def parse_engine_spec(spec: str) -> tuple[Path, str]:
    """"FILE" or "FILE:CLASS" -> (path, class name); the class name defaults to Value."""
    path, sep, class_name = spec.rpartition(":")
    if sep and class_name.isidentifier():
        return Path(path), class_name
    return Path(spec), "Value"


@dataclass
class LoadedEngine:
    value_cls: type
    notes: list  # one line each: what the loader did that the learner should know
    skipped: list = field(default_factory=list)  # SkippedLine: the statements stopped or failed while loading


def load_engine(spec: str):
    """The class `spec` names, after checking it has every operation the model uses."""
    loaded = load_engine_file(spec)
    missing = missing_operations(loaded.value_cls)
    if missing:
        raise EngineError(missing_message(loaded.value_cls, spec, missing))
    return loaded.value_cls


def load_engine_file(spec: str) -> LoadedEngine:
    """The class `spec` names, the loader's notes and the lines it skipped; EngineError if
    there is no such class (the message names the skipped lines)."""
    path, class_name = parse_engine_spec(spec)
    module, notes, skipped = import_learner_file(path)
    value_cls = getattr(module, class_name, None)
    if not isinstance(value_cls, type):
        found = sorted(name for name, obj in vars(module).items() if isinstance(obj, type) and obj.__module__ == module.__name__)
        own = next((line for line in skipped if class_name in line.names), None)
        if own is not None:
            others = [line for line in skipped if line is not own]
            also = f"; also skipped while loading: {skipped_summary(others)}" if others else ""
            raise EngineError(f"cannot import {path}, line {own.raised_at or own.line}: {own.reason}{also}", skipped)
        hint = f" (classes there: {', '.join(found)})" if found else " (it defines no class)"
        also = f"; skipped while loading: {skipped_summary(skipped)}" if skipped else ""
        raise EngineError(f"{path} has no class {class_name}{hint}; name one with --engine {path}:CLASS{also}", skipped)
    return LoadedEngine(value_cls, notes, skipped)


def skipped_summary(skipped: list) -> str:
    """The skipped lines on one line: "line 9 (reaches the network ...), line 11 (...)"."""
    return "; ".join(f"line {line.line} `{line.text}` ({line.reason})" for line in skipped)


def missing_message(value_cls, spec, missing: list) -> str:
    """One line: every missing operation with its derivative and a template in the engine's style."""
    style = engine_style(value_cls)
    needs = "; ".join(f"{name} ({REQUIRED_METHODS.get(name) or REQUIRED_ATTRIBUTES[name]}; "
                      f"{template(name, style, value_cls.__name__)})" for name in missing)
    return f"class {value_cls.__name__} in {parse_engine_spec(str(spec))[0]} lacks what the transformer needs: {needs}"


def import_learner_file(path: Path, budget: float = STATEMENT_BUDGET):
    """Import a learner's file as a module: (module, notes, skipped lines). Its folder is on
    sys.path while it loads, sys.argv is the file alone, stdin is empty, what it prints is
    kept from the report, and the interpreter state it changes (recursion limit, sys.argv,
    sys.path, the working folder, the standard streams) is put back afterwards. Every
    top-level statement runs under a guard (compare.engine.statements): one that reaches the
    network, starts a process, writes a file or runs past `budget` seconds is skipped, and
    so is one that fails; each is listed."""
    if not path.is_file():
        raise EngineError(f"engine file not found: {path}")
    package_root, dotted = package_of(path)
    if dotted is not None:
        return _import_from_package(path, package_root, dotted)
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise EngineError(f"cannot read {path}: {error}") from None
    except SyntaxError as error:
        raise EngineError(f"cannot import {path}, line {error.lineno}: SyntaxError: {error.msg}") from None
    name = f"learner_engine_{abs(hash(str(path.resolve())))}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    printed = io.StringIO()
    with _interpreter_state_kept(path), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        sys.modules[name] = module  # dataclasses and pickle look a class's module up by name
        skipped = run_statements(tree, path, module.__dict__, budget)
    notes = []
    if printed.getvalue().strip():
        notes.append(f"{path} printed {len(printed.getvalue().splitlines())} line(s) while loading (not shown)")
    return module, notes, skipped


def package_of(path: Path) -> tuple[Path | None, str | None]:
    """(the folder a package hangs from, the file's dotted module name) for a file inside a
    package (its folder has an __init__.py), so its relative imports work; (None, None) else."""
    folder, parts = path.resolve().parent, [path.stem]
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return (folder, ".".join(parts)) if len(parts) > 1 else (None, None)


def _import_from_package(path: Path, root: Path, dotted: str):
    """A module of a package, imported by its dotted name (a package's modules import each
    other relatively), as one statement under the guard."""
    printed = io.StringIO()
    with _interpreter_state_kept(path), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        sys.path.insert(0, str(root))
        outcome = guarded(IMPORT_BUDGET)
        try:
            with outcome:
                module = importlib.import_module(dotted)
        except Overran:
            raise EngineError(f"cannot import {path}: still running after {IMPORT_BUDGET:g} s") from None
        except (Exception, SystemExit) as error:
            reason = outcome.refused[0] if outcome.refused else f"{type(error).__name__}: {first_line(error)}"
            raise EngineError(f"cannot import {path}{_line_in(error, path)}: {reason}") from None
    notes = [f"{path} printed {len(printed.getvalue().splitlines())} line(s) while loading (not shown)"] \
        if printed.getvalue().strip() else []
    return module, notes, []


def _line_in(error: BaseException, path: Path) -> str:
    """", line N" of the deepest frame of `path` in the error's traceback, or ""."""
    line = None
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename == str(path):
            line = lineno
    if line is None and isinstance(error, SyntaxError) and error.filename == str(path):
        line = error.lineno
    return f", line {line}" if line is not None else ""


@contextlib.contextmanager
def _interpreter_state_kept(path: Path):
    saved = (sys.getrecursionlimit(), list(sys.argv), list(sys.path), os.getcwd())
    stdin, bytecode = sys.stdin, sys.dont_write_bytecode
    sys.argv = [str(path)]
    sys.stdin, sys.dont_write_bytecode = io.StringIO(), True  # nothing to read, nothing written
    sys.path.insert(0, str(path.resolve().parent))  # so `from config import ...` finds its sibling
    try:
        yield
    finally:
        limit, sys.argv, sys.path[:], cwd = saved
        sys.stdin, sys.dont_write_bytecode = stdin, bytecode
        sys.setrecursionlimit(limit)
        if os.getcwd() != cwd:
            os.chdir(cwd)


def engine_style(value_cls) -> str:
    """"closures" (micrograd: a _backward per node) or "local gradients" (a tuple per node)."""
    try:
        source = inspect.getsource(value_cls)
    except (OSError, TypeError):
        source = ""
    return "closures" if "_backward" in source else "local gradients"


# What each operation must compute, and one line of it in either style (V is the class).
DERIVATIVES = {
    "__add__": ("d(a + b)/da = 1, d(a + b)/db = 1", "Value(self.data + other.data, (self, other), (1, 1))",
                "self.grad += out.grad; other.grad += out.grad"),
    "__radd__": ("2.0 + a is a + 2.0", "def __radd__(self, other): return self + other", None),
    "__mul__": ("d(a * b)/da = b, d(a * b)/db = a", "Value(self.data * other.data, (self, other), (other.data, self.data))",
                "self.grad += other.data * out.grad; other.grad += self.data * out.grad"),
    "__rmul__": ("2.0 * a is a * 2.0", "def __rmul__(self, other): return self * other", None),
    "__rsub__": ("2.0 - a is 2.0 + (-a): d/da = -1", "def __rsub__(self, other): return other + (-self)", None),
    "__rtruediv__": ("2.0 / a is 2.0 * a ** -1: d/da = -2.0 / a ** 2",
                     "def __rtruediv__(self, other): return other * self**-1", None),
    "__sub__": ("d(a - b)/da = 1, d(a - b)/db = -1", "def __sub__(self, other): return self + (-other)", None),
    "__neg__": ("d(-a)/da = -1", "def __neg__(self): return self * -1", None),
    "__truediv__": ("d(a / b)/da = 1 / b, d(a / b)/db = -a / b**2", "def __truediv__(self, other): return self * other**-1", None),
    "__pow__": ("d(a ** n)/da = n * a ** (n - 1)", "Value(self.data**n, (self,), (n * self.data**(n - 1),))",
                "self.grad += n * self.data**(n - 1) * out.grad"),
    "log": ("d log(a)/da = 1 / a", "Value(math.log(self.data), (self,), (1 / self.data,))",
            "self.grad += out.grad / self.data"),
    "exp": ("d exp(a)/da = exp(a)", "Value(math.exp(self.data), (self,), (math.exp(self.data),))",
            "self.grad += out.data * out.grad"),
    "relu": ("d relu(a)/da = 1 if a > 0 else 0", "Value(max(0, self.data), (self,), (float(self.data > 0),))",
             "self.grad += (out.data > 0) * out.grad"),
    "backward": ("walk the nodes in reverse topological order, child.grad += local_grad * node.grad",
                 "def backward(self): ...", "self.grad = 1; then each node's _backward() in reverse topological order"),
}


def template(name: str, style: str, class_name: str) -> str:
    """The derivative of operation `name` and one line of it in the engine's style."""
    if name not in DERIVATIVES:
        return "an attribute every Value needs"
    derivative, local, closure = DERIVATIVES[name]
    local = local.replace("Value(", f"{class_name}(")
    if local.startswith("def ") or closure is None:
        return f"{derivative}; e.g. {local}"
    if style == "closures":
        return f"{derivative}; e.g. out = {local.split(', (')[0]}, (self, ...)) with a _backward that does {closure}"
    return f"{derivative}; e.g. return {local}"


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


# --- facts about the engine, gathered where its class lives ------------------------------------

FACT_METHODS = ("__init__", "backward", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                "__truediv__", "__rtruediv__", "__neg__", "__pow__", "__rpow__", "log", "exp", "relu", "tanh",
                "sigmoid", "sqrt", "sin", "cos", "__abs__", "__eq__", "__hash__", "__iadd__", "__isub__", "__imul__",
                "__itruediv__")


def engine_facts(value_cls) -> dict:
    """Plain data about `value_cls` for the diagnosis: each method's file, first line and
    source lines (and those of module functions backward calls), its data's type, mutable
    default arguments of __init__, and containers kept on the class. Never raises."""
    facts = {"methods": {}, "data_type": "", "mutable_defaults": [], "class_containers": [], "eq": False,
             "hash": True}
    try:
        for name in FACT_METHODS:
            function = _function(value_cls, name)
            if function is not None:
                facts["methods"][name] = _source(function)
        backward = _function(value_cls, "backward")
        if backward is not None:
            for helper in _helpers(backward):
                facts["methods"][f"{helper.__name__} (called by backward)"] = _source(helper)
        facts["methods"] = {k: v for k, v in facts["methods"].items() if v}
        facts["eq"] = any("__eq__" in vars(klass) for klass in value_cls.__mro__[:-1])
        facts["hash"] = value_cls.__hash__ is not None
        init = _function(value_cls, "__init__")
        if init is not None:
            for parameter in inspect.signature(init).parameters.values():
                if isinstance(parameter.default, (list, dict, set)):
                    facts["mutable_defaults"].append({"name": parameter.name, "filled": len(parameter.default)})
        for klass in value_cls.__mro__[:-1]:
            for name, value in vars(klass).items():
                if isinstance(value, (list, set)) and not name.startswith("__"):  # a dict is a table, likelier
                    facts["class_containers"].append({"name": name, "size": len(value)})
        data = value_cls(0.1).data
        facts["data_type"] = f"{type(data).__module__}.{type(data).__name__}".replace("builtins.", "")
    except Exception:  # a fact that cannot be read is left out; the probes still speak
        pass
    return facts


def _function(value_cls, name: str):
    for klass in value_cls.__mro__[:-1]:
        if name in vars(klass):
            found = vars(klass)[name]
            found = getattr(found, "__func__", found)
            return found if inspect.isfunction(found) else None
    return None


def _source(function) -> dict:
    try:
        lines, start = inspect.getsourcelines(function)
        return {"file": inspect.getsourcefile(function) or function.__code__.co_filename, "line": start,
                "lines": [line.rstrip("\n") for line in lines[:80]]}
    except (OSError, TypeError):
        return {}


def _helpers(function) -> list:
    """The module-level functions `function` calls by name (a topological sort of its own)."""
    found = []
    for name in function.__code__.co_names:
        candidate = function.__globals__.get(name)
        if inspect.isfunction(candidate) and candidate.__code__.co_filename == function.__code__.co_filename:
            found.append(candidate)
    return found
