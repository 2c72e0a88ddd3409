"""The project's batched training step as it was before its batched kernels, kept frozen.

`microgpt_torch` trains batches on kernels of its own (a fused q/k/v product, hand-written
RMSNorm and relu² backward passes, attention chosen by shape). This module keeps the step
they replaced, line for line as it was: `FusedGPT` of `microgpt_torch/fast.py` (three
q/k/v products, `F.rms_norm`, `F.relu(x) ** 2`, torch's scaled_dot_product_attention) and
`batched_train_step` of `microgpt_torch/train.py` (on one process, or one of a group in
DistributedDataParallel over gloo, as --processes ran it). The benchmark runs it
alternately with today's step, so the speed-up is measured in one run on one machine.

    model = PreviousGPT(config); model.load_state_dict(project_model.state_dict())  # same names
    loss = train_step(model, optimizer, idx, targets, num_targets, step)
"""
from __future__ import annotations

import math

import torch
import torch.distributed
import torch.nn as nn
import torch.nn.functional as F

from microgpt_scalar.optim import learning_rate_at
from microgpt_torch.train import config_of

IGNORE_INDEX = -1


def fused_rmsnorm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), eps=1e-5)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        e = config.n_embd
        self.wq = nn.Linear(e, e, bias=False)
        self.wk = nn.Linear(e, e, bias=False)
        self.wv = nn.Linear(e, e, bias=False)
        self.wo = nn.Linear(e, e, bias=False)
        self.n_head, self.head_dim = config.n_head, config.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        x_attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x_attn = x_attn.transpose(1, 2).reshape(B, T, C)
        return self.wo(x_attn)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.fc2 = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.squared = config.activation == "relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        x = F.relu(x) ** 2 if self.squared else F.relu(x)
        return self.fc2(x)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm = fused_rmsnorm
        self.attn = Attention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        x = x + self.mlp(self.norm(x))
        return x


class PreviousGPT(nn.Module):
    """FusedGPT's model; its state_dict has the project GPT's names and shapes."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = fused_rmsnorm

    def forward(self, idx: torch.Tensor, targets: torch.Tensor):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = self.norm(self.wte(idx) + self.wpe(pos))
        for block in self.layers:
            x = block(x)
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss


def train_step(model, optimizer, idx, targets, num_targets: int, step: int, world_size: int = 1) -> float:
    """The step of `batched_train_step` (no autocast): gradients of the mean loss, the loss
    read back and checked, the step's learning rate, one Adam update. With `world_size` > 1,
    one process's rows of a global batch, `model` in DistributedDataParallel: each process
    backpropagates its loss sum * world_size / num_targets, and the loss sums meet in an
    all_reduce, as the code's --processes ran it."""
    optimizer.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss_sum = loss * (targets != IGNORE_INDEX).sum()
    (loss_sum * (world_size / num_targets)).backward()
    total = loss_sum.detach().double()
    if world_size > 1:
        torch.distributed.all_reduce(total)
    value = float(total / num_targets)
    if not math.isfinite(value):
        raise ValueError(f"loss is {value} at step {step + 1}")
    config = config_of(model)  # through torch.compile's and DistributedDataParallel's wrappers
    for group in optimizer.param_groups:
        group["lr"] = learning_rate_at(step, config)
    optimizer.step()
    return value
