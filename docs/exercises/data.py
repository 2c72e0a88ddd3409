"""Step 10: a Dataset of names and a DataLoader that pads.

The scalar trainer takes one document a step:

    tokens = tokenizer.encode(doc)            # [BOS] + ids + [BOS]
    n = min(block_size, len(tokens) - 1)      # inputs tokens[:n], targets tokens[1:n + 1]

A batch holds documents of different lengths in one (B, T) tensor, T the longest n of the
batch: shorter inputs are padded with 0, shorter targets with -1 (which the loss ignores).
Write `NamesDataset` (item i: the inputs and targets of name i, as tensors), `collate` (a list
of items -> (idx, targets), padded) and `make_loader` (a DataLoader over the dataset in order,
batches of batch_size). Check it:

    python scripts/exercise.py data
"""
import torch  # noqa: F401
from torch.utils.data import DataLoader, Dataset  # noqa: F401


class NamesDataset(Dataset):
    def __init__(self, docs, tokenizer, block_size):
        # TODO: keep what __getitem__ needs.
        pass

    def __len__(self):
        # TODO: how many names.
        raise NotImplementedError("TODO: NamesDataset.__len__")

    def __getitem__(self, i):
        # TODO: (inputs, targets) of name i, two 1-d tensors of n token ids.
        raise NotImplementedError("TODO: NamesDataset.__getitem__")


def collate(items):
    """[(inputs, targets), ...] -> (idx, targets), each (B, T)."""
    # TODO: pad to the longest (torch.nn.utils.rnn.pad_sequence can do it).
    raise NotImplementedError("TODO: collate")


def make_loader(dataset, batch_size):
    # TODO: a DataLoader in order, with your collate.
    raise NotImplementedError("TODO: make_loader")
