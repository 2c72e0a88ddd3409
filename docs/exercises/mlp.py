"""Step 4: the MLP as an nn.Module.

The scalar model's MLP, for one position of layer i:

    x = linear(x, sd[f"layer{i}.mlp_fc1"])  # (4 * n_embd,)
    x = [xi.relu() ** 2 for xi in x]        # microgpt's activation
    return linear(x, sd[f"layer{i}.mlp_fc2"])  # (n_embd,)

Write `MLP` with two torch.nn.Linear layers without bias, named fc1 and fc2 as in the project
(so that the project's weights load into it), for a (B, T, n_embd) batch. Check it:

    python scripts/exercise.py mlp
"""
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (you may want F.relu)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        # TODO: self.fc1 (n_embd -> 4 * n_embd) and self.fc2 (4 * n_embd -> n_embd), no bias.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_embd) -> (B, T, n_embd)."""
        # TODO: fc1, the activation, fc2.
        raise NotImplementedError("TODO: MLP.forward")
