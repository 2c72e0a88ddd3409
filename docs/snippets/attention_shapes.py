"""Causal attention on tensors: heads cut with view and transpose, the future hidden with masked_fill."""
import torch

torch.manual_seed(0)
B, T, C, nh = 1, 4, 8, 2  # one document of 4 positions, 8 numbers each, 2 heads of 4
hd = C // nh
q, k, v = torch.randn(B, T, C), torch.randn(B, T, C), torch.randn(B, T, C)

heads = q.view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd): head h is q[..., h*hd:(h+1)*hd]
print("q", tuple(q.shape), "-> heads", tuple(heads.shape))
print("head 1, position 2 is q[0, 2, 4:8]:", torch.equal(heads[0, 1, 2], q[0, 2, 4:8]))

k_heads, v_heads = (t.view(B, T, nh, hd).transpose(1, 2) for t in (k, v))
scores = heads @ k_heads.transpose(-2, -1) / hd**0.5  # (B, nh, T, T): query p against key s
causal = torch.ones(T, T, dtype=torch.bool).tril()  # True where s <= p
print("causal mask\n", causal.int(), sep="")
weights = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1)
print("head 0's weights (row p: query p)\n", weights[0, 0].round(decimals=2), sep="")
out = (weights @ v_heads).transpose(1, 2).reshape(B, T, C)  # the heads side by side again
print("out", tuple(out.shape), "| row 0 is v's row 0:", torch.allclose(out[0, 0], v[0, 0]))
