"""The two engines, each taking the training scripts' own step on the same batch of documents.

Each side runs its package's `train_step` (the function `scripts/train_scalar.py` and
`scripts/train_torch.py` call; the torch model on the fused kernels, as the script builds it)
on the batch: the mean of the documents' losses, backward, one Adam update at the rate of the
schedule. Gradients, Adam's moments and the traced intermediates are read through public
interfaces: the scalar model's `on_stage` callback and a stand-in optimizer that copies the
gradients before Adam resets them; forward hooks on a readable-path torch twin, the torch
gradients left on the parameters, and `adam_moments` of each `optim.py`.
What they produce comes back as plain Python floats in the scalar layout, name -> rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from microgpt_scalar import train as scalar_train
from microgpt_scalar.checkpoint import Checkpoint, restore_adam, unflatten
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import adam_moments as scalar_adam_moments
from microgpt_torch import train as torch_train
from microgpt_torch.checkpoint import from_scalar_checkpoint, restore
from microgpt_torch.model import GPT as TorchGPT
from microgpt_torch.model import scalar_name
from microgpt_torch.optim import adam_moments as torch_adam_moments

from .gradients import GradientRecorder
from .trace import ScalarTracer, torch_trace


@dataclass
class StepResult:
    """One engine's step. Gradients are from before the update, the rest from after it."""

    loss: float
    grads: dict  # name -> [n_out][n_in] rows
    params: dict
    adam_m: dict  # Adam's first moment (running mean of gradients)
    adam_v: dict  # Adam's second moment (running mean of squared gradients)
    traces: list  # per document of the batch: stage -> one list of numbers per position


class ScalarSide:
    """The scalar model on `value_cls` (the project's Value, a learner's, or a faulty one)."""

    def __init__(self, weights: Checkpoint, value_cls, adam_cls):
        self.config = weights.config
        self.model = ScalarGPT(weights.config, value_cls=value_cls, params=weights.params)
        self.optimizer = adam_cls(self.model.parameters(), weights.config)
        restore_adam(self.optimizer, weights)

    def loss(self, batch) -> float:
        """The batch loss alone, no backward (what finite differences evaluate)."""
        with scalar_train.graph_scope():
            return float(scalar_train.batch_loss(self.model, batch).data)

    def step(self, batch, step: int) -> StepResult:
        tracer, recorder = ScalarTracer(), GradientRecorder(self.optimizer, self.model)
        self.model.on_stage = tracer
        try:
            loss = scalar_train.train_step(self.model, recorder, batch, step)
        except scalar_train.NonFiniteLossError as error:
            if error.__cause__ is None:
                raise
            raise error.__cause__ from None  # what the engine itself raised (1 / 0 in exp is a fault, not a loss)
        finally:
            self.model.on_stage = None
        m, v = (unflatten(moment, self.config) for moment in scalar_adam_moments(self.optimizer))
        lengths = [min(self.config.block_size, len(tokens) - 1) for tokens in batch]
        return StepResult(float(loss), recorder.grads, self.model.params_as_floats(), m, v,
                          tracer.by_document(lengths))


class TorchSide:
    """The torch model on the fused kernels and its torch.optim.Adam, as the training script
    builds them, and a readable-path twin with the same weights that the trace is read from."""

    def __init__(self, weights: Checkpoint, dtype: torch.dtype, device: str):
        self.model, self.optimizer = restore(from_scalar_checkpoint(weights), dtype, device, fused=True)
        self.readable = TorchGPT(weights.config).to(dtype=dtype, device=device)

    def step(self, batch, step: int) -> StepResult:
        self.readable.load_state_dict(self.model.state_dict())
        traces = [torch_trace(self.readable, tokens) for tokens in batch]
        loss = torch_train.train_step(self.model, self.optimizer, batch, step)
        _, m, v = torch_adam_moments(self.optimizer)
        names = [scalar_name(name) for name, _ in self.model.named_parameters()]  # the optimizer's order
        m, v = ({name: t.cpu().double().tolist() for name, t in zip(names, moment)} for moment in (m, v))
        return StepResult(loss, self.model.scalar_grads(), self.model.scalar_params(), m, v, traces)
