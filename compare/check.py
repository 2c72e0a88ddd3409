"""The check: training steps in the scalar engine and in torch from the same weights on the
same documents, compared number by number.

    report = compare_step()                                  # built-in documents, dense weights
    report = compare_step(weights="reference", steps=20)     # lockstep from microgpt's own start
    report = compare_step(engine="my_engine.py", fd=20)      # a learner's Value, plus finite differences
    report = compare_step(inject="grad-assign")              # a known fault: must disagree
    report.agrees, report.divergence, report.differing_gradients

Raises ValueError (or its subclasses DataError, CheckpointError, EngineError, DeviceError)
on bad input, EngineFailure if the scalar engine under test raises while it runs; never prints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_scalar.config import get_config, num_params
from microgpt_scalar.data import Corpus, Tokenizer, shuffle_docs
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam
from microgpt_torch.device import float32_precision

from .diff import TensorDiff, compare_tensor
from .documents import ALPHABET, BUILTIN_DOCS, Documents, file_documents, given_documents
from .engines import first_line, load_engine
from .faults import FAULTS, faulty_engine
from .fd import finite_differences
from .report import Coverage, Report, Settings, StepLoss
from .sides import ScalarSide, StepResult, TorchSide
from .tolerances import Tolerances, tolerances_for
from .trace import Divergence, first_divergence, trace_stage_names
from .weights import load_weights

DTYPES = {"float64": torch.float64, "float32": torch.float32}


class DeviceError(ValueError):
    """A torch device that is not there; the message is one line."""


class EngineFailure(RuntimeError):
    """The scalar engine under test raised an exception while it ran; the message is one line."""


def compare_step(preset: str = "microgpt", weights: str = "dense", docs=None, data=None, seed: int = 42,
                 steps: int = 1, dtype: str = "float64", device: str = "cpu", engine=None, inject: str | None = None,
                 fd: int = 0) -> Report:
    """Compare `steps` training steps of the two engines and return the report.

    weights: "reference", "dense" or a checkpoint path. docs: documents to train on, all in
    every step (default: the built-in ones); data: a data file instead, one document per
    step as the reference program takes them. engine: a learner's "FILE[:CLASS]" or a class;
    inject: a fault from compare.faults (at least its min_steps are run); fd: how many
    gradients to check against finite differences as well.
    """
    config = get_config(preset)
    _check_choices(docs, data, steps, dtype, device, engine, inject, fd)
    value_cls, adam_cls, engine_label = _scalar_engine(engine, inject)
    if inject is not None:
        steps = max(steps, FAULTS[inject].min_steps)
    raw_docs = Corpus.from_file(data) if data is not None else list(docs or BUILTIN_DOCS)
    shuffled, rng = shuffle_docs(raw_docs, seed)  # once: a data file's step order, and the reference's generator
    chars = Tokenizer.from_docs(raw_docs).chars if data is not None else ALPHABET
    start = load_weights(weights, config, chars, seed, rng)
    documents = file_documents(shuffled, start.chars) if data is not None else given_documents(raw_docs, start.chars)
    settings = Settings(preset, weights, seed, list(documents.docs), list(start.chars), documents.per_step,
                        start.step, steps, dtype, device, engine_label, inject, num_params(start.config))
    if fd > settings.num_params:
        raise ValueError(f"--fd {fd} is more than the {settings.num_params:,} parameters of the model")
    with _tf32_off():
        return run(start, documents, settings, value_cls, adam_cls, fd)


def _check_choices(docs, data, steps, dtype, device, engine, inject, fd) -> None:
    if docs and data is not None:
        raise ValueError("give documents (--doc) or a data file (--data), not both")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise ValueError(f"fd must be a whole number >= 0, got {fd!r}")
    tolerances_for(dtype)  # raises for an unknown dtype
    if engine is not None and inject is not None:
        raise ValueError("--inject writes a fault into the project's engine; it cannot be combined with --engine")
    if inject is not None and inject not in FAULTS:
        raise ValueError(f"unknown fault {inject!r}; choose one of {', '.join(FAULTS)} (see --list-faults)")
    _check_device(device)


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if device != "cuda" and not device.startswith("cuda:"):
        raise DeviceError(f"unknown device {device!r}; choose cpu or cuda")
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {device}: no CUDA device is available to this torch ({torch.__version__})")
    try:
        index = torch.device(device).index
    except RuntimeError:
        raise DeviceError(f"malformed device {device!r}; write cuda or cuda:N") from None
    if index is not None and index >= torch.cuda.device_count():
        raise DeviceError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA device(s)")


def _scalar_engine(engine, inject):
    """(Value class, Adam class, a label for the report) for the scalar side."""
    if inject is not None:
        faulty = faulty_engine(inject)
        return faulty.value_cls, faulty.adam_cls, f"microgpt_scalar with fault {inject}"
    if engine is None:
        return Value, Adam, "microgpt_scalar.engine.Value"
    if isinstance(engine, str):
        return load_engine(engine), Adam, engine
    return engine, Adam, f"{engine.__module__}.{engine.__qualname__}"


def _tf32_off():
    """On CUDA, matrix products may round their inputs to TensorFloat-32 (10-bit mantissa);
    that would be measured as disagreement, so it is off while the comparison runs (and the
    caller's setting is restored after)."""
    return float32_precision("ieee")


@dataclass
class StepComparison:
    loss: TensorDiff
    gradients: list
    parameters: list
    adam_m: list
    adam_v: list
    divergence: Divergence | None

    @property
    def agrees(self) -> bool:
        tables = [self.loss, *self.gradients, *self.parameters, *self.adam_m, *self.adam_v]
        return all(d.agrees for d in tables) and self.divergence is None


def run(start: Checkpoint, documents: Documents, settings: Settings, value_cls, adam_cls, fd: int) -> Report:
    """Step both engines `settings.steps` times; describe the first step that disagrees
    (or the last), and the parameters at the end."""
    tolerances, stages = tolerances_for(settings.dtype), trace_stage_names(start.config)
    scalar_side = ScalarSide(start, value_cls, adam_cls)
    torch_side = TorchSide(start, DTYPES[settings.dtype], settings.device)
    losses, focus, fd_check = [], None, None
    for step in range(start.step, start.step + settings.steps):
        batch = documents.batch(step)
        scalar = _guarded(scalar_side.step, settings, step, batch, step)
        torch_result = torch_side.step(batch, step)
        comparison = compare_results(scalar, torch_result, tolerances, stages)
        losses.append(StepLoss(step, scalar.loss, torch_result.loss, comparison.loss.agrees))
        if step == start.step and fd:
            fd_side = ScalarSide(start, value_cls, adam_cls)  # the parameters before this step's update
            fd_check = _guarded(finite_differences, settings, step, fd_side, batch, scalar.grads, fd, settings.seed)
        if focus is None and (not comparison.agrees or step == start.step + settings.steps - 1):
            focus = (step, comparison, scalar, torch_result)
    focus_step, comparison, focus_scalar, focus_torch = focus
    final = [compare_tensor(name, torch_result.params[name], scalar.params[name], tolerances.values)
             for name in scalar.params]
    return Report(settings, tolerances, losses, focus_step, comparison.loss, comparison.gradients,
                  comparison.parameters, comparison.adam_m, comparison.adam_v, final,
                  coverage_of(comparison.gradients), comparison.divergence, stages, fd_check,
                  gradient_values(focus_scalar, focus_torch))


def _guarded(function, settings: Settings, step: int, *args):
    """Call into the engine under test; whatever it raises becomes one EngineFailure line."""
    try:
        return function(*args)
    except Exception as error:
        raise EngineFailure(f"the scalar engine ({settings.engine}) raised {type(error).__name__} "
                            f"at step {step + 1}: {first_line(error)}") from error


def compare_results(scalar: StepResult, torch_result: StepResult, tolerances: Tolerances,
                    stages: list) -> StepComparison:
    """Every number of the torch step against the scalar one (the expected values)."""
    def tables(what: str, tolerance):
        scalar_tensors, torch_tensors = getattr(scalar, what), getattr(torch_result, what)
        return [compare_tensor(name, torch_tensors[name], scalar_tensors[name], tolerance) for name in scalar_tensors]

    return StepComparison(
        loss=compare_tensor("loss", torch_result.loss, scalar.loss, tolerances.values),
        gradients=tables("grads", tolerances.gradients),
        parameters=tables("params", tolerances.values),
        adam_m=tables("adam_m", tolerances.values),
        adam_v=tables("adam_v", tolerances.values),
        divergence=first_divergence(scalar.traces, torch_result.traces, stages, tolerances.values),
    )


def coverage_of(gradients: list) -> Coverage:
    return Coverage(total=sum(d.checked for d in gradients), nonzero=sum(d.nonzero for d in gradients),
                    zero_tensors=[d.name for d in gradients if d.nonzero == 0])


def gradient_values(scalar: StepResult, torch_result: StepResult) -> dict:
    """name -> both engines' gradients, flat, for a scatter plot of one against the other."""
    return {name: {"scalar": [g for row in scalar.grads[name] for g in row],
                   "torch": [g for row in torch_result.grads[name] for g in row]} for name in scalar.grads}
