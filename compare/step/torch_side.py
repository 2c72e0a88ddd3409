"""The two engines, each taking the training scripts' own step on the same batch of documents.

The scalar side is `compare.step.scalar` (no torch there). The torch side runs
`microgpt_torch.train.train_step` (the function `scripts/train_torch.py` calls) on the
FusedGPT, as the script builds it; the trace is read with forward hooks on a readable GPT twin
with the same weights, the gradients from the parameters, the moments from `adam_moments` in
`optim.py`. What it produces comes back as plain Python floats in the scalar layout.
"""
from __future__ import annotations

import torch

from microgpt_scalar.checkpoint import Checkpoint
from microgpt_torch import train as torch_train
from microgpt_torch.checkpoint import from_scalar_checkpoint, restore
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import GPT as TorchGPT
from microgpt_torch.model import scalar_name
from microgpt_torch.optim import adam_moments as torch_adam_moments

from .scalar import ScalarSide, StepResult
from .trace import torch_trace

__all__ = ["ScalarSide", "StepResult", "TorchSide"]


class TorchSide:
    """The FusedGPT and its torch.optim.Adam, as the training script builds them, and a
    readable GPT twin with the same weights that the trace is read from."""

    def __init__(self, weights: Checkpoint, dtype: torch.dtype, device: str):
        self.model, self.optimizer = restore(from_scalar_checkpoint(weights), dtype, device, model_class=FusedGPT)
        self.readable = TorchGPT(weights.config).to(dtype=dtype, device=device)

    def step(self, batch, step: int) -> StepResult:
        self.readable.load_state_dict(self.model.state_dict())
        traces = [torch_trace(self.readable, tokens) for tokens in batch]
        loss = torch_train.train_step(self.model, self.optimizer, batch, step)
        _, m, v = torch_adam_moments(self.optimizer)
        names = [scalar_name(name) for name, _ in self.model.named_parameters()]  # the optimizer's order
        m, v = ({name: t.cpu().double().tolist() for name, t in zip(names, moment)} for moment in (m, v))
        return StepResult(loss, self.model.scalar_grads(), self.model.scalar_params(), m, v, traces)
