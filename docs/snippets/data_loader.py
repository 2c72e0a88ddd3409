"""A Dataset of names and a DataLoader that pads each batch to its longest name."""
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from microgpt_scalar.data import Tokenizer


class Names(Dataset):
    def __init__(self, docs, tokenizer, block_size):
        self.docs, self.tokenizer, self.block_size = docs, tokenizer, block_size

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):  # the scalar trainer's inputs and targets for document i
        tokens = self.tokenizer.encode(self.docs[i])
        n = min(self.block_size, len(tokens) - 1)
        return torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])


def pad(items):  # a list of (inputs, targets) -> two (B, T) tensors
    inputs, targets = zip(*items)
    return pad_sequence(inputs, batch_first=True), pad_sequence(targets, batch_first=True, padding_value=-1)


tokenizer = Tokenizer("abcdefghijklmnopqrstuvwxyz")
names = Names(["emma", "al", "olivia", "jo", "mia"], tokenizer, block_size=8)
print("len:", len(names), "| item 1:", names[1])
loader = DataLoader(names, batch_size=2, shuffle=False, collate_fn=pad)
for idx, targets in loader:
    print(tuple(idx.shape), "targets", targets.tolist())
