"""Documents and the character tokenizer.

A data file holds one document (a name) per line. The vocabulary is the sorted set of the
documents' characters; character i is token i, and BOS, which begins and ends every
sequence, is one more token after them.
"""
from __future__ import annotations

import random
from pathlib import Path

NAMES_FILE = Path(__file__).resolve().parent / "names.txt"


class DataError(ValueError):
    """A data file or a document that cannot be used; the message is one line for the user."""


def load_docs(path) -> list[str]:
    """Every line of the file, stripped, with empty lines dropped (the reference's reading).
    A UTF-8 byte-order mark at the start is not a character of the first document."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"data path is not a file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read data file {path}: {error.strerror}") from None
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(f"data file holds a NUL byte (byte {nul}), not text: {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"data file is not UTF-8 text: {path} (byte {error.start})") from None
    text = text.removeprefix("\ufeff")
    docs = [line.strip() for line in text.strip().split("\n") if line.strip()]
    if not docs:
        raise DataError(f"data file has no documents (every line is empty): {path}")
    return docs


def shuffle_docs(docs, seed: int) -> tuple[list[str], random.Random]:
    """The reference program's first move: shuffle the documents with `random.Random(seed)`.
    Returns the shuffled copy and the generator, which goes on to draw the parameters."""
    rng = random.Random(seed)
    shuffled = list(docs)
    rng.shuffle(shuffled)
    return shuffled, rng


def default_data_path() -> Path:
    """The names file shipped inside the package (32,033 names): what every script reads
    when no --data is given."""
    return NAMES_FILE


class Tokenizer:
    """Characters to token ids and back; BOS is the last id."""

    def __init__(self, chars):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise DataError("the vocabulary repeats a character")
        self.BOS = len(self.chars)
        self.vocab_size = len(self.chars) + 1
        self._ids = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_docs(cls, docs) -> "Tokenizer":
        return cls(sorted(set("".join(docs))))

    def encode(self, doc: str) -> list[int]:
        """[BOS] + the ids of the document's characters + [BOS]."""
        unknown = sorted(set(doc) - set(self._ids))
        if unknown:
            raise DataError(f"document {doc!r} has character(s) outside the vocabulary: {''.join(unknown)!r}")
        return [self.BOS] + [self._ids[ch] for ch in doc] + [self.BOS]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if i != self.BOS)
