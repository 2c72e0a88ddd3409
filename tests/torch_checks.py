"""What the tests of both engines share: a forward and backward to compare, and comparisons
that name the culprit through `torch.testing.assert_close` (which reports the worst index).

    torch.testing.assert_close(logits, expected_logits, atol=1e-12, rtol=1e-12, msg=labelled("fused logits"))
    assert_float64_close("layer0.attn_wq grad", torch_rows, scalar_rows, atol=1e-15, rtol=1e-12)  # lists too
"""
from __future__ import annotations

import torch

from microgpt_torch.device import torch_threads


def float64(values) -> torch.Tensor:
    """A tensor or nested lists of numbers as a float64 CPU tensor, to compare in one dtype."""
    return torch.as_tensor(values, dtype=torch.float64).detach().cpu()


def labelled(label: str):
    """A `msg` for torch.testing.assert_close that puts `label` before torch's own report."""
    return lambda message: f"{label}: {message}"


def assert_float64_close(label: str, got, expected, atol: float, rtol: float) -> None:
    """torch.testing.assert_close of two tensors or nested lists of numbers, in float64, its
    report (worst difference and its index) headed by `label`."""
    torch.testing.assert_close(float64(got), float64(expected), atol=atol, rtol=rtol, msg=labelled(label))


def forward_backward(model, idx: torch.Tensor, targets: torch.Tensor):
    """(logits, loss, gradients by scalar name) of one forward and backward, on the CPU."""
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets)
    loss.backward()
    return logits.detach().cpu(), loss.detach().cpu(), model.scalar_grads()


def assert_results_close(label: str, got: tuple, expected: tuple, atol: float, rtol: float) -> None:
    """Two forward_backward results agree: the logits, the loss and every gradient."""
    (logits, loss, grads), (expected_logits, expected_loss, expected_grads) = got, expected
    torch.testing.assert_close(logits, expected_logits, atol=atol, rtol=rtol, msg=labelled(f"{label} logits"))
    torch.testing.assert_close(loss, expected_loss, atol=atol, rtol=rtol, msg=labelled(f"{label} loss"))
    for name in expected_grads:
        assert_float64_close(f"{label} {name} grad", grads[name], expected_grads[name], atol, rtol)


def single_thread():
    """Run torch on one thread: the tensors here are tiny, and a thread pool on a busy
    machine costs far more than it gives (measured 8x slower for a faithful run)."""
    return torch_threads(1)
