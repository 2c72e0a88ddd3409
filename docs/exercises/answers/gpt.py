"""Step 7, an answer: the GPT, with the project's parameter names."""
import torch
import torch.nn as nn

from microgpt_torch.model import Block, rmsnorm


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device)
        x = rmsnorm(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.layers:
            x = block(x)
        return self.lm_head(x)  # (B, T, vocab_size)
