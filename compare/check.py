"""The check: training steps in the scalar engine and in torch from the same weights on the
same documents, compared number by number.

    report = compare_step()                                  # built-in documents, dense weights
    report = compare_step(weights="reference", steps=20)     # lockstep from microgpt's own start
    report = compare_step(engine="my_engine.py", fd=20)      # a learner's Value, plus finite differences
    report = compare_step(inject="grad-assign")              # a known fault: must disagree
    report = compare_step(overrides={"n_layer": 8})          # a deeper model, a deeper graph
    report.agrees, report.probes, report.focus.divergence, report.differing_gradients

The scalar engine (the project's, a fault written into it, or a learner's file) is probed
operation by operation and trains in a child process (compare.engine.worker), which sends back
numbers; a class handed in by code runs here, through the same compare.engine.runner.ScalarRunner,
read as the same messages. Everything is judged here. Raises ValueError (or its subclasses DataError,
CheckpointError, EngineError, EngineRefused, DeviceError) on bad input, EngineFailure if the
scalar engine under test raises, exits, crashes or hangs while it runs; never prints.
"""
from __future__ import annotations

import dataclasses

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.config import num_params
from microgpt_scalar.data import Corpus, Tokenizer, shuffle_docs
from microgpt_torch.device_names import DeviceError, parse_device  # noqa: F401 (DeviceError: compare.DeviceError)

from .engine.depth import depth_limited
from .engine.faults import FAULTS
from .engine.probes import probe_keys
from .engine.process import EngineFailure, EngineProcess, EngineRefused
from .engine.reader import InProcessEngine, ScalarReader
from .engine.statements import SkippedLine, explain_name_error
from .judge.diagnosis import StepOutcome, diagnose
from .judge.diff import compare_tensor
from .judge.fd import check_finite_differences
from .judge.probe_check import ProbeCheck, walks_every_path
from .judge.step import compare_results
from .judge.tolerances import tolerances_for
from .report.report import Report, Settings, StepLoss
from .request import CompareRequest
from .step.documents import ALPHABET, BUILTIN_DOCS, Documents, file_documents, given_documents
from .step.scalar import StepResult
from .step.trace import trace_stage_names
from .step.weights import load_weights


def compare_step(request: CompareRequest | None = None, *, engine_process: EngineProcess | None = None,
                 on_probes=None, **fields) -> Report:
    """Compare the training steps `request` asks for (compare.request.CompareRequest; or its
    fields given here by name) of the two engines and return the report.

    engine_process: one already started for the request's engine (a script starts it before
    torch loads); it is not closed here. on_probes(probes, skipped, notes): called with the
    judged probes, the file's skipped lines and the loader's notes as soon as they are known,
    before the step starts (a script prints them). An EngineFailure raised while the step
    runs carries them too (`found`, `probes`) with the likely causes (`causes`).
    """
    if request is None:
        request = CompareRequest(**fields)
    elif fields:
        raise TypeError(f"give a request or its fields, not both ({', '.join(fields)})")
    engine, fd, data = request.engine, request.fd, request.data
    steps = max(request.steps, FAULTS[request.inject].min_steps) if request.inject else request.steps
    device = device_of(request.device)
    raw_docs = Corpus.from_file(data) if data is not None else list(request.docs or BUILTIN_DOCS)
    shuffled, rng = shuffle_docs(raw_docs, request.seed)  # once: a data file's step order, and the reference's generator
    chars = Tokenizer.from_docs(raw_docs).chars if data is not None else ALPHABET
    start = load_weights(request.weights, request.config, chars, request.seed, rng)
    documents = file_documents(shuffled, start.chars) if data is not None else given_documents(raw_docs, start.chars)
    if fd > num_params(start.config):
        raise ValueError(f"--fd {fd} is more than the {num_params(start.config):,} parameters of the model")

    def settings_for(engine_label: str) -> Settings:
        return Settings(preset=request.preset, weights=request.weights, seed=request.seed,
                        docs=documents.used(start.step, steps), chars=list(start.chars), per_step=documents.per_step,
                        start_step=start.step, steps=steps, dtype=request.dtype, device=device, engine=engine_label,
                        fault=request.inject, num_params=num_params(start.config), overrides=request.overrides,
                        num_docs=len(documents.docs))

    if engine is not None and not isinstance(engine, str):  # a class handed in by code: in this process
        source = InProcessEngine(engine)
        found = source.engine()
        judged = {}
        return _diagnosed(lambda: run_sides(start, documents, settings_for(found["label"]), ScalarReader(source, found),
                                            fd, raw_probes=found["probes"], on_probes=on_probes, judged=judged),
                          judged, found["facts"], found)
    process = engine_process or EngineProcess(engine, request.inject, request.timeout)
    try:
        found = _found_or_what_came(process)
        skipped = [SkippedLine(**line) for line in found.get("skipped", [])]
        if found["missing"] or found.get("hung"):
            from .judge.probe_check import check_probes, unfinished_message  # torch: the probes' oracle

            probes = explained(check_probes(found["probes"]), skipped)
            if found["missing"]:
                raise EngineRefused(found["missing"], probes, [dataclasses.asdict(line) for line in skipped])
            if on_probes is not None:
                on_probes(probes, skipped, found["notes"])
            error = EngineFailure(unfinished_message(found["label"], probes, "the model's step was"), kind="timeout")
            error.found, error.probes = found, probes
            error.causes = diagnose(probes, found.get("facts", {}), StepOutcome(failure="timeout"))
            raise error
        judged = {}  # the probes, once judged: run_sides judges them while the engine's step runs
        return _diagnosed(lambda: _run_child(process, found, start, documents, settings_for(found["label"]), fd,
                                             skipped, on_probes, judged),
                          judged, found.get("facts", {}), found, skipped)
    finally:
        if engine_process is None:
            process.close()


def _found_or_what_came(process: EngineProcess) -> dict:
    """What the engine's process found; if it fails while loading or probing, the
    EngineFailure carries the probes that had ended (the rest "not run") and their causes."""
    try:
        return process.engine()
    except EngineFailure as error:
        if process.probes_so_far:
            from .judge.probe_check import check_probes

            so_far = {key: process.probes_so_far.get(key, {"not_run": "the engine's process stopped first"})
                      for key in probe_keys()}
            error.probes = check_probes(so_far)
            error.causes = diagnose(error.probes, process.facts, StepOutcome(failure=error.kind, message=str(error)))
        raise


def _run_child(process, found, start, documents, settings, fd, skipped, on_probes, judged) -> Report:
    report = run_sides(start, documents, settings, ScalarReader(process, found), fd, raw_probes=found["probes"],
                       notes=found["notes"], skipped=skipped, on_probes=on_probes, judged=judged)
    process.check_own_files()
    report.sandbox = process.sandbox
    report.skipped_lines = [dataclasses.asdict(line) for line in skipped]
    return report


def explained(probes: ProbeCheck, skipped: list) -> ProbeCheck:
    """The probes, each NameError about a name the loader skipped saying so."""
    for result in probes.results:
        result.message = explain_name_error(result.message, skipped)
    return probes


def _diagnosed(run, judged: dict, facts: dict, found, skipped=()) -> Report:
    """run() -> the report, with the likely causes; an EngineFailure gets them too, with
    what was found before it (`found`, `probes`, `causes`). judged["probes"]: the judged
    probes, once they are."""
    try:
        report = run()
    except EngineFailure as error:
        probes = judged.get("probes")
        limited = depth_limited(found.get("chain") if found else None)
        step = StepOutcome(failure=error.kind, message=str(error), depth_limited=limited and error.recursion)
        error.found, error.probes, error.causes = found, probes, diagnose(probes, facts, step)
        error.args = (explain_name_error(str(error), list(skipped)),)
        raise
    later = report.settings.steps > 1 and report.focus_step > report.settings.start_step and \
        report.losses[0].agrees and not report.step_agrees
    step = StepOutcome(ran=True, agrees=report.step_agrees, first_step_agreed_later_not=later)
    report.causes = diagnose(judged.get("probes"), facts, step)
    return report


def device_of(name: str) -> str:
    """The torch side's device for `--device name`, read as training reads the flag; "auto"
    is the CPU (a one-document float64 step is quicker there)."""
    kind, _ = parse_device(name)
    if kind == "cpu":
        return name  # without loading torch
    from microgpt_torch.device import pick_device

    device = pick_device(name, keep_on_cpu=True)  # DeviceError for a CUDA device that is not there
    return name if kind == "cuda" else str(device)


def _tf32_off():
    """On CUDA, matrix products may round their inputs to TensorFloat-32 (10-bit mantissa);
    that would be measured as disagreement, so it is off while the comparison runs (and the
    caller's setting is restored after)."""
    from microgpt_torch.device import float32_precision

    return float32_precision("ieee")


def run_sides(start: Checkpoint, documents: Documents, settings: Settings, scalar: ScalarReader, fd: int,
              raw_probes=None, notes=(), skipped=(), on_probes=None, judged=None) -> Report:
    """Step both engines `settings.steps` times; describe the first step that disagrees
    (or the last), and the parameters at the end. `raw_probes`: what run_probes found, judged
    here against torch while the engine takes its step; then on_probes(probes, skipped,
    notes) and judged["probes"] = probes."""
    tolerances, stages = tolerances_for(settings.dtype), trace_stage_names(start.config)
    batches = [documents.batch(step) for step in range(start.step, start.step + settings.steps)]
    depth = scalar.begin(start, batches, fd, settings.seed)  # a child starts training now, while torch loads here
    import torch

    from .judge.probe_check import check_probes
    from .step.torch_side import TorchSide

    probes = None
    if raw_probes is not None:
        probes = explained(check_probes(raw_probes), list(skipped))
        if on_probes is not None:
            on_probes(probes, list(skipped), list(notes))
        scalar.every_path = walks_every_path(probes)
    if judged is not None:
        judged["probes"] = probes
    with _tf32_off():
        return _step_both(start, settings, scalar, TorchSide(start, getattr(torch, settings.dtype), settings.device),
                          batches, depth, fd, probes, notes, tolerances, stages)


def _step_both(start, settings, scalar, torch_side, batches, depth, fd, probes, notes, tolerances, stages) -> Report:
    losses, focus, fd_check = [], None, None
    for step, batch in zip(range(start.step, start.step + settings.steps), batches):
        torch_result = torch_side.step(batch, step)
        scalar_result = scalar.step(batch, step, depth)
        comparison = compare_results(scalar_result, torch_result, tolerances, stages)
        losses.append(StepLoss(step, scalar_result.loss, torch_result.loss, comparison.loss.agrees))
        if step == start.step and fd:
            fd_check = check_finite_differences(scalar.finite_differences(fd), scalar_result.grads)
        if focus is None and (not comparison.agrees or step == start.step + settings.steps - 1):
            focus = (step, comparison, scalar_result, torch_result)
    focus_step, comparison, focus_scalar, focus_torch = focus
    final = [compare_tensor(name, torch_result.params[name], scalar_result.params[name], tolerances.values)
             for name in scalar_result.params]
    return Report(settings=settings, tolerances=tolerances, losses=losses, focus_step=focus_step, focus=comparison,
                  final_parameters=final, trace_stages=stages, finite_differences=fd_check,
                  gradient_values=gradient_values(focus_scalar, focus_torch), probes=probes, depth=depth,
                  notes=list(notes))


def gradient_values(scalar: StepResult, torch_result: StepResult) -> dict:
    """name -> both engines' gradients, flat, for a scatter plot of one against the other."""
    return {name: {"scalar": [g for row in scalar.grads[name] for g in row],
                   "torch": [g for row in torch_result.grads[name] for g in row]} for name in scalar.grads}
