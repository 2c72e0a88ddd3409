"""Step 8, an answer: the loss with F.cross_entropy on a padded batch."""
import torch
import torch.nn.functional as F


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-1)  # classes in dimension 1
