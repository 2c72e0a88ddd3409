"""The scalar side of a comparison, in a process of its own: it loads the engine under test
and runs it through `compare.engine.runner.ScalarRunner` (the same code that runs a class handed in
by code in the checker's own process), and sends back only plain numbers, the messages of
`compare.engine.protocol`. The verdict is reached in the parent (`compare.engine.process` starts this
process inside `compare.engine.sandbox`): an exit, a crash or a hang here reaches it as one line.

What this process sends are measurements; everything is judged in the parent from them
(probes, finite differences, a certificate's printed losses and gradient norms).
Two guards end the run in one line when the engine's code goes for the checker itself: a
tripwire (`compare.engine.confine`) at the moment it writes a file outside its private folder,
starts a process, sends a signal, reaches the network or swaps a code object of the
checker, and a comparison of the checker's functions, classes, code objects and builtins
with what they were before the engine loaded, after loading, probing and every step. Code
running here can still forge the numbers themselves (compute them with another engine):
the check finds an engine's mistakes; it cannot stop an engine written to deceive it.

It imports no torch, so it starts and probes while the parent is still importing torch.
"""
from __future__ import annotations

import builtins
import dataclasses
import json
import os
import sys
import traceback
from pathlib import Path

from microgpt_scalar.config import GPTConfig
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam

from . import protocol
from .confine import install_tripwire
from .faults import faulty_engine
from .loader import EngineError, engine_facts, first_line, load_engine_file, missing_message, missing_operations
from .own_files import OWN_PACKAGES
from .probes import PROBE_BUDGET
from .protocol import (CertifyRequest, Done, EngineFacts, EngineFound, Failure, LoadError, LoadRequest, ProbeResult,
                       Record, Samples, SandboxReport, Stop, TrainRequest)
from .runner import ScalarRunner, record_run
from .statements import install_guard

_PROJECT = tuple(str(Path(__file__).resolve().parents[2] / folder) + os.sep for folder in ("compare", "microgpt_scalar"))


def engine_classes(request: LoadRequest, arm, home: str):
    """(Value class, Adam class, notes, skipped lines) for the engine the parent asked for;
    `arm()` sets the tripwire just before any code not the project's runs."""
    if request.inject:
        faulty = faulty_engine(request.inject)
        arm()
        return faulty.value_cls, faulty.adam_cls, [], []
    arm()
    if request.engine:
        os.chdir(request.cwd)  # the path as the user gave it, from where they gave it (read-only here)
        try:
            loaded = load_engine_file(request.engine)
        finally:
            os.chdir(home)
        return loaded.value_cls, Adam, loaded.notes, loaded.skipped
    return Value, Adam, [], []


def own_code() -> dict:
    """"module.name" -> (object, its code, defaults, keyword defaults) for every module,
    function and class attribute of the checker and the project's scalar package loaded in
    this process, and every builtin: what an engine must leave as it is."""
    found = {f"builtins.{name}": _parts(obj) for name, obj in vars(builtins).items()}
    for module_name, module in list(sys.modules.items()):
        if module is None or module_name.split(".")[0] not in OWN_PACKAGES:
            continue
        found[module_name] = _parts(module)
        for name, obj in list(vars(module).items()):
            found[f"{module_name}.{name}"] = _parts(obj)
            if isinstance(obj, type) and obj.__module__ == module_name:
                for attr, value in vars(obj).items():
                    found[f"{module_name}.{name}.{attr}"] = _parts(value)
                    for part in ("fget", "fset", "__func__"):  # a property's or a static method's function
                        if getattr(value, part, None) is not None:
                            found[f"{module_name}.{name}.{attr}.{part}"] = _parts(getattr(value, part))
    return found


def _parts(obj) -> tuple:
    return (obj, getattr(obj, "__code__", None), getattr(obj, "__defaults__", None),
            getattr(obj, "__kwdefaults__", None))


def changed_code(before: dict) -> str | None:
    """The first name of `before` bound to something else now, or whose function has another
    code object or defaults now; None if nothing changed."""
    now = own_code()
    for name, parts in before.items():
        current = now.get(name, parts)
        for what, was, is_now in zip(("", ".__code__", ".__defaults__", ".__kwdefaults__"), parts, current):
            if was is not is_now:
                return name + what
    return None


OWN_CODE = {}  # filled in by main(), before the engine's file is loaded


def guard_own_code(send) -> bool:
    """False (and a failure sent) if the engine's code changed the checker's; True otherwise."""
    name = changed_code(OWN_CODE)
    if name is None:
        return True
    send(Failure(f"changed the checker's own code ({name})"))
    return False


def describe_engine(request: LoadRequest, send, arm):
    """Load and probe the engine; send what was found. Returns its ScalarRunner, or None."""
    try:
        value_cls, adam_cls, notes, skipped = engine_classes(request, arm, os.getcwd())
        missing = missing_operations(value_cls)
    except EngineError as error:
        send(LoadError(str(error), [dataclasses.asdict(line) for line in error.skipped]))
        return None
    if not guard_own_code(send):
        return None
    send(EngineFacts(engine_facts(value_cls)))  # its lines, for the diagnosis, should it fail later
    runner = ScalarRunner(value_cls, adam_cls)
    probes = runner.probes(PROBE_BUDGET, on_result=lambda key, result: send(ProbeResult(key, result)))
    if not guard_own_code(send):
        return None
    hung = any(result.get("overran") for result in probes.values())
    chain = runner.deepest_chain(3 * PROBE_BUDGET) if not (missing or hung) else None
    speed = runner.speed() if not (missing or hung) else {}
    label = request.engine or f"microgpt_scalar with fault {request.inject}"
    # the facts again, after the probes: what a container on the class kept from them counts
    send(EngineFound(notes, probes, chain, missing_message(value_cls, label, missing) if missing else None,
                     [dataclasses.asdict(line) for line in skipped], engine_facts(value_cls), speed, hung))
    return None if missing else runner


def train(job: TrainRequest, runner: ScalarRunner, send) -> None:
    """The runner's messages for the steps the parent asked for, each sent once the checker's
    code is seen unchanged; what the engine raises or exits with is sent as one Failure."""
    messages = runner.train(job)
    while True:
        try:
            message = next(messages)
        except StopIteration:
            break
        except (Exception, SystemExit) as error:
            send(_what_happened(error, runner.step, recursion=False if runner.phase == "finite differences" else None))
            return
        if not guard_own_code(send):
            return
        send(message)
    send(Done())


def _what_happened(error: BaseException, step: int | None, recursion: bool | None = None) -> Failure:
    """What the engine did ("called sys.exit(0)", "raised KeyError") and its error's first line."""
    recursion = isinstance(error, RecursionError) if recursion is None else recursion
    if isinstance(error, SystemExit):
        return Failure(f"called sys.exit({error.code!r})", "", step, recursion)
    detail = first_line(error)
    if isinstance(error, MemoryError):
        detail = (detail + "; " if detail else "") + "its process may use the memory --max-memory sets"
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if not frame.filename.startswith(_PROJECT)]  # the engine's own line, not the model's
    where = {"file": frames[-1].filename, "line": frames[-1].lineno, "text": (frames[-1].line or "").strip()} \
        if frames else {}
    return Failure(f"raised {type(error).__name__}", detail, step, recursion, where)


def main(sandbox_level: str = "none", work: str | None = None) -> None:
    """Speak the protocol on the real standard output; anything else printed goes to stderr.
    `sandbox_level` is sent first, before any code of the engine runs."""
    sys.dont_write_bytecode = True
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    write, leave = os.write, os._exit  # held here: the engine may rebind the os module's

    def send(message: protocol.Message) -> None:
        data = protocol.encode(message).encode("utf-8")
        while data:
            data = data[write(protocol_fd, data):]

    def fail(what: str) -> None:
        send(Failure(what))
        leave(1)

    send(SandboxReport(sandbox_level))
    request = LoadRequest.from_dict(json.loads(sys.stdin.readline()))
    OWN_CODE.update(own_code())

    def arm():
        install_guard()  # first: while the file loads, its statements' refused actions are skipped, not fatal
        install_tripwire(work or os.getcwd(), OWN_PACKAGES, fail)

    try:
        runner = describe_engine(request, send, arm)
    except (Exception, SystemExit) as error:  # the probes guard themselves; this is a last resort
        send(_what_happened(error, None, recursion=False))
        return
    line = sys.stdin.readline()
    if runner is None or not line:
        return
    job = json.loads(line)
    if job.get("kind") == CertifyRequest.kind:
        record_steps(CertifyRequest.from_dict(job), runner.value_cls, send)
    elif job.get("kind") == TrainRequest.kind:
        train(TrainRequest.from_dict(job), runner, send)
    else:
        Stop.from_dict(job)


def record_steps(job: CertifyRequest, value_cls, send) -> None:
    """The published run's first steps on `value_cls`, each step's loss and gradients sent
    as it ends (the parent derives the printed loss and the norms)."""
    def on_step(record, grads):
        name = changed_code(OWN_CODE)
        if name is not None:
            raise CheckerChanged(f"changed the checker's own code ({name})")
        send(Record(record.step, float(record.loss),
                    {key: [[float(x) for x in row] for row in rows] for key, rows in grads.items()}))

    try:
        _, samples = record_run(job.docs, job.steps, job.num_samples, value_cls, GPTConfig.from_dict(job.config),
                                job.seed, on_step=None, on_grads=on_step)
    except CheckerChanged as error:
        send(Failure(str(error)))
        return
    except (Exception, SystemExit) as error:
        send(_what_happened(error, None))
        return
    if changed_code(OWN_CODE) is not None:
        send(Failure(f"changed the checker's own code ({changed_code(OWN_CODE)})"))
        return
    send(Samples(list(samples)))


class CheckerChanged(Exception):
    """The engine's code rebound a function or class attribute of the checker."""
