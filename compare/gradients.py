"""The scalar engine's gradients, read between its backward and Adam's update.

The scalar Adam resets every gradient to 0 as it updates (as the reference program does), so
a checker that runs the training scripts' own `train_step` hands it this stand-in optimizer:

    recorder = GradientRecorder(optimizer, model)
    loss = train_step(model, recorder, tokens, step)
    recorder.grads        # name -> [n_out][n_in] rows, from before the update
"""
from __future__ import annotations


class GradientRecorder:
    """Stands in for a scalar optimizer: copies the model's gradients, then steps."""

    def __init__(self, optimizer, model):
        self.optimizer, self.model, self.grads = optimizer, model, None

    def step(self, lr: float, step: int) -> None:
        self.grads = {name: [[float(p.grad) for p in row] for row in matrix]
                      for name, matrix in self.model.state_dict.items()}
        self.optimizer.step(lr, step)
