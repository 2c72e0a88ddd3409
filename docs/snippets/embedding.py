"""nn.Embedding is a row lookup, and the position table broadcasts over the batch."""
import torch
import torch.nn as nn

torch.manual_seed(0)
wte = nn.Embedding(27, 16)  # one row of 16 numbers per token: the scalar state_dict["wte"]
wpe = nn.Embedding(8, 16)  # one row per position: state_dict["wpe"]

idx = torch.tensor([[26, 4, 12, 12], [26, 0, 13, 13]])  # (B, T) = (2, 4) token ids
tok = wte(idx)  # (B, T, C)
pos = wpe(torch.arange(4))  # (T, C)
x = tok + pos  # (T, C) is repeated over B: broadcasting
print("tok", tuple(tok.shape), "+ pos", tuple(pos.shape), "->", tuple(x.shape))
print("wte(idx)[1, 2] is row 13 of wte:", torch.equal(tok[1, 2], wte.weight[13]))
print("x[1, 2] is wte[13] + wpe[2]:", torch.equal(x[1, 2], wte.weight[13] + wpe.weight[2]))
