"""Step 3: a Linear without bias, as an nn.Module.

The scalar engine's linear takes one dot product per row of the weight, which is a list of
n_out rows of n_in Values:

    def linear(x, w):
        return [dot(w_row, x) for w_row in w]

Write `Linear`, an nn.Module that holds such a weight as one parameter and applies it to every
position of a (B, T, n_in) batch. Keep the scalar layout (n_out, n_in), as torch's nn.Linear
does, and call the parameter `weight`. Check it:

    python scripts/exercise.py linear
"""
import torch
import torch.nn as nn


class Linear(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        # TODO: self.weight, a parameter of shape (n_out, n_in) (small random numbers are fine:
        #       the check loads its own weights into it).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n_in) -> (..., n_out)."""
        # TODO: every output is one row of the weight dotted with x.
        raise NotImplementedError("TODO: Linear.forward")
