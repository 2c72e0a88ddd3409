"""Two documents of different lengths in one batch: padding, and the mean over valid targets."""
import torch
import torch.nn.functional as F

from microgpt_scalar.config import get_config
from microgpt_torch.model import GPT, IGNORE_INDEX
from microgpt_torch.train import make_batch

BOS = 26
emma, al = [BOS, 4, 12, 12, 0, BOS], [BOS, 0, 11, BOS]  # "emma" and "al" as token ids
idx, targets = make_batch([emma, al], block_size=8)  # (B, T): T is the longer document's 5
print("idx\n", idx, "\ntargets\n", targets, sep="")

model = GPT(get_config(vocab_size=27), torch.Generator().manual_seed(0)).double()
logits, loss = model(idx, targets)  # (B, T, vocab_size) and the mean over the 8 valid targets
per_target = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
valid = targets != IGNORE_INDEX
counts = valid.sum(dim=1).tolist()
print("valid targets per document:", counts)
print(f"loss                             {loss.item():.12f}")
print(f"sum over valid targets / {sum(counts)}       {(per_target[valid].sum() / sum(counts)).item():.12f}")
emma_losses, al_losses = per_target[valid].split(counts)
print(f"mean of the two documents' means {((emma_losses.mean() + al_losses.mean()) / 2).item():.12f}")
