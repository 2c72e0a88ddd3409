"""The scalar side of a comparison, in a process of its own: it loads the engine under test,
probes it, and trains it, and sends back only plain numbers, one JSON message a line.
The verdict is reached in the parent (`compare.isolation` starts this process): an exit, a
crash or a hang here reaches it as one line, and so does a change the engine's code makes to
the checker's own functions and classes in this process (looked for after loading, probing
and every step). The numbers themselves are computed here, by the engine's code: the check
finds an engine's mistakes, it cannot stop an engine written to deceive it.

It imports no torch, so it starts and probes while the parent is still importing torch.

    parent -> worker  {"engine": "FILE[:CLASS]" or null, "inject": FAULT or null}
    worker -> parent  {"kind": "engine", "label", "notes", "missing", "probes", "chain"}
    parent -> worker  {"weights": {...}, "batches": [[tokens], ...], "fd": k, "seed": s}   or {"stop": true}
    worker -> parent  {"kind": "depth", ...}, {"kind": "step", ...} per step, {"kind": "fd", ...}, {"kind": "done"}
    parent -> worker  {"certify": {"docs", "steps", "num_samples", "config", "seed"}}     (instead: a certificate)
    worker -> parent  {"kind": "record", ...} per step, {"kind": "samples", "names"}
    worker -> parent  {"kind": "failure", "message"} or {"kind": "error", "message"} when something fails
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.config import GPTConfig
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam

from .certify import record_run
from .depth import backward_speed, deepest_chain, graph_depth
from .diagnosis import engine_facts
from .engines import EngineError, first_line, load_engine_file, missing_message, missing_operations
from .faults import faulty_engine
from .fd import finite_differences
from .probes import PROBE_BUDGET, run_probes
from .statements import Overran, guarded
from .scalar_side import ScalarSide, StepResult


_PROJECT = tuple(str(Path(__file__).resolve().parents[1] / folder) + os.sep for folder in ("compare", "microgpt_scalar"))


def as_message(result: StepResult) -> dict:
    """A step's numbers as plain floats (an engine may hold numpy scalars), ready for JSON."""
    def rows(matrices: dict) -> dict:
        return {name: [[float(x) for x in row] for row in matrix] for name, matrix in matrices.items()}

    return {"loss": float(result.loss), "grads": rows(result.grads), "params": rows(result.params),
            "adam_m": rows(result.adam_m), "adam_v": rows(result.adam_v), "traces": [rows(t) for t in result.traces]}


def engine_classes(request: dict):
    """(Value class, Adam class, label, notes, skipped lines) for the engine the parent asked for."""
    if request.get("inject"):
        faulty = faulty_engine(request["inject"])
        return faulty.value_cls, faulty.adam_cls, f"microgpt_scalar with fault {request['inject']}", [], []
    if request.get("engine"):
        loaded = load_engine_file(request["engine"])
        return loaded.value_cls, Adam, request["engine"], loaded.notes, loaded.skipped
    return Value, Adam, "microgpt_scalar.engine.Value", [], []


def own_code() -> dict:
    """"module.name" -> object, for every function and class attribute of the checker and the
    project's scalar package loaded in this process: what an engine must leave as it is."""
    found = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not module_name.split(".")[0] in ("compare", "microgpt_scalar"):
            continue
        for name, obj in list(vars(module).items()):
            found[f"{module_name}.{name}"] = obj
            if isinstance(obj, type) and obj.__module__ == module_name:
                found.update({f"{module_name}.{name}.{attr}": value for attr, value in vars(obj).items()})
    return found


def changed_code(before: dict) -> str | None:
    """The first name of `before` that is bound to something else now, or None."""
    now = own_code()
    return next((name for name, obj in before.items() if now.get(name, obj) is not obj), None)


OWN_CODE = {}  # filled in by main(), before the engine's file is loaded


def guard_own_code(send) -> bool:
    """False (and a failure sent) if the engine's code changed the checker's; True otherwise."""
    name = changed_code(OWN_CODE)
    if name is None:
        return True
    send({"kind": "failure", "step": None, "message": f"changed the checker's own code ({name})", "detail": "",
          "recursion": False})
    return False


def describe_engine(request: dict, send):
    """Load and probe the engine; send what was found. Returns (Value, Adam) or None."""
    try:
        value_cls, adam_cls, label, notes, skipped = engine_classes(request)
        missing = missing_operations(value_cls)
    except EngineError as error:
        send({"kind": "error", "message": str(error), "skipped": [dataclasses.asdict(line) for line in error.skipped]})
        return None
    if not guard_own_code(send):
        return None
    send({"kind": "facts", "facts": engine_facts(value_cls)})  # its lines, for the diagnosis, should it fail later
    probes = run_probes(value_cls, budget=PROBE_BUDGET,
                        on_result=lambda key, result: send({"kind": "probe", "key": key, "result": result}))
    if not guard_own_code(send):
        return None
    hung = any(result.get("overran") for result in probes.values())
    try:
        with guarded(3 * PROBE_BUDGET, audit=False):
            chain = deepest_chain(value_cls) if not (missing or hung) else None
    except (Exception, Overran):  # the probes name what is wrong with backward
        chain = None
    speed = backward_speed(value_cls) if not (missing or hung) else {}
    send({"kind": "engine", "label": label, "notes": notes, "probes": probes, "chain": list(chain) if chain else None,
          "missing": missing_message(value_cls, request.get("engine") or label, missing) if missing else None,
          "skipped": [dataclasses.asdict(line) for line in skipped], "facts": engine_facts(value_cls),
          "speed": speed, "hung": hung})
    return None if missing else (value_cls, adam_cls)


def train(job: dict, value_cls, adam_cls, send) -> None:
    """The steps the parent asked for; then finite differences at the first step's weights."""
    weights = Checkpoint(GPTConfig.from_dict(job["weights"]["config"]), job["weights"]["chars"],
                         job["weights"]["params"], job["weights"]["adam"], job["weights"]["step"],
                         job["weights"]["seed"])
    send({"kind": "depth", **model_depths(weights, job["batches"][0], job["limited"])})
    side = ScalarSide(weights, value_cls, adam_cls)
    for i, batch in enumerate(job["batches"]):
        step = weights.step + i
        try:
            result = as_message(side.step(batch, step))
        except (Exception, SystemExit) as error:
            send({"kind": "failure", "step": step, **_what_happened(error), "recursion": isinstance(error, RecursionError)})
            return
        if not guard_own_code(send):
            return
        send({"kind": "step", "step": step, "result": result})
        if i == 0 and job["fd"]:
            try:
                check = finite_differences(ScalarSide(weights, value_cls, adam_cls), batch, result["grads"],
                                           job["fd"], job["seed"])
            except (Exception, SystemExit) as error:
                send({"kind": "failure", "step": step, **_what_happened(error), "recursion": False})
                return
            send({"kind": "fd", "check": dataclasses.asdict(check)})
    send({"kind": "done"})


def model_depths(weights: Checkpoint, batch: list, limited: bool) -> dict:
    """The graph depth of the checked model and, for an engine whose backward has a depth
    limit, how much one more layer adds."""
    tokens, counted = max(batch, key=len), []
    depth = graph_depth(weights.config, weights.params, tokens, counted)
    nodes = round(counted[0] * sum(len(doc) for doc in batch) / len(tokens))  # about: the longest document's, scaled
    if not limited:
        return {"graph": depth, "per_layer": None, "n_layer": weights.config.n_layer, "nodes": nodes}
    deeper = dataclasses.replace(weights.config, n_layer=weights.config.n_layer + 1)
    deeper_params = dict(weights.params)
    for name in list(weights.params):
        if name.startswith(f"layer{weights.config.n_layer - 1}."):  # the last layer's weights, again
            deeper_params[name.replace(f"layer{weights.config.n_layer - 1}.", f"layer{weights.config.n_layer}.")] = \
                weights.params[name]
    return {"graph": depth, "per_layer": graph_depth(deeper, deeper_params, tokens) - depth,
            "n_layer": weights.config.n_layer, "nodes": nodes}


def _what_happened(error: BaseException) -> dict:
    """{"message": what the engine did, "detail": its error's first line}."""
    if isinstance(error, SystemExit):
        return {"message": f"called sys.exit({error.code!r})", "detail": ""}
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith(_PROJECT)]  # the engine's own line, not the model's
    where = {"file": frames[-1].filename, "line": frames[-1].lineno, "text": (frames[-1].line or "").strip()} \
        if frames else {}
    return {"message": f"raised {type(error).__name__}", "detail": first_line(error), "where": where}


def main() -> None:
    """Speak the protocol on the real standard output; anything else printed goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    request = json.loads(sys.stdin.readline())
    OWN_CODE.update(own_code())
    try:
        classes = describe_engine(request, send)
    except (Exception, SystemExit) as error:  # the probes guard themselves; this is a last resort
        send({"kind": "failure", "step": None, **_what_happened(error), "recursion": False})
        return
    line = sys.stdin.readline()
    if classes is None or not line:
        return
    job = json.loads(line)
    if "certify" in job:
        record_steps(job["certify"], classes[0], send)
    elif not job.get("stop"):
        train(job, *classes, send)


def record_steps(job: dict, value_cls, send) -> None:
    """The published run's first steps on `value_cls`, each step's record sent as it ends."""
    def on_step(record):
        name = changed_code(OWN_CODE)
        if name is not None:
            raise CheckerChanged(f"changed the checker's own code ({name})")
        send({"kind": "record", "record": dataclasses.asdict(record)})

    try:
        _, samples = record_run(job["docs"], job["steps"], job["num_samples"], value_cls,
                                GPTConfig.from_dict(job["config"]), job["seed"], on_step)
    except CheckerChanged as error:
        send({"kind": "failure", "step": None, "message": str(error), "detail": "", "recursion": False})
        return
    except (Exception, SystemExit) as error:
        send({"kind": "failure", "step": None, **_what_happened(error),
              "recursion": isinstance(error, RecursionError)})
        return
    send({"kind": "samples", "names": samples})


class CheckerChanged(Exception):
    """The engine's code rebound a function or class attribute of the checker."""
