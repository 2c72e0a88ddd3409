"""A nanoGPT-style trainer, the baseline the project's batched step is measured against.

What a PyTorch user would reach for to train a model of this size: the well-known recipe of
a GPT-2-like decoder (LayerNorm before each sublayer and at the end, one fused c_attn
projection for the queries, keys and values, torch's scaled_dot_product_attention, a GELU
MLP four times wider, the token embedding tied to the output layer) trained by AdamW with a
warm-up and a cosine decay. Built here at the project's sizes (1 layer, n_embd 16, 4 heads,
block 8, vocab 27), without dropout and without biases, and fed the project's own batches:

    model = NanoGPT(config)                       # config: the project's GPTConfig
    optimizer = adamw(model)
    loss = train_step(model, optimizer, idx, targets, step)

Its work per token is a little larger than the project's (LayerNorm has weights, GELU is
dearer than relu squared); the benchmark compares the time each takes on the same batches.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

IGNORE_INDEX = -1  # the project's padding target


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)  # q, k and v in one product
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.mlp = MLP(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, config, seed: int = 0):
        super().__init__()
        self.config = config
        e = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, e)
        self.wpe = nn.Embedding(config.block_size, e)
        self.h = nn.ModuleList(Block(e, config.n_head) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(e, bias=False)
        self.lm_head = nn.Linear(e, config.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:  # GPT-2's init; residual projections scaled down by depth
                    std = 0.02 / math.sqrt(2 * config.n_layer) if name.endswith("c_proj.weight") else 0.02
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=IGNORE_INDEX)
        return logits, loss


def adamw(model: nn.Module, learning_rate: float = 1e-2, weight_decay: float = 0.1) -> torch.optim.AdamW:
    """AdamW, weight decay on the matrices only, torch's fused implementation (as the project's Adam)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, 0.95), fused=True)


def learning_rate(step: int, max_steps: int, peak: float = 1e-2, warmup: int = 100) -> float:
    """Linear warm-up to `peak`, then a cosine decay to a tenth of it at `max_steps`."""
    floor = peak / 10
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - floor)


def train_step(model, optimizer, idx: torch.Tensor, targets: torch.Tensor, step: int,
               max_steps: int = 10**9) -> float:
    """One AdamW update on a batch; returns the loss (read back every step, as the project's
    trainer does)."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(step, max_steps)
    _, loss = model(idx, targets)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()
