"""Step 8: the loss with F.cross_entropy on a padded batch.

The scalar trainer, for one document:

    probs = softmax(logits)                 # at each position
    loss_t = -probs[target_id].log()
    loss = (1 / n) * sum(losses)            # the mean over the document's positions

A batch pads its shorter documents; their padded targets are -1 and count for nothing. Write
`loss_fn`: the mean of -log(probability of the target) over every target that is not -1, with
torch.nn.functional.cross_entropy. Check it:

    python scripts/exercise.py loss
"""
import torch
import torch.nn.functional as F  # noqa: F401


def loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, T, vocab_size), targets (B, T) with -1 for padding -> a 0-d tensor."""
    # TODO: F.cross_entropy, with the classes where it expects them and the padding ignored.
    raise NotImplementedError("TODO: loss_fn")
