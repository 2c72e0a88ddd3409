"""Comparisons that name the culprit: which tensor, its shape, the worst difference and where.

    assert_close("layer0.attn_wq grad", torch_rows, scalar_rows, atol=1e-15, rtol=1e-12)
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch


def assert_close(name: str, got, expected, atol: float, rtol: float) -> None:
    """Raise AssertionError unless |got - expected| <= atol + rtol * |expected| everywhere.

    `got` and `expected` are tensors or nested lists of numbers; compared in float64.
    Ragged lists (trace positions of different lengths) are compared row by row.
    """
    if _is_ragged(expected) or _is_ragged(got):
        if len(got) != len(expected):
            raise AssertionError(f"{name}: {len(got)} rows, expected {len(expected)}")
        for p, (got_row, expected_row) in enumerate(zip(got, expected)):
            assert_close(f"{name}[{p}]", got_row, expected_row, atol, rtol)
        return
    got = torch.as_tensor(got, dtype=torch.float64).detach().cpu()
    expected = torch.as_tensor(expected, dtype=torch.float64).detach().cpu()
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: shape {list(got.shape)}, expected {list(expected.shape)}")
    if got.numel() == 0:
        return
    same = (got == expected) | (got.isnan() & expected.isnan())  # equal infinities and nans agree
    diff = (got - expected).abs().masked_fill(same, 0.0).nan_to_num(nan=math.inf, posinf=math.inf)
    excess = diff - (atol + rtol * expected.abs().nan_to_num(nan=0.0, posinf=0.0))
    worst = int(excess.flatten().argmax())
    if excess.flatten()[worst] > 0:
        index = list(torch.unravel_index(torch.tensor(worst), got.shape)) if got.dim() else []
        index = [int(i) for i in index]
        scale = abs(float(expected.flatten()[worst]))
        rel = float(diff.flatten()[worst]) / scale if scale else float("inf")
        raise AssertionError(
            f"{name} (shape {list(got.shape)}): worst |diff| {float(diff.flatten()[worst]):.3g} "
            f"(relative {rel:.3g}) at index {index}: got {float(got.flatten()[worst])!r}, "
            f"expected {float(expected.flatten()[worst])!r} (atol {atol:g}, rtol {rtol:g})"
        )


def forward_backward(model, idx: torch.Tensor, targets: torch.Tensor, fused: bool = False):
    """(logits, loss, gradients by scalar name) of one forward and backward, on the CPU."""
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets, fused=fused)
    loss.backward()
    return logits.detach().cpu(), loss.detach().cpu(), model.scalar_grads()


def assert_results_close(label: str, got: tuple, expected: tuple, atol: float, rtol: float) -> None:
    """Two forward_backward results agree: the logits, the loss and every gradient."""
    (logits, loss, grads), (expected_logits, expected_loss, expected_grads) = got, expected
    assert_close(f"{label} logits", logits, expected_logits, atol, rtol)
    assert_close(f"{label} loss", loss, expected_loss, atol, rtol)
    for name in expected_grads:
        assert_close(f"{label} {name} grad", grads[name], expected_grads[name], atol, rtol)


def _is_ragged(rows) -> bool:
    if isinstance(rows, torch.Tensor) or not isinstance(rows, (list, tuple)) or not rows:
        return False
    lengths = {len(row) if isinstance(row, (list, tuple)) else -1 for row in rows}
    return len(lengths) > 1


@contextmanager
def single_thread():
    """Run torch on one thread: the tensors here are tiny, and a thread pool on a busy
    machine costs far more than it gives (measured 8x slower for a faithful run)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
