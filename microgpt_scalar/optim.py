"""Adam with bias correction, and the learning-rate schedule, on scalar parameters.

    lr = learning_rate_at(step, config)        # the one schedule; the torch trainer uses it too
    optimizer.step(lr, step)
    m, v = adam_moments(optimizer)             # what a checkpoint saves and a comparison reads

`microgpt_torch/optim.py` builds the same thing from `torch.optim.Adam`.
"""
from __future__ import annotations

import math

from .config import GPTConfig


def learning_rate_at(step: int, config: GPTConfig) -> float:
    """The learning rate of 0-based step `step` of config.num_steps."""
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / config.num_steps))
    return config.learning_rate * (1 - step / config.num_steps)


class Adam:
    """m and v, one entry per parameter, in the order of `params`."""

    def __init__(self, params: list, config: GPTConfig):
        self.params = params
        self.beta1, self.beta2, self.eps = config.beta1, config.beta2, config.eps_adam
        self.m = [0.0] * len(params)  # running mean of gradients
        self.v = [0.0] * len(params)  # running mean of squared gradients

    def step(self, lr: float, step: int) -> None:
        """Update every parameter from its gradient, then reset the gradient to zero
        (backward adds to .grad, so a gradient left in place would leak into the next step)."""
        beta1, beta2, eps, m, v = self.beta1, self.beta2, self.eps, self.m, self.v
        # The same expressions, with what does not depend on i worked out once.
        one_minus_beta1, one_minus_beta2 = 1 - beta1, 1 - beta2
        bias1, bias2 = 1 - beta1 ** (step + 1), 1 - beta2 ** (step + 1)
        for i, p in enumerate(self.params):
            grad = p.grad
            m[i] = m_i = beta1 * m[i] + one_minus_beta1 * grad
            v[i] = v_i = beta2 * v[i] + one_minus_beta2 * grad**2
            m_hat = m_i / bias1
            v_hat = v_i / bias2
            p.data -= lr * m_hat / (v_hat**0.5 + eps)
            p.grad = 0


def adam_moments(optimizer: Adam) -> tuple[list, list]:
    """(m, v): copies of Adam's first and second moments, flat, in the parameter order."""
    return list(optimizer.m), list(optimizer.v)


def set_adam_moments(optimizer: Adam, m: list, v: list) -> None:
    """Give Adam the moments of a run that has already taken steps (e.g. from a checkpoint)."""
    if len(m) != len(optimizer.params) or len(v) != len(optimizer.params):
        raise ValueError(f"{len(m)} and {len(v)} moments for {len(optimizer.params)} parameters")
    optimizer.m, optimizer.v = [float(x) for x in m], [float(x) for x in v]
