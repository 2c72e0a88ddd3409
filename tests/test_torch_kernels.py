"""BatchedGPT's kernels (microgpt_torch/kernels.py) against independent oracles:
finite differences for the hand-written backward passes, attention written head by head
for every attention method, and the checkpoints of the other models."""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch_checks import assert_float64_close, forward_backward

from microgpt_scalar.config import get_config
from microgpt_torch import kernels
from microgpt_torch.checkpoint import checkpoint_of, restore
from microgpt_torch.fast import BatchedGPT, FusedGPT


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


def random(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


IDX = torch.tensor([[0, 2, 2], [5, 0, 1]])
W1 = torch.randn(64, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(7)).requires_grad_()
W2 = torch.randn(16, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(8)).requires_grad_()
FUNCTIONS = {
    "rms_norm": kernels.rms_norm,
    "head_blocks": lambda x: kernels.head_blocks(x, 4),
    "relu_squared_mlp": lambda x: kernels.relu_squared_mlp(x, W1, W2),
    "embedding": lambda weight: kernels.embedding(IDX, weight.view(6, 16)),  # rows 0 and 2 twice, 3 and 4 never
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_hand_written_backward_passes_match_finite_differences(name):
    x = random(2, 3, 16).requires_grad_()
    assert gradcheck(FUNCTIONS[name], (x,))
    if name == "relu_squared_mlp":  # and the weights' gradients
        assert gradcheck(lambda w1, w2: kernels.relu_squared_mlp(x.detach(), w1, w2), (W1, W2))


def test_finite_differences_reject_a_wrong_backward():
    class HalfGradient(kernels.ReluSquaredMLP):  # relu(h) * g: the factor 2 forgotten
        @staticmethod
        def backward(ctx, grad):
            x, w1, w2, r, y = ctx.saved_tensors
            return ((grad @ w2) * r) @ w1, None, None

    with pytest.raises(Exception, match="Jacobian mismatch"):
        gradcheck(lambda x: HalfGradient.apply(x, W1.detach(), W2.detach()), (random(4, 16).requires_grad_(),))


def test_kernels_compute_the_formulas():
    x = random(6, 16)
    expected = x * (x.pow(2).mean(-1, keepdim=True) + 1e-5) ** -0.5
    torch.testing.assert_close(kernels.rms_norm(x), expected, atol=1e-15, rtol=1e-14)
    hidden = x @ W1.detach().t()
    torch.testing.assert_close(kernels.relu_squared_mlp(x, W1.detach(), W2.detach()),
                               torch.where(hidden > 0, hidden * hidden, 0.0) @ W2.detach().t(), atol=1e-12, rtol=1e-12)
    blocks = kernels.head_blocks(x.view(2, 3, 16), 4)  # (2, 3, 4, 16)
    head_of = torch.arange(16) // 4
    for h in range(4):
        assert torch.equal(blocks[:, :, h], x.view(2, 3, 16) * (head_of == h))
    weight = random(6, 16, seed=1)
    assert torch.equal(kernels.embedding(IDX, weight), weight[IDX])


def attention_head_by_head(q, k, v, n_head):
    """Causal attention as the scalar code computes it: per sequence, head and position t,
    softmax over the positions s <= t of q_t . k_s / sqrt(hd), then the weighted values."""
    B, T, C = q.shape
    hd = C // n_head
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(n_head):
            cols = slice(h * hd, (h + 1) * hd)
            for t in range(T):
                logits = torch.stack([q[b, t, cols] @ k[b, s, cols] / hd**0.5 for s in range(t + 1)])
                weights = torch.softmax(logits, 0)
                out[b, t, cols] = sum(weights[s] * v[b, s, cols] for s in range(t + 1))
    return out


@pytest.mark.parametrize("method", list(kernels.ATTENTION))
@pytest.mark.parametrize("B, T, n_head, head_dim", [(3, 8, 4, 4), (2, 1, 4, 4), (2, 5, 2, 8), (2, 16, 4, 4),
                                                    (1, 4, 1, 16)])
def test_every_attention_method_equals_attention_head_by_head(method, B, T, n_head, head_dim):
    q, k, v = (random(B, T, n_head * head_dim, seed=i).requires_grad_() for i in range(3))
    got = kernels.ATTENTION[method](q * head_dim**-0.5, k, v, n_head)  # q comes scaled
    expected = attention_head_by_head(q, k, v, n_head)
    torch.testing.assert_close(got, expected, atol=1e-14, rtol=1e-12)
    grad = random(*got.shape, seed=9)
    for name, a, b in zip("qkv", torch.autograd.grad(got, (q, k, v), grad),
                          torch.autograd.grad(expected, (q, k, v), grad)):
        assert_float64_close(f"{method} d{name}", a, b, 1e-13, 1e-12)


def test_the_attention_check_sees_a_wrong_mask(monkeypatch):
    q, k, v = (random(2, 8, 16, seed=i) for i in range(3))
    expected = attention_head_by_head(q, k, v, 4)
    monkeypatch.setattr(kernels, "causal_bias", lambda T, n_head, like: torch.zeros(T * n_head, T, dtype=like.dtype))
    with pytest.raises(AssertionError):  # every position sees every other
        torch.testing.assert_close(kernels.block_diagonal_attention(q / 2, k, v, 4), expected, atol=1e-14, rtol=1e-12)


def test_attention_method_follows_the_table():
    def method(device, T, C, n_head):
        return kernels.attention_method(torch.empty(2, T, C, device=device), n_head)

    assert method("cpu", 8, 16, 4) == method("cpu", 8, 32, 4) == "block-diagonal"  # head sizes 4 and 8
    assert method("cpu", 16, 16, 4) == "sdpa"  # 16 positions (microgpt-v2): torch's kernel was faster
    assert method("cpu", 8, 64, 4) == "sdpa"  # head size 16
    assert method("cpu", 32, 16, 4) == "sdpa"  # 32 positions
    assert method("meta", 8, 16, 4) == "sdpa"  # a device the table does not name


def test_batched_model_has_the_parameters_of_the_other_models_and_loads_their_checkpoints():
    config = get_config("microgpt")
    fused = FusedGPT(config, generator=torch.Generator().manual_seed(3)).double()
    batched = BatchedGPT(config).double()
    assert [(n, p.shape) for n, p in batched.named_parameters()] == [(n, p.shape) for n, p in fused.named_parameters()]
    restored, _ = restore(checkpoint_of(fused, list("abcdefghijklmnopqrstuvwxyz")), model_class=BatchedGPT)
    assert type(restored) is BatchedGPT and restored.scalar_params() == fused.scalar_params()
    idx = torch.randint(config.vocab_size, (4, config.block_size), generator=torch.Generator().manual_seed(0))
    logits, loss, grads = forward_backward(restored, idx, idx)
    expected_logits, expected_loss, expected_grads = forward_backward(fused, idx, idx)
    torch.testing.assert_close(logits, expected_logits, atol=1e-12, rtol=1e-12)
    for name in grads:
        assert_float64_close(name, grads[name], expected_grads[name], 1e-12, 1e-12)
