"""The documents a comparison trains on, and how a step picks its batch from them.

Built in: six names that between them use all 26 lowercase letters within their first seven
characters (the inputs of the default block_size of 8) and fill all 8 positions, so one step
sends a gradient to every row of `wte` and `wpe`.

A step trains on a batch of documents and its loss is the mean of the documents' losses,
the same sum on both sides; a batch of one document is exactly the reference program's step.
Step s takes documents s * k .. s * k + k - 1 (wrapping around), k = `per_step`.
"""
from __future__ import annotations

from dataclasses import dataclass

from microgpt_scalar.data import Corpus, Tokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz"  # the vocabulary of built-in and --doc documents (+ BOS)
BUILTIN_DOCS = ("jacqueline", "maxwell", "brooklyn", "fitzgerald", "josephine", "devon")


@dataclass(frozen=True)
class Documents:
    docs: tuple  # the documents, in the order the steps take them (a Corpus view for a data file)
    tokenizer: Tokenizer
    per_step: int  # documents in one step's batch

    def __post_init__(self) -> None:
        if not self.docs:
            raise ValueError("there are no documents to train on")
        if not 1 <= self.per_step <= len(self.docs):
            raise ValueError(f"per_step must be between 1 and {len(self.docs)}, got {self.per_step}")
        unknown = set(self.docs.chars if isinstance(self.docs, Corpus) else "".join(self.docs)) - \
            set(self.tokenizer.chars)
        if unknown:  # raise DataError naming the first document with a character outside the vocabulary
            self.tokenizer.encode(next(doc for doc in self.docs if unknown & set(doc)))

    def batch(self, step: int) -> list[list[int]]:
        """The token ids of the documents step `step` (0-based, counted from the run's start) trains on."""
        return [self.tokenizer.encode(doc) for doc in self.taken(step)]

    def taken(self, step: int) -> list[str]:
        """The documents step `step` trains on."""
        n = len(self.docs)
        return [self.docs[(step * self.per_step + j) % n] for j in range(self.per_step)]

    def used(self, first_step: int, steps: int) -> list[str]:
        """The documents of steps first_step .. first_step + steps - 1, in order; all of them
        once when every step takes them all (a data file is never read whole into the report)."""
        if self.per_step == len(self.docs):
            return list(self.docs)
        return [doc for step in range(first_step, first_step + steps) for doc in self.taken(step)]


def given_documents(docs, chars=ALPHABET) -> Documents:
    """Documents named on the command line (or the built-in ones): all of them in every step."""
    return Documents(tuple(docs), Tokenizer(chars), per_step=len(docs))


def file_documents(shuffled_docs, chars=None) -> Documents:
    """The lines of a data file as the reference program uses them, already shuffled
    (`shuffle_docs(docs, seed)`): one document per step, so the losses are the reference
    program's losses.

    The vocabulary is the file's characters, or `chars` (a checkpoint's vocabulary)."""
    tokenizer = Tokenizer(chars) if chars is not None else Tokenizer.from_docs(shuffled_docs)
    docs = shuffled_docs if isinstance(shuffled_docs, Corpus) else tuple(shuffled_docs)  # a Corpus is read as the steps go
    return Documents(docs, tokenizer, per_step=1)
