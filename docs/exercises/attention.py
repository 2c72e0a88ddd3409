"""Step 5: one attention head, then multi-head attention with the causal mask.

The scalar model, at position p, for head h (q is this position's query; keys and values hold
positions 0 .. p, cached as the model went):

    q_h = q[hs:hs + head_dim]                              # hs = h * head_dim
    k_h = [k_s[hs:hs + head_dim] for k_s in keys]
    v_h = [v_s[hs:hs + head_dim] for v_s in values]
    attn_logits = [dot(q_h, k_h[s]) / head_dim**0.5 for s in range(len(k_h))]
    attn_weights = softmax(attn_logits)
    head_out = [dot(attn_weights, [v_h[s][j] for s in range(len(v_h))]) for j in range(head_dim)]

then the heads side by side, projected by attn_wo.

First write `attention_head` for q, k and v of shape (T, head_dim): every position at once.
Without a cache, position p would see every key; hide the later ones. Then write `Attention`
(weights wq, wk, wv, wo as in the project) for a (B, T, n_embd) batch: cut q, k and v into
n_head heads, run your attention_head on all of them at once, put the heads back side by side.
Check both:

    python scripts/exercise.py attention
"""
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (you may want F.softmax)


def attention_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., T, head_dim) each -> (..., T, head_dim); position p reads positions 0 .. p."""
    # TODO: the (T, T) scores of every query against every key, scaled; the entries where the key
    #       comes after the query set to -inf; softmax over the keys; the weighted sum of values.
    raise NotImplementedError("TODO: attention_head")


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        # TODO: self.wq, self.wk, self.wv, self.wo: n_embd -> n_embd, no bias; keep config.n_head.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_embd) -> (B, T, n_embd)."""
        # TODO: q, k, v; each (B, T, C) cut into heads (B, n_head, T, head_dim); attention_head;
        #       the heads back to (B, T, C); wo.
        raise NotImplementedError("TODO: Attention.forward")
