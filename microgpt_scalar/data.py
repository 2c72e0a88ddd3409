"""Documents and the character tokenizer.

A data file holds one document (a name) per line; lines may end in LF, CRLF or CR, which
the original program's open() (text mode: universal newlines) all reads as line ends. The
vocabulary is the sorted set of the documents' characters; character i is token i, and BOS, which begins and ends every
sequence, is one more token after them.
"""
from __future__ import annotations

import codecs
import random
from array import array
from itertools import accumulate, islice
from pathlib import Path

from .files import FileError, check_path_text, shown

NAMES_FILE = Path(__file__).resolve().parent / "names.txt"


class DataError(ValueError):
    """A data file or a document that cannot be used; the message is one line for the user."""


def load_docs(path) -> list[str]:
    """Every line of the file, stripped, with empty lines dropped (the reference's reading),
    as a list of strings: `Corpus.from_file` reads the same documents compactly."""
    return list(Corpus.from_file(path))


def shuffle_docs(docs, seed: int) -> tuple[list[str], random.Random]:
    """The reference program's first move: shuffle the documents with `random.Random(seed)`.
    Returns the shuffled copy (a shuffled view of a Corpus) and the generator, which goes
    on to draw the parameters."""
    rng = random.Random(seed)
    if isinstance(docs, Corpus):
        return docs.shuffled(rng), rng
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
        if isinstance(docs, Corpus):
            return cls(docs.chars)  # already the sorted set of its characters
        return cls(sorted(set("".join(docs))))

    def encode(self, doc: str) -> list[int]:
        """[BOS] + the ids of the document's characters + [BOS]."""
        unknown = sorted(set(doc) - set(self._ids))
        if unknown:
            raise DataError(f"document {doc!r} has character(s) outside the vocabulary: {''.join(unknown)!r}")
        return [self.BOS] + [self._ids[ch] for ch in doc] + [self.BOS]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids if i != self.BOS)


class Corpus:
    """A data file's documents held compactly: every document's token ids back to back in
    one array (a byte each while the vocabulary fits in one) and where each one starts.
    A names file takes about one byte per character plus 4 per document, against some 60
    bytes per document as a list of strings.

    It reads like the list of documents (len, indexing, iteration give strings), and
    `shuffled(rng)` is a view in the order `rng.shuffle` gives that list: random.shuffle's
    permutation depends on the length only, so shuffling the indices is shuffling the list.

        corpus = Corpus.from_file("names.txt")
        docs = corpus.shuffled(random.Random(42))          # docs[0], len(docs), corpus.chars
    """

    def __init__(self, chars, ids: array, offsets: array, order: array | None = None):
        self.chars = list(chars)  # the vocabulary, sorted; character i is token id i
        self.ids = ids  # every document's token ids, back to back
        self.offsets = offsets  # stored document i is ids[offsets[i]:offsets[i + 1]] ('I' or 'q')
        self.order = order  # document k of this view is stored document order[k] (None: stored order)

    @classmethod
    def from_docs(cls, docs) -> "Corpus":
        docs = list(docs)
        chars = sorted(set("".join(docs)))
        index = {ch: i for i, ch in enumerate(chars)}
        ids, offsets = array(_id_typecode(len(chars))), array("q", [0])
        for doc in docs:
            ids.extend(index[ch] for ch in doc)
            offsets.append(len(ids))
        return cls(chars, ids, offsets)

    @classmethod
    def from_file(cls, path, chunk_bytes: int = 1 << 20) -> "Corpus":
        """The documents load_docs reads (every line stripped, empty lines dropped), read a
        chunk at a time, so memory never holds the file as Python strings."""
        try:
            path = check_path_text(path, "--data")
            if not path.exists():
                raise DataError(f"data file not found: {shown(path)}")
        except (FileError, OSError) as error:
            raise DataError(str(error) if isinstance(error, FileError) else
                            f"cannot read data file {shown(path)}: {error.strerror}") from None
        if not path.is_file():
            raise DataError(f"data path is not a file: {shown(path)}")
        offsets = array(_index_typecode(path.stat().st_size), [0])  # 4 bytes a document below 2 GB
        codes, seen = array("B"), set()  # codes: code points while they fit a byte
        for text in _text_chunks(path, chunk_bytes):
            docs = [doc for doc in map(str.strip, text.split("\n")) if doc]
            if not docs:
                continue
            offsets.extend(islice(accumulate(map(len, docs), initial=offsets[-1]), 1, None))
            joined = "".join(docs)
            del docs
            seen.update(joined)
            if codes.typecode == "B" and max(joined) > "\xff":
                codes = array("I", codes)  # a character past Latin-1: one code point per 4 bytes
            if codes.typecode == "B":
                codes.frombytes(joined.encode("latin-1"))
            else:
                codes.extend(map(ord, joined))
        if len(offsets) == 1:
            raise DataError(f"data file has no documents (every line is empty): {shown(path)}")
        chars = sorted(seen)
        return cls(chars, _code_points_to_ids(codes, chars), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1 if self.order is None else len(self.order)

    def __getitem__(self, k):
        """Document k as a string; a slice is a view of those documents."""
        if isinstance(k, slice):
            return Corpus(self.chars, self.ids, self.offsets, self.document_order()[k])
        return "".join(self.chars[i] for i in self.token_ids(k))

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def token_ids(self, k: int) -> array:
        """The token ids of document k of this view (no BOS)."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"document {k} of {len(self)}")
        i = self.order[k] if self.order is not None else range(len(self))[k]
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def shuffled(self, rng: random.Random) -> "Corpus":
        """This view shuffled by `rng.shuffle`, drawing exactly what shuffling the list of
        its documents would draw."""
        order = self.order if self.order is not None else range(len(self))
        order = array(_index_typecode(len(self.offsets)), order)
        rng.shuffle(order)
        return Corpus(self.chars, self.ids, self.offsets, order)

    def document_order(self) -> array:
        """The stored index of each document of this view, in the view's order."""
        return self.order if self.order is not None else array(_index_typecode(len(self.offsets)), range(len(self)))


def _id_typecode(num_chars: int) -> str:
    return "B" if num_chars <= 1 << 8 else "H" if num_chars <= 1 << 16 else "I"


def _index_typecode(count: int) -> str:
    """4 bytes an index while the indices stay below 2 ** 31 (so torch may read them as int32)."""
    return "I" if count < 1 << 31 else "q"


def _text_chunks(path: Path, chunk_bytes: int):
    """The file's text in pieces that end at a line break (the last may not), decoded as
    UTF-8, with CR and CRLF line ends as LF (a CRLF cut in two between pieces gives an empty
    line, which the reading drops anyway); DataError names the byte offset of the first byte
    that is not UTF-8."""
    decoder, position, carry = codecs.getincrementaldecoder("utf-8")(), 0, ""
    try:
        with path.open("rb") as file:
            while True:
                raw = file.read(chunk_bytes)
                nul = raw.find(b"\0")
                if nul >= 0:
                    raise DataError(f"data file holds a NUL byte (byte {position + nul}), not text: {shown(path)}")
                pending = len(decoder.getstate()[0])  # bytes of a character the last piece cut in two
                try:
                    text = carry + decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as error:
                    raise DataError(f"data file is not UTF-8 text: {shown(path)} "
                                    f"(byte {position - pending + error.start})") from None
                if position == 0:
                    text = text.removeprefix("\ufeff")  # a byte-order mark is not a character of the first document
                text = text.replace("\r", "\n")
                position += len(raw)
                if not raw:
                    if text:
                        yield text
                    return
                cut = text.rfind("\n") + 1
                carry = text[cut:]
                if cut:
                    yield text[:cut]
    except OSError as error:
        raise DataError(f"cannot read data file {shown(path)}: {error.strerror}") from None


def _code_points_to_ids(codes: array, chars: list[str]) -> array:
    """Code points to token ids (the index in the sorted `chars`), in place where both fit a byte."""
    if codes.typecode == "B" and len(chars) <= 1 << 8:
        table = bytearray(256)
        for i, ch in enumerate(chars):
            table[ord(ch)] = i
        step = 1 << 22
        for start in range(0, len(codes), step):  # a piece at a time: no second copy of the whole file
            codes[start:start + step] = array("B", codes[start:start + step].tobytes().translate(table))
        return codes
    index = {ord(ch): i for i, ch in enumerate(chars)}
    return array(_id_typecode(len(chars)), (index[code] for code in codes))
