"""BatchedGPT's kernels (microgpt_torch/fast.py): the same maths as FusedGPT's, in fewer and
cheaper operations on the large (B, T, ...) tensors of a training batch.

    y = rms_norm(x)                       # one autograd node; its backward in four operations
    y = relu_squared_mlp(x, w1, w2)       # relu(x @ w1.T) ** 2 @ w2.T in fewer passes
    tokens = embedding(idx, weight)       # weight[idx], its gradient by index_add_
    out = attention(q, k, v, n_head)      # causal attention, the method picked by attention_method

Each takes and returns ordinary tensors and works on any device and under torch.compile.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5  # RMSNorm's, as in the scalar code


class RMSNorm(torch.autograd.Function):
    """x * (mean(x²) + eps) ** -0.5 over the last dimension.

    With y the output and s the scale, the gradient is s * (g - y * mean(g * y)): the
    backward reads the saved y and s, where autograd's own derivative of the composed
    formula takes about twenty operations."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.square().mean(-1, keepdim=True) + EPS)  # (..., 1)
        y = x * scale
        ctx.save_for_backward(y, scale)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        y, scale = ctx.saved_tensors
        dot = (grad * y).mean(-1, keepdim=True)  # (..., 1)
        return torch.addcmul(grad, y, dot, value=-1.0).mul_(scale)


class HeadBlocks(torch.autograd.Function):
    """(B, T, C) -> (B, T, nh, C): copy h of each position keeps head h's channels and is
    zero elsewhere. Written into zeros through a strided view of the blocks on the diagonal
    (and read back the same way for the gradient), where multiplying by a 0/1 mask would
    read and write every zero."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n_head: int) -> torch.Tensor:
        B, T, C = x.shape
        ctx.n_head = n_head
        blocks = x.new_zeros(B, T, n_head, C)
        diagonal(blocks, n_head).copy_(x.view(B, T, n_head, C // n_head))
        return blocks

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        B, T, _, C = grad.shape
        return diagonal(grad, ctx.n_head).reshape(B, T, C), None


def diagonal(blocks: torch.Tensor, n_head: int) -> torch.Tensor:
    """The (B, T, nh, hd) view of head h's channels in copy h of (B, T, nh, C) blocks."""
    B, T, _, C = blocks.shape
    return blocks.view(B, T, n_head, n_head, C // n_head).diagonal(dim1=2, dim2=3).transpose(2, 3)


class Embedding(torch.autograd.Function):
    """weight[idx], its rows gathered by index_select (on the CPU tens of times quicker than
    indexing with a tensor, which goes through the general indexing kernel); the gradient
    added up row by row with index_add_, several times quicker on the CPU than the
    embedding's own backward for a few dozen rows and many indices."""

    @staticmethod
    def forward(ctx, idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.num_rows = weight.size(0)
        return weight.index_select(0, idx.reshape(-1)).view(*idx.shape, weight.size(1))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (idx,) = ctx.saved_tensors
        C = grad.size(-1)
        summed = grad.new_zeros(ctx.num_rows, C).index_add_(0, idx.reshape(-1), grad.reshape(-1, C))
        return None, summed


def embedding(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return Embedding.apply(idx, weight)


def head_blocks(x: torch.Tensor, n_head: int) -> torch.Tensor:
    return HeadBlocks.apply(x, n_head)


class ReluSquaredMLP(torch.autograd.Function):
    """relu(x @ w1.T) ** 2 @ w2.T, the MLP, with its (…, 4C) tensors kept to three: the
    hidden layer h (made relu(h) in place), its square y, and in the backward one gradient,
    (g @ 2 w2) * relu(h), formed in place. (Autograd keeps five, and takes two more passes.)"""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        r = F.linear(x, w1).relu_()  # (…, 4C)
        y = r * r
        ctx.save_for_backward(x, w1, w2, r, y)
        return F.linear(y, w2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w1, w2, r, y = ctx.saved_tensors
        C_out, C_in = grad.size(-1), x.size(-1)
        grad_h = (grad @ (2 * w2)).mul_(r)  # dL/dh = 2 relu(h) * dL/dy
        grad_w2 = grad.reshape(-1, C_out).t() @ y.reshape(-1, y.size(-1))
        grad_w1 = grad_h.reshape(-1, grad_h.size(-1)).t() @ x.reshape(-1, C_in)
        return grad_h @ w1, grad_w1, grad_w2


def relu_squared_mlp(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return ReluSquaredMLP.apply(x, w1, w2)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return RMSNorm.apply(x)


# --- attention -----------------------------------------------------------------------------

def sdpa_attention(q, k, v, n_head: int) -> torch.Tensor:
    """torch's scaled_dot_product_attention on (B, nh, T, hd) views of (B, T, C) q, k, v;
    q comes scaled by head_dim ** -0.5 already."""
    B, T, C = q.shape
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)  # (B, nh, T, hd)
    return y.transpose(1, 2).reshape(B, T, C)


def block_diagonal_attention(q, k, v, n_head: int) -> torch.Tensor:
    """Every head of a sequence in one matrix product. Row s * nh + h of `keys` holds key s
    on head h's channels and zeros on the others, so keys (T * nh, C) times q's transpose
    (C, T) gives every head's logits at once, (T * nh, T); `values` stacks the values alike,
    and the weights' transpose times it leaves the heads' outputs side by side, (T, C).
    Four times the multiplications of attention head by head, in two products per sequence
    instead of 2 * nh tiny ones; and the softmax runs over the key positions s with the 32
    (t, h) pairs contiguous beside them, where over the last dimension of 8 it is 20 times
    slower (measured on the CPU). q comes scaled by head_dim ** -0.5 already."""
    B, T, C = q.shape
    keys = head_blocks(k, n_head).view(B, T * n_head, C)  # row s * nh + h
    values = head_blocks(v, n_head).view(B, T * n_head, C)
    logits = torch.baddbmm(causal_bias(T, n_head, q), keys, q.transpose(1, 2))  # (B, T * nh, T)
    weights = logits.view(B, T, n_head * T).softmax(dim=1).view(B, T * n_head, T)  # over s, per (h, t)
    return weights.transpose(1, 2) @ values  # (B, T, C)


def causal_bias(T: int, n_head: int, like: torch.Tensor) -> torch.Tensor:
    """(T * nh, T): row s * nh + h, column t: 0 where position t may see position s (s <= t),
    -inf where it may not."""
    hidden = torch.ones(T, T, dtype=torch.bool, device=like.device).tril(-1)  # [s, t]: s > t
    bias = torch.zeros(T, 1, T, dtype=like.dtype, device=like.device).masked_fill_(hidden.unsqueeze(1), float("-inf"))
    return bias.expand(T, n_head, T).reshape(T * n_head, T)


ATTENTION = {"sdpa": sdpa_attention, "block-diagonal": block_diagonal_attention}


# Where the block-diagonal product beats torch's kernel: the largest head size and sequence
# length, by device type. Measured forward and backward, the two methods taking turns
# (`python scripts/bench.py --only race`, its attention table): on the CPU at head size 4
# and 8 positions it took between 1/1.6 and 1/4.7 of scaled_dot_product_attention's time,
# eager and under torch.compile; at 16 positions it was 0.63-1.07x, so from there on torch's
# kernel is kept (its work grows with T * nh). CUDA's fused kernels are not beaten by it:
# none there.
BLOCK_DIAGONAL_UP_TO = {"cpu": {"head_dim": 8, "block": 8}}


def attention_method(q: torch.Tensor, n_head: int) -> str:
    """"block-diagonal" or "sdpa", by the table above, for q (B, T, C) on its device."""
    T, C = q.shape[-2:]
    limits = BLOCK_DIAGONAL_UP_TO.get(q.device.type)
    if limits and C // n_head <= limits["head_dim"] and T <= limits["block"]:
        return "block-diagonal"
    return "sdpa"


def attention(q, k, v, n_head: int) -> torch.Tensor:
    return ATTENTION[attention_method(q, n_head)](q, k, v, n_head)
