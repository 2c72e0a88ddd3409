"""The two engines, each taking the same training step on the same batch of documents.

Both sides do the same thing in their own package's words: the loss of each document with
that package's `forward_loss` (which also fills a trace of named intermediates), the mean
over the batch, backward, then one Adam update with the learning rate of the schedule.
What they produce comes back as plain Python floats in the scalar layout, name -> rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from microgpt_scalar import train as scalar_train
from microgpt_scalar.checkpoint import Checkpoint, restore_adam, unflatten
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import learning_rate_at
from microgpt_torch import train as torch_train
from microgpt_torch.checkpoint import from_scalar_checkpoint, restore
from microgpt_torch.model import scalar_name


@dataclass
class StepResult:
    """One engine's step. Gradients are from before the update, the rest from after it."""

    loss: float
    grads: dict  # name -> [n_out][n_in] rows
    params: dict
    adam_m: dict  # Adam's first moment (running mean of gradients)
    adam_v: dict  # Adam's second moment (running mean of squared gradients)
    traces: list  # per document of the batch: stage -> one list of numbers per position


def batch_loss(losses):
    """The mean of the documents' losses, written like the reference's mean over positions."""
    return (1 / len(losses)) * sum(losses)


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
            return float(batch_loss([scalar_train.forward_loss(self.model, tokens) for tokens in batch]).data)

    def step(self, batch, step: int) -> StepResult:
        traces = [{} for _ in batch]
        with scalar_train.graph_scope():
            loss = batch_loss([scalar_train.forward_loss(self.model, tokens, trace) for tokens, trace in zip(batch, traces)])
            loss.backward()
            loss = float(loss.data)  # drops the graph while the collector is still paused (see graph_scope)
        grads = {name: [[float(p.grad) for p in row] for row in rows] for name, rows in self.model.state_dict.items()}
        self.optimizer.step(learning_rate_at(self.config, step), step)
        m, v = (unflatten(moment, self.config) for moment in (self.optimizer.m, self.optimizer.v))
        return StepResult(loss, grads, self.model.params_as_floats(), m, v, traces)


class TorchSide:
    """The torch model, its torch.optim.Adam and its learning-rate scheduler."""

    def __init__(self, weights: Checkpoint, dtype: torch.dtype, device: str):
        self.model, self.optimizer, self.scheduler = restore(from_scalar_checkpoint(weights), dtype, device)

    def step(self, batch) -> StepResult:
        traces = [{} for _ in batch]
        self.optimizer.zero_grad(set_to_none=True)
        loss = batch_loss([torch_train.forward_loss(self.model, tokens, trace) for tokens, trace in zip(batch, traces)])
        loss.backward()
        grads = self.model.scalar_grads()
        self.optimizer.step()
        self.scheduler.step()
        m, v = self.moments()
        return StepResult(loss.item(), grads, self.model.scalar_params(), m, v, traces)

    def moments(self) -> tuple[dict, dict]:
        m, v = {}, {}
        for name, p in self.model.named_parameters():
            state = self.optimizer.state[p]
            m[scalar_name(name)] = state["exp_avg"].detach().cpu().double().tolist()
            v[scalar_name(name)] = state["exp_avg_sq"].detach().cpu().double().tolist()
        return m, v
