"""Documents and the character tokenizer.

A data file holds one document (a name) per line. The vocabulary is the sorted set of the
documents' characters; character i is token i, and BOS, which begins and ends every
sequence, is one more token after them.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/refs/heads/master/names.txt"


class DataError(ValueError):
    """A data file or a document that cannot be used; the message is one line for the user."""


def load_docs(path) -> list[str]:
    """Every line of the file, stripped, with empty lines dropped (the reference's reading)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if not path.is_file():
        raise DataError(f"data path is not a file: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"data file is not UTF-8 text: {path} (byte {error.start})") from None
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


def default_data_path(cache_dir=None) -> Path:
    """`input.txt` in the working directory if there is one, else the names file, downloaded
    once into a user cache."""
    local = Path("input.txt")
    if local.exists():
        return local
    cache_dir = Path(cache_dir) if cache_dir else _user_cache_dir()
    cached = cache_dir / "names.txt"
    if not cached.exists():
        _download(NAMES_URL, cached)
    return cached


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "microgpt-bridge"


def _download(url: str, target: Path) -> None:
    import http.client  # here, not at the top: they take longer to import than a training step
    import urllib.error
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            partial.write_bytes(response.read())
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"no --data given, no input.txt here, and the names file could not be downloaded "
            f"from {url} ({error}); pass --data FILE"
        ) from None
    os.replace(partial, target)  # atomic: a half-downloaded file never looks complete


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
