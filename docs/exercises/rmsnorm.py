"""Step 2: rmsnorm on a batch.

The scalar engine normalises one position's n_embd Values:

    def rmsnorm(x):
        ms = dot(x, x) / len(x)  # mean of squares
        scale = (ms + 1e-5) ** -0.5
        return [xi * scale for xi in x]

Write it for a tensor x of shape (B, T, C): every position of every document at once, each
normalised over its own C numbers. Check it:

    python scripts/exercise.py rmsnorm
"""
import torch


def rmsnorm(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, T, C)."""
    # TODO: the mean of squares over the last axis, kept as an axis of size 1 so that it
    #       broadcasts against x, then the scale, then x times the scale.
    raise NotImplementedError("TODO: rmsnorm")
