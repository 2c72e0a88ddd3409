"""The scalar side of a comparison, in a process of its own: it loads the engine under test,
probes it, and trains it, and sends back only plain numbers, one JSON message a line.
The verdict is reached in the parent (`compare.isolation` starts this process), so nothing
the engine's code does here (exit, crash, hang, patch `compare`) can change it.

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

from microgpt_scalar import train as scalar_train
from microgpt_scalar.checkpoint import Checkpoint, restore_adam, unflatten
from microgpt_scalar.config import GPTConfig
from microgpt_scalar.engine import Value
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam, learning_rate_at

from .certify import record_run
from .depth import deepest_chain, graph_depth
from .engines import EngineError, first_line, load_engine_file, missing_message, missing_operations
from .faults import faulty_engine
from .fd import finite_differences
from .probes import run_probes


def batch_loss(losses):
    """The mean of the documents' losses, written like the reference's mean over positions."""
    return (1 / len(losses)) * sum(losses)


class ScalarSide:
    """The scalar model on `value_cls`, one training step at a time (as compare.sides.ScalarSide,
    without torch in the process)."""

    def __init__(self, weights: Checkpoint, value_cls, adam_cls):
        self.config = weights.config
        self.model = ScalarGPT(weights.config, value_cls=value_cls, params=weights.params)
        self.optimizer = adam_cls(self.model.parameters(), weights.config)
        restore_adam(self.optimizer, weights)

    def loss(self, batch) -> float:
        """The batch loss alone, no backward (what finite differences evaluate)."""
        with scalar_train.graph_scope():
            return float(batch_loss([scalar_train.forward_loss(self.model, tokens) for tokens in batch]).data)

    def step(self, batch, step: int) -> dict:
        traces = [{} for _ in batch]
        with scalar_train.graph_scope():
            loss = batch_loss([scalar_train.forward_loss(self.model, tokens, trace) for tokens, trace in zip(batch, traces)])
            loss.backward()
            loss = float(loss.data)
        grads = {name: [[float(p.grad) for p in row] for row in rows] for name, rows in self.model.state_dict.items()}
        self.optimizer.step(learning_rate_at(self.config, step), step)
        m, v = (unflatten(moment, self.config) for moment in (self.optimizer.m, self.optimizer.v))
        params = {name: [[float(x) for x in row] for row in rows] for name, rows in self.model.params_as_floats().items()}
        return {"loss": loss, "grads": grads, "params": params, "adam_m": m, "adam_v": v,
                "traces": [{stage: [[float(x) for x in row] for row in rows] for stage, rows in trace.items()}
                           for trace in traces]}


def engine_classes(request: dict):
    """(Value class, Adam class, label, notes) for the engine the parent asked for."""
    if request.get("inject"):
        faulty = faulty_engine(request["inject"])
        return faulty.value_cls, faulty.adam_cls, f"microgpt_scalar with fault {request['inject']}", []
    if request.get("engine"):
        loaded = load_engine_file(request["engine"])
        return loaded.value_cls, Adam, request["engine"], loaded.notes
    return Value, Adam, "microgpt_scalar.engine.Value", []


def describe_engine(request: dict, send):
    """Load and probe the engine; send what was found. Returns (Value, Adam) or None."""
    try:
        value_cls, adam_cls, label, notes = engine_classes(request)
        missing = missing_operations(value_cls)
    except EngineError as error:
        send({"kind": "error", "message": str(error)})
        return None
    probes = run_probes(value_cls)
    try:
        chain = deepest_chain(value_cls) if not missing else None
    except Exception:  # the probes name what is wrong with backward
        chain = None
    send({"kind": "engine", "label": label, "notes": notes, "probes": probes, "chain": list(chain) if chain else None,
          "missing": missing_message(value_cls, request.get("engine") or label, missing) if missing else None})
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
            result = side.step(batch, step)
        except (Exception, SystemExit) as error:
            send({"kind": "failure", "step": step, **_what_happened(error), "recursion": isinstance(error, RecursionError)})
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
    tokens = max(batch, key=len)
    depth = graph_depth(weights.config, weights.params, tokens)
    if not limited:
        return {"graph": depth, "per_layer": None, "n_layer": weights.config.n_layer}
    deeper = dataclasses.replace(weights.config, n_layer=weights.config.n_layer + 1)
    deeper_params = dict(weights.params)
    for name in list(weights.params):
        if name.startswith(f"layer{weights.config.n_layer - 1}."):  # the last layer's weights, again
            deeper_params[name.replace(f"layer{weights.config.n_layer - 1}.", f"layer{weights.config.n_layer}.")] = \
                weights.params[name]
    return {"graph": depth, "per_layer": graph_depth(deeper, deeper_params, tokens) - depth,
            "n_layer": weights.config.n_layer}


def _what_happened(error: BaseException) -> dict:
    """{"message": what the engine did, "detail": its error's first line}."""
    if isinstance(error, SystemExit):
        return {"message": f"called sys.exit({error.code!r})", "detail": ""}
    return {"message": f"raised {type(error).__name__}", "detail": first_line(error)}


def main() -> None:
    """Speak the protocol on the real standard output; anything else printed goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    request = json.loads(sys.stdin.readline())
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
        send({"kind": "record", "record": dataclasses.asdict(record)})

    try:
        _, samples = record_run(job["docs"], job["steps"], job["num_samples"], value_cls,
                                GPTConfig.from_dict(job["config"]), job["seed"], on_step)
    except (Exception, SystemExit) as error:
        send({"kind": "failure", "step": None, **_what_happened(error),
              "recursion": isinstance(error, RecursionError)})
        return
    send({"kind": "samples", "names": samples})
