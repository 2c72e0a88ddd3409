"""Step 10, an answer: a Dataset of names and a DataLoader that pads."""
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset


class NamesDataset(Dataset):
    def __init__(self, docs, tokenizer, block_size):
        self.docs, self.tokenizer, self.block_size = docs, tokenizer, block_size

    def __len__(self):
        return len(self.docs)

    def __getitem__(self, i):
        tokens = self.tokenizer.encode(self.docs[i])
        n = min(self.block_size, len(tokens) - 1)
        return torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])


def collate(items):
    inputs, targets = zip(*items)
    return (pad_sequence(inputs, batch_first=True, padding_value=0),
            pad_sequence(targets, batch_first=True, padding_value=-1))


def make_loader(dataset, batch_size):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
