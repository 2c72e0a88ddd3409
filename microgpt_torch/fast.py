"""The models the trainer runs: the readable GPT of `model.py` with pieces swapped for faster ones.

    model = FusedGPT.from_scalar_params(config, params)   # what the faithful (one-document) run trains
    model = BatchedGPT(config)                            # what batched training runs

Each is built as the readable `GPT` first (the same weights from the same draws), then has
some of its pieces replaced. A replacement module takes over the readable one's `nn.Linear`
or weight instead of making its own, so the parameters keep their names and their order, and
a `state_dict` or checkpoint of any of the three models loads into any other.

`FusedGPT` swaps in torch's fused kernels: `F.rms_norm` for `rmsnorm`,
`F.scaled_dot_product_attention` between the projections in place of the written-out scores,
mask and softmax, and `F.cross_entropy` for the loss. The maths is the readable model's; the
rounding differs within float64's (tests/test_torch_fast.py), so the faithful run keeps it.

`BatchedGPT` goes further for large batches, with the kernels of `microgpt_torch/kernels.py`:
q, k and v from one product with the three matrices stacked and the attention method quickest
for the shape, RMSNorm and the relu² MLP as single autograd nodes with hand-written backward
passes, and an embedding whose gradient is summed with index_add_.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from microgpt_scalar.config import GPTConfig

from . import kernels
from .model import GPT, IGNORE_INDEX, MLP, Attention


def fused_rmsnorm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), eps=1e-5)


def fused_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


class FusedAttention(nn.Module):
    """A readable `Attention`'s projections, with torch's scaled_dot_product_attention between
    them. It keeps no attention weights, so a trace cannot read them from it."""

    def __init__(self, attention: Attention):
        super().__init__()
        # The readable module's own layers, registered in its order: the same parameters.
        self.wq, self.wk, self.wv, self.wo = attention.wq, attention.wk, attention.wv, attention.wo
        self.n_head, self.head_dim = attention.n_head, attention.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)  # (B, T, C) each
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        x_attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        x_attn = x_attn.transpose(1, 2).reshape(B, T, C)  # the heads side by side
        return self.wo(x_attn)  # (B, T, C)


class StackedAttention(FusedAttention):
    """The same attention: q, k and v from one product with the three matrices stacked, and
    the attention method quickest for the shape (microgpt_torch/kernels.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # q comes out scaled by 1 / sqrt(head_dim), the attention logits' scale, at no cost.
        w_qkv = torch.cat([self.wq.weight * self.head_dim**-0.5, self.wk.weight, self.wv.weight])  # (3C, C)
        q, k, v = F.linear(x, w_qkv).split(x.size(-1), dim=-1)  # (B, T, C) each
        return self.wo(kernels.attention(q, k, v, self.n_head))


class ReluSquaredMLP(nn.Module):
    """A readable relu² `MLP`'s layers, run as one autograd node in fewer passes."""

    def __init__(self, mlp: MLP):
        super().__init__()
        self.fc1, self.fc2 = mlp.fc1, mlp.fc2  # the same parameters, in the same order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.relu_squared_mlp(x, self.fc1.weight, self.fc2.weight)


class IndexAddEmbedding(nn.Module):
    """A readable `nn.Embedding`'s table: the same rows looked up, the gradient summed by
    index_add_ (microgpt_torch/kernels.py)."""

    def __init__(self, table: nn.Embedding):
        super().__init__()
        self.weight = table.weight  # the same parameter, under the same name

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return kernels.embedding(idx, self.weight)


class FusedGPT(GPT):
    """The readable GPT on torch's fused kernels: what the faithful one-document run trains."""

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        super().__init__(config, generator)
        self.norm = fused_rmsnorm
        for block in self.layers:
            block.norm = fused_rmsnorm
            block.attn = FusedAttention(block.attn)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return fused_cross_entropy(logits, targets)


class BatchedGPT(FusedGPT):
    """FusedGPT with the kernels quickest on large batches: what batched training runs. The
    same maths, rounded differently, so the faithful run keeps FusedGPT."""

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        super().__init__(config, generator)
        self.wte = IndexAddEmbedding(self.wte)
        self.norm = kernels.rms_norm
        for block in self.layers:
            block.norm = kernels.rms_norm
            block.attn = StackedAttention(block.attn)
            if block.mlp.squared:  # plain relu keeps the readable MLP
                block.mlp = ReluSquaredMLP(block.mlp)
