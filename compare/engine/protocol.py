"""The messages between the checker and the engine's process, one JSON object a line.

Each message is a dataclass with `to_dict` (what is sent) and `from_dict` (what is read).
Reading checks a message against its schema: every field present, of its type, numbers as
numbers, tables of the model's shapes; anything else raises ProtocolError, one line. The
engine's process runs untrusted code, which can write to the pipe too, so what the checker
reads is never taken on trust: a line that is not a message of the kind expected next ends
the run, and every string is shown with its control characters escaped (`shown`).

    parent -> engine   LoadRequest, then TrainRequest, CertifyRequest or Stop
    engine -> parent   SandboxReport (before any of the engine's code runs),
                       EngineFacts and one ProbeResult per probe, as each ends,
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


def _where(value, name: str) -> dict:
    """A line of the engine's code: {"file", "line", "text"}, or {} when unknown."""
    if value is None or value == {}:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} is not a place in a file")
    return {"file": _string(value.get("file"), f"{name}.file"), "line": _whole(value.get("line"), f"{name}.line"),
            "text": _string(value.get("text"), f"{name}.text")}


def _skipped_lines(value, name: str = "skipped") -> list:
    """The lines the loader skipped: dicts of compare.engine.statements.SkippedLine's fields."""
    if not isinstance(value, list):
        raise ProtocolError(f"{name} is not a list")
    lines = []
    for i, line in enumerate(value):
        if not isinstance(line, dict):
            raise ProtocolError(f"{name}[{i}] is not a skipped line")
        raised_at = line.get("raised_at")
        lines.append({"line": _whole(line.get("line"), f"{name}[{i}].line"),
                      "text": _string(line.get("text"), f"{name}[{i}].text"),
                      "reason": _string(line.get("reason"), f"{name}[{i}].reason"),
                      "names": _strings(line.get("names", []), f"{name}[{i}].names"),
                      "raised_at": None if raised_at is None else _whole(raised_at, f"{name}[{i}].raised_at")})
    return lines


def _facts(value) -> dict:
    """compare.engine.loader.engine_facts: the engine's methods' source lines and a few flags."""
    if not isinstance(value, dict):
        raise ProtocolError("facts is not a table")
    methods = value.get("methods", {})
    if not isinstance(methods, dict):
        raise ProtocolError("facts.methods is not a table")
    checked = {}
    for method, source in methods.items():
        name = f"facts.methods[{shown(method, 40)}]"
        if not isinstance(source, dict):
            raise ProtocolError(f"{name} is not a table")
        checked[shown(method)] = {"file": _string(source.get("file"), f"{name}.file"),
                                  "line": _whole(source.get("line"), f"{name}.line"),
                                  "lines": _strings(source.get("lines"), f"{name}.lines")}

    def counted(key: str, size: str) -> list:
        items = value.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise ProtocolError(f"facts.{key} is not a list of tables")
        return [{"name": _string(item.get("name"), f"facts.{key}"), size: _whole(item.get(size), f"facts.{key}")}
                for item in items]

    return {"methods": checked, "data_type": _string(value.get("data_type", ""), "facts.data_type"),
            "mutable_defaults": counted("mutable_defaults", "filled"),
            "class_containers": counted("class_containers", "size"),
            "eq": _flag(value.get("eq", False), "facts.eq"), "hash": _flag(value.get("hash", True), "facts.hash")}


def _speed(value) -> dict:
    """compare.engine.depth.backward_speed: {} or {"per_node", "growth", "nodes"}."""
    if not isinstance(value, dict):
        raise ProtocolError("speed is not a table")
    if not value:
        return {}
    speed = {"per_node": _number(value.get("per_node"), "speed.per_node"),
             "growth": _number(value.get("growth"), "speed.growth"),
             "nodes": _whole(value.get("nodes"), "speed.nodes")}
    if not speed["per_node"] >= 0 or not speed["growth"] >= 0:  # NaN fails both
        raise ProtocolError("speed holds a negative or undefined time")
    return speed


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
    inject: str | None  # a fault of compare.engine.faults, or None
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
class EngineFacts(Message):
    """What the engine's code looks like, for the diagnosis: sent once loaded, before the probes."""

    kind = "facts"
    facts: dict

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_facts(data["facts"]))


@dataclass
class ProbeResult(Message):
    """One probe's raw result, sent as it ends, so that it is kept if the process then fails."""

    kind = "probe"
    key: str
    result: dict

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_string(data["key"], "key"), _probe(data["key"], data["result"]))


@dataclass
class EngineFound(Message):
    kind = "engine"
    notes: list  # one line each: what the loader did that the learner should know
    probes: dict  # compare.engine.probes' raw numbers, judged by the parent
    chain: list | None  # [longest chain backward survived, shortest it failed on or None]
    missing: str | None  # the refusal, when the engine lacks an operation
    skipped: list = field(default_factory=list)  # the file's lines the loader skipped (SkippedLine fields)
    facts: dict = field(default_factory=dict)  # compare.engine.loader.engine_facts
    speed: dict = field(default_factory=dict)  # compare.engine.depth.backward_speed
    hung: bool = False  # a probe did not finish in its budget

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        chain = data["chain"]
        if chain is not None:
            if not isinstance(chain, list) or len(chain) != 2:
                raise ProtocolError("chain is not [survived, failed]")
            chain = [_whole(chain[0], "chain"), None if chain[1] is None else _whole(chain[1], "chain")]
        if not isinstance(data["probes"], dict):
            raise ProtocolError("probes is not a table")
        probes = {shown(key): _probe(key, got) for key, got in data["probes"].items()}
        return cls(_strings(data["notes"], "notes"), probes, chain, _optional_string(data["missing"], "missing"),
                   _skipped_lines(data["skipped"]), _facts(data["facts"]), _speed(data["speed"]),
                   _flag(data["hung"], "hung"))


def _probe(key, got) -> dict:
    """One probe's result: {"value", "grads"[, "rounds"]}, {"error"[, "type", "where",
    "overran", "grown_mb"]}, {"missing": [names]} or {"not_run": why}."""
    name = f"probe {shown(key, 80)}"
    if not isinstance(got, dict):
        raise ProtocolError(f"{name} is not a table")
    if "missing" in got:
        return {"missing": _strings(got["missing"], name)}
    if "not_run" in got:
        return {"not_run": _string(got["not_run"], name)}
    if "error" in got:
        probe = {"error": _string(got["error"], name)}
        if "type" in got:
            probe["type"] = _string(got["type"], name)
        if got.get("where"):
            probe["where"] = _where(got["where"], f"{name} where")
        if "overran" in got:
            probe["overran"] = _flag(got["overran"], name)
        if "grown_mb" in got:
            probe["grown_mb"] = _whole(got["grown_mb"], f"{name} grown_mb")
        return probe
    if "value" not in got or "grads" not in got:
        raise ProtocolError(f"{name} has neither numbers nor an error")
    probe = {"value": _number(got["value"], name), "grads": _numbers(got["grads"], name)}
    if "rounds" in got:
        probe["rounds"] = _numbers(got["rounds"], name)
    return probe


@dataclass
class LoadError(Message):
    kind = "error"
    message: str  # why the engine could not be loaded
    skipped: list = field(default_factory=list)  # the file's lines the loader skipped, when it got that far

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        return cls(_string(data["message"], "message"), _skipped_lines(data["skipped"]))


@dataclass
class Failure(Message):
    kind = "failure"
    message: str  # what the engine did: "raised ZeroDivisionError", "called sys.exit(0)"
    detail: str = ""  # its error's first line
    step: int | None = None
    recursion: bool = False
    where: dict = field(default_factory=dict)  # the engine's line it raised at: {"file", "line", "text"}

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        step = None if data["step"] is None else _whole(data["step"], "step")
        return cls(_string(data["message"], "message"), _string(data["detail"], "detail"), step,
                   _flag(data["recursion"], "recursion"), _where(data["where"], "where"))


@dataclass
class Depth(Message):
    kind = "depth"
    graph: int
    per_layer: int | None
    n_layer: int
    nodes: int | None = None  # about how many nodes one step's graph has

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        per_layer = None if data["per_layer"] is None else _whole(data["per_layer"], "per_layer")
        nodes = None if data["nodes"] is None else _whole(data["nodes"], "nodes")
        return cls(_whole(data["graph"], "graph"), per_layer, _whole(data["n_layer"], "n_layer"), nodes)


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
    entries: list  # {"name", "index": [row, col], "estimate"}: judged by the parent against the step's gradients

    @classmethod
    def from_dict(cls, data, shapes=None):
        data = _fields(data, cls)
        if not isinstance(data["entries"], list):
            raise ProtocolError("entries is not a list")
        entries = []
        for entry in data["entries"]:
            if not isinstance(entry, dict) or not {"name", "index", "estimate"} <= set(entry):
                raise ProtocolError("a finite difference lacks name, index or estimate")
            name = _string(entry["name"], "name")
            index = entry["index"]
            if shapes is not None and name not in shapes:
                raise ProtocolError(f"finite difference of {name}, not a tensor of the model")
            if not isinstance(index, list) or len(index) != 2:
                raise ProtocolError("a finite difference's index is not [row, col]")
            index = [_whole(index[0], "index"), _whole(index[1], "index")]
            if shapes is not None and not (index[0] < shapes[name][0] and index[1] < shapes[name][1]):
                raise ProtocolError(f"finite difference at {index}, outside {name}")
            entries.append({"name": name, "index": index, "estimate": _number(entry["estimate"], "estimate")})
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


KINDS = {cls.kind: cls for cls in (LoadRequest, TrainRequest, CertifyRequest, Stop, SandboxReport, EngineFacts,
                                    ProbeResult, EngineFound, LoadError, Failure, Depth, Step, FiniteDiffs, Done, Record, Samples)}


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
