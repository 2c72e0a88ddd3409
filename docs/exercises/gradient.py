"""Step 1: a tensor expression and its gradient.

The scalar engine computes this loss one Value at a time (a and b are lists of Values):

    terms = [(ai * bi + ai.exp()).relu() ** 2 for ai, bi in zip(a, b)]
    loss = sum(terms) / len(terms)
    loss.backward()          # then a[i].grad and b[i].grad hold d loss / d a[i], d loss / d b[i]

Write `loss_and_gradients`: the same loss on two tensors, without a Python loop, and its
gradient with respect to each. Check it:

    python scripts/exercise.py gradient
"""
import torch


def loss_and_gradients(a: list, b: list):
    """Return (the loss as a Python float, the gradient with respect to a, ... to b), the
    gradients as tensors of len(a) numbers."""
    # TODO: make a and b tensors of Python's float precision that record their gradient,
    #       compute the loss on whole tensors, run backward, and return the three results.
    raise NotImplementedError("TODO: loss_and_gradients")
