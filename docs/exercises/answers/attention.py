"""Step 5, an answer: one attention head, then multi-head attention with the causal mask."""
import torch
import torch.nn as nn
import torch.nn.functional as F


def attention_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T, head_dim = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1) / head_dim**0.5  # (..., T, T): query p against key s
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()  # s <= p
    scores = scores.masked_fill(~causal, float("-inf"))
    return F.softmax(scores, dim=-1) @ v  # (..., T, head_dim)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        e = config.n_embd
        self.wq = nn.Linear(e, e, bias=False)
        self.wk = nn.Linear(e, e, bias=False)
        self.wv = nn.Linear(e, e, bias=False)
        self.wo = nn.Linear(e, e, bias=False)
        self.n_head = config.n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)  # (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        x = attention_head(q, k, v)  # every head of every document at once
        x = x.transpose(1, 2).reshape(B, T, C)  # the heads side by side again
        return self.wo(x)
