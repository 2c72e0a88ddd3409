"""Step 7: the GPT, with the project's parameter names.

The scalar model, for one token at position pos_id:

    x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]
    x = rmsnorm(x)
    for i in range(self.config.n_layer):
        x = self.block(x, i, keys[i], values[i])
    logits = linear(x, sd["lm_head"])

Write `GPT` for a (B, T) batch of token ids, returning the (B, T, vocab_size) logits. Name the
parameters as the project does, so that `model.load_state_dict(...)` takes the project's weights:
wte and wpe (torch.nn.Embedding), lm_head (no bias) and layers (a torch.nn.ModuleList of Block).
Check it:

    python scripts/exercise.py gpt
"""
import torch
import torch.nn as nn

from microgpt_torch.model import Block, rmsnorm  # noqa: F401  (or yours from steps 2 and 6)


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        # TODO: self.wte, self.wpe, self.lm_head, self.layers (config.n_layer blocks).

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) token ids -> (B, T, vocab_size) logits."""
        # TODO: token rows plus position rows, rmsnorm, the blocks, lm_head.
        raise NotImplementedError("TODO: GPT.forward")
