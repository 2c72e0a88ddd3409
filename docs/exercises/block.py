"""Step 6: the Block, two sublayers added to the stream.

The scalar model's layer i:

    x = [a + r for a, r in zip(self.attention(rmsnorm(x), i, keys, values), x)]
    x = [m + r for m, r in zip(self.mlp(rmsnorm(x), i), x)]

Write `Block` for a (B, T, n_embd) batch. It uses the project's Attention and MLP (or yours from
steps 4 and 5), named attn and mlp as in the project. Check it:

    python scripts/exercise.py block
"""
import torch
import torch.nn as nn

from microgpt_torch.model import MLP, Attention, rmsnorm  # noqa: F401  (what the block is made of)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        # TODO: self.attn and self.mlp.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_embd) -> (B, T, n_embd)."""
        # TODO: each sublayer reads the normalised stream and adds its output to it.
        raise NotImplementedError("TODO: Block.forward")
