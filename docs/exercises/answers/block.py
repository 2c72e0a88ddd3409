"""Step 6, an answer: the Block."""
import torch
import torch.nn as nn

from microgpt_torch.model import MLP, Attention, rmsnorm


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attn = Attention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(rmsnorm(x))
        x = x + self.mlp(rmsnorm(x))
        return x
