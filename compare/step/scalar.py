"""The scalar engine's side of a comparison: the training scripts' own step, read through
public interfaces. It imports no torch, so the engine's own process (compare.engine.worker) runs it
while the parent process is still loading torch.

`ScalarSide.step` runs `microgpt_scalar.train.train_step` (the function
`scripts/train_scalar.py` calls) on a batch: the mean of the documents' losses, backward, one
Adam update at the rate of the schedule. The traced intermediates come from a `ScalarTracer`
wrapped around the model's pieces, the gradients from a stand-in optimizer that copies them
before Adam resets them, the moments from `adam_moments` in `optim.py`; everything comes back as plain
Python floats in the scalar layout, name -> rows.
"""
from __future__ import annotations

from dataclasses import dataclass

from microgpt_scalar import train as scalar_train
from microgpt_scalar.checkpoint import Checkpoint, restore_adam, unflatten
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import adam_moments as scalar_adam_moments

from .trace import ScalarTracer


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
        recorder = GradientRecorder(self.optimizer, self.model)
        try:
            with ScalarTracer(self.model) as tracer:
                loss = scalar_train.train_step(self.model, recorder, batch, step)
        except scalar_train.NonFiniteLossError as error:
            if error.__cause__ is None:
                raise
            raise error.__cause__ from None  # what the engine itself raised (1 / 0 in exp is a fault, not a loss)
        m, v = (unflatten(moment, self.config) for moment in scalar_adam_moments(self.optimizer))
        lengths = [min(self.config.block_size, len(tokens) - 1) for tokens in batch]
        return StepResult(float(loss), recorder.grads, self.model.params_as_floats(), m, v,
                          tracer.by_document(lengths))


class GradientRecorder:
    """Stands in for a scalar optimizer: copies the model's gradients, then steps. The scalar
    Adam resets every gradient to 0 as it updates (as the reference program does), so the
    gradients are read here, between backward and the update:

        recorder = GradientRecorder(optimizer, model)
        loss = train_step(model, recorder, tokens, step)
        recorder.grads        # name -> [n_out][n_in] rows, from before the update
    """

    def __init__(self, optimizer, model):
        self.optimizer, self.model, self.grads = optimizer, model, None

    def step(self, lr: float, step: int) -> None:
        self.grads = {name: [[float(p.grad) for p in row] for row in matrix]
                      for name, matrix in self.model.state_dict.items()}
        self.optimizer.step(lr, step)
