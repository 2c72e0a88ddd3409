"""The messages between the checker and the engine's process, one JSON object a line.

Each message is a dataclass with `to_dict` (what is sent) and `from_dict` (what is read).
Reading checks a message against its schema: every field present, of its type, numbers as
numbers, tables of the model's shapes; anything else raises ProtocolError, one line. The
engine's process runs untrusted code, which can write to the pipe too, so what the checker
reads is never taken on trust: a line that is not a message of the kind expected next ends
the run, and every string is shown with its control characters escaped (`shown`).

    parent -> engine   LoadRequest, then TrainRequest, CertifyRequest or Stop
    engine -> parent   SandboxReport (before any of the engine's code runs),
                       EngineFound or LoadError,
                       then Depth, Step per step, FiniteDiffs, Done   (training)
                       or Record per step, Samples                   (a certificate)
                       Failure whenever the engine fails

    line = encode(EngineFound(...))           # '{"kind": "engine", ...}\\n'
    message = decode(line, EngineFound, Failure)   # the kinds the reader expects now
"""
from __future__ import annotations

import dataclasses
import json
import unicodedata
from dataclasses import dataclass, field

MAX_LINE = 1 << 28  # bytes in one message; a model's step is a few MB at most


class ProtocolError(ValueError):
    """A line from the engine's process that is not a message expected there; one line."""


def shown(text: str, limit: int = 2000) -> str:
    """`text` safe to print: control, format and separator characters (ANSI escapes, carriage
    returns, newlines, bidirectional overrides) written as \\xNN or \\uNNNN, at most `limit` long."""
    out = []
    for ch in str(text)[:limit]:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out) + ("..." if len(str(text)) > limit else "")


# --- checking the fields of a message ---

def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{name} is not a string")
    return shown(value)


def _optional_string(value, name: str):
    return None if value is None else _string(value, name)


def _whole(value, name: str, low: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        raise ProtocolError(f"{name} is not a whole number" + (f" >= {low}" if low is not None else ""))
    return value


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"{name} is not a number")
    return float(value)


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{name} is not true or false")
    return value


def _strings(value, name: str) -> list:
    if not isinstance(value, list):
        raise ProtocolError(f"{name} is not a list")
    return [_string(item, f"{name}[{i}]") for i, item in enumerate(value)]


def _numbers(value, name: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise ProtocolError(f"{name} is not a list of {length if length is not None else 'some'} numbers")
    return [_number(item, name) for item in value]


def _tables(value, name: str, shapes: dict | None) -> dict:
    """name -> rows of numbers; with `shapes` (name -> (rows, columns)), exactly those."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} is not a table of tensors")
    if shapes is not None and sorted(value) != sorted(shapes):
        raise ProtocolError(f"{name} does not hold the model's tensors ({', '.join(shapes)})")
    tables = {}
    for tensor, rows in value.items():
        n_rows, n_cols = shapes[tensor] if shapes is not None else (None, None)
        if not isinstance(rows, list) or (n_rows is not None and len(rows) != n_rows):
            raise ProtocolError(f"{name}[{shown(tensor)}] does not have {n_rows} rows")
        tables[tensor] = [_numbers(row, f"{name}[{shown(tensor)}]", n_cols) for row in rows]
    return tables


def _fields(data, cls) -> dict:
    if not isinstance(data, dict):
        raise ProtocolError("the message is not a JSON object")
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [name for name in names if name not in data]
    if missing:
        raise ProtocolError(f"it lacks {', '.join(missing)}")
    return data


class Message:
    kind = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}


# --- parent -> engine ---

@dataclass
class LoadRequest(Message):
    kind = "load"
    engine: str | None  # "FILE[:CLASS]", or None for the project's engine
    inject: str | None  # a fault of compare.faults, or None
    cwd: str = ""  # the folder a relative engine path is relative to: the parent's working folder

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(data["engine"], data["inject"], data["cwd"])


@dataclass
class TrainRequest(Message):
    kind = "train"
    weights: dict  # config, chars, params, adam, step, seed: a Checkpoint's fields
    batches: list  # per step, the documents' token lists
    fd: int
    seed: int
    limited: bool  # backward has a depth limit: measure what one more layer adds

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(data["weights"], data["batches"], data["fd"], data["seed"], data["limited"])


@dataclass
class CertifyRequest(Message):
    kind = "certify"
    docs: list
    steps: int
    num_samples: int
    config: dict
    seed: int

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(data["docs"], data["steps"], data["num_samples"], data["config"], data["seed"])


@dataclass
class Stop(Message):
    kind = "stop"

    @classmethod
    def from_dict(cls, data, shapes=None):
        return cls()


# --- engine -> parent ---

@dataclass
class SandboxReport(Message):
    """Sent by the engine's process before the engine's code is loaded, so it is the sandbox's own word."""

    kind = "sandbox"
    level: str  # one line: what confines the engine's process

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_string(data["level"], "level"))


@dataclass
class EngineFound(Message):
    kind = "engine"
    notes: list  # one line each: what the loader did that the learner should know
    probes: dict  # compare.probes' raw numbers, judged by the parent
    chain: list | None  # [longest chain backward survived, shortest it failed on or None]
    missing: str | None  # the refusal, when the engine lacks an operation

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        chain = data["chain"]
        if chain is not None:
            if not isinstance(chain, list) or len(chain) != 2:
                raise ProtocolError("chain is not [survived, failed]")
            chain = [_whole(chain[0], "chain"), None if chain[1] is None else _whole(chain[1], "chain")]
        return cls(_strings(data["notes"], "notes"), _probes(data["probes"]), chain,
                   _optional_string(data["missing"], "missing"))


def _probes(value) -> dict:
    """expression -> {"value", "grads"[, "rounds"]} or {"error"} or {"missing"}."""
    if not isinstance(value, dict):
        raise ProtocolError("probes is not a table")
    probes = {}
    for key, got in value.items():
        name = f"probe {shown(key)}"
        if not isinstance(got, dict):
            raise ProtocolError(f"{name} is not a table")
        if "missing" in got:
            probes[shown(key)] = {"missing": _strings(got["missing"], name)}
        elif "error" in got:
            probes[shown(key)] = {"error": _string(got["error"], name)}
        else:
            if "value" not in got or "grads" not in got:
                raise ProtocolError(f"{name} has neither numbers nor an error")
            probe = {"value": _number(got["value"], name), "grads": _numbers(got["grads"], name)}
            if "rounds" in got:
                probe["rounds"] = _numbers(got["rounds"], name)
            probes[shown(key)] = probe
    return probes


@dataclass
class LoadError(Message):
    kind = "error"
    message: str  # why the engine could not be loaded

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_string(data["message"], "message"))


@dataclass
class Failure(Message):
    kind = "failure"
    message: str  # what the engine did: "raised ZeroDivisionError", "called sys.exit(0)"
    detail: str = ""  # its error's first line
    step: int | None = None
    recursion: bool = False

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        step = None if data["step"] is None else _whole(data["step"], "step")
        return cls(_string(data["message"], "message"), _string(data["detail"], "detail"), step,
                   _flag(data["recursion"], "recursion"))


@dataclass
class Depth(Message):
    kind = "depth"
    graph: int
    per_layer: int | None
    n_layer: int

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        per_layer = None if data["per_layer"] is None else _whole(data["per_layer"], "per_layer")
        return cls(_whole(data["graph"], "graph"), per_layer, _whole(data["n_layer"], "n_layer"))


@dataclass
class Step(Message):
    kind = "step"
    step: int
    loss: float
    grads: dict  # name -> rows, before the update
    params: dict  # after the update
    adam_m: dict
    adam_v: dict
    traces: list  # per document: stage -> one list of numbers per position

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        traces = data["traces"]
        if not isinstance(traces, list):
            raise ProtocolError("traces is not a list")
        return cls(_whole(data["step"], "step"), _number(data["loss"], "loss"),
                   *(_tables(data[name], name, shapes) for name in ("grads", "params", "adam_m", "adam_v")),
                   [_tables(trace, "traces", None) for trace in traces])


@dataclass
class FiniteDiffs(Message):
    kind = "fd"
    step_size: float
    entries: list  # {"name", "index": [row, col], "autograd", "estimate"}: the numbers, judged by the parent

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        if not isinstance(data["entries"], list):
            raise ProtocolError("entries is not a list")
        entries = []
        for entry in data["entries"]:
            if not isinstance(entry, dict) or not {"name", "index", "autograd", "estimate"} <= set(entry):
                raise ProtocolError("a finite difference lacks name, index, autograd or estimate")
            name = _string(entry["name"], "name")
            index = entry["index"]
            if shapes is not None and name not in shapes:
                raise ProtocolError(f"finite difference of {name}, not a tensor of the model")
            if not isinstance(index, list) or len(index) != 2:
                raise ProtocolError("a finite difference's index is not [row, col]")
            index = [_whole(index[0], "index"), _whole(index[1], "index")]
            if shapes is not None and not (index[0] < shapes[name][0] and index[1] < shapes[name][1]):
                raise ProtocolError(f"finite difference at {index}, outside {name}")
            entries.append({"name": name, "index": index, "autograd": _number(entry["autograd"], "autograd"),
                            "estimate": _number(entry["estimate"], "estimate")})
        return cls(_number(data["step_size"], "step_size"), entries)


@dataclass
class Done(Message):
    kind = "done"

    @classmethod
    def from_dict(cls, data, shapes=None):
        return cls()


@dataclass
class Record(Message):
    """One step of a certificate's run: the raw loss and gradients; the parent derives the
    printed loss and the gradient norms itself."""

    kind = "record"
    step: int  # 1-based
    loss: float
    grads: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_whole(data["step"], "step", 1), _number(data["loss"], "loss"), _tables(data["grads"], "grads", shapes))


@dataclass
class Samples(Message):
    kind = "samples"
    names: list

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_strings(data["names"], "names"))


KINDS = {cls.kind: cls for cls in (LoadRequest, TrainRequest, CertifyRequest, Stop, SandboxReport, EngineFound,
                                    LoadError, Failure, Depth, Step, FiniteDiffs, Done, Record, Samples)}


def encode(message: Message) -> str:
    return json.dumps(message.to_dict()) + "\n"


def decode(line: str, *expected, shapes: dict | None = None) -> Message:
    """The message on `line`, which must be of one of the `expected` classes; ProtocolError
    (one line) for anything else. `shapes` (tensor name -> (rows, columns)) fixes the
    tables' shapes."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolError(f"a line that is not a message: {shown(line, 80)!s}") from None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise ProtocolError("a message without a kind")
    cls = KINDS.get(data["kind"])
    if cls not in expected:
        wanted = " or ".join(repr(c.kind) for c in expected)
        raise ProtocolError(f"a {shown(data['kind'], 40)!r} message where {wanted} was due")
    try:
        return cls.from_dict(data, shapes)
    except ProtocolError as error:
        raise ProtocolError(f"a malformed {cls.kind!r} message ({error})") from None
    except (TypeError, KeyError, AttributeError, RecursionError) as error:  # a shape the checks above missed
        raise ProtocolError(f"a malformed {cls.kind!r} message ({type(error).__name__})") from None

