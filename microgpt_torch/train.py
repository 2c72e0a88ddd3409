"""Training and sampling on the torch model: the faithful one-document step, batched
training (padded mini-batches, a held-out split, data-parallel ready) and sampling.

    docs, tokenizer, config, params, rng = reference_start(load_docs(path), seed=42)
    model = FusedGPT.from_scalar_params(config, params)   # the scalar engine's initial weights
    optimizer = make_optimizer(model, config)
    loss = train_step(model, optimizer, tokenizer.encode(docs[0]), step=0)
    name = sample(model, tokenizer, rng)                  # the scalar engine's draws
"""
from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist

from microgpt_scalar.config import get_config
from microgpt_scalar.data import Tokenizer, shuffle_docs
from microgpt_scalar.model import init_params
from microgpt_scalar.train import NonFiniteLossError

from .device import any_process, threads_for_rows
from .model import GPT, IGNORE_INDEX, softmax
from .optim import set_learning_rate

__all__ = [
    "NonFiniteLossError", "reference_start", "forward_loss", "train_step", "check_finite_params", "faithful_steps",
    "split_docs", "make_batch", "PackedDocuments", "batch_order", "forward_backward", "loss_value",
    "batched_train_step", "batched_steps", "evaluate",
    "sample", "generate",
]


def reference_start(docs: list[str], seed: int, preset: str = "microgpt", **overrides):
    """The reference program's start: random.Random(seed) shuffles the documents, then draws
    the initial weights in the scalar order. Returns (docs, tokenizer, config, params, rng),
    with params as name -> rows of floats and rng where sampling continues it."""
    docs, rng = shuffle_docs(docs, seed)
    tokenizer = Tokenizer.from_docs(docs)
    config = get_config(preset, vocab_size=tokenizer.vocab_size, **overrides)
    params = init_params(config, rng, value_cls=float)  # the same gauss draws, as plain floats
    return docs, tokenizer, config, params, rng


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def forward_loss(model: GPT, tokens: list[int]) -> torch.Tensor:
    """The mean cross-entropy of predicting tokens[p + 1] from tokens[0 .. p], a 0-d tensor."""
    n = min(model.config.block_size, len(tokens) - 1)
    device = model_device(model)
    idx = torch.tensor([tokens[:n]], device=device)  # (1, n)
    targets = torch.tensor([tokens[1:n + 1]], device=device)  # (1, n)
    _, loss = model(idx, targets)
    return loss


def batch_loss(model: GPT, tokens) -> torch.Tensor:
    """forward_loss of one document (a list of token ids), or the mean of the losses of a
    batch of documents (a list of such lists), as the scalar engine takes it."""
    if not tokens or not isinstance(tokens[0], list):
        return forward_loss(model, tokens)
    return (1 / len(tokens)) * sum(forward_loss(model, document) for document in tokens)


def train_step(model: GPT, optimizer, tokens, step: int) -> float:
    """Forward, backward and one Adam update for 0-based `step`; returns the loss.

    `tokens` is one document's token ids (the reference program's step), or a list of
    documents whose mean loss the step descends. The training scripts train a FusedGPT
    (microgpt_torch/fast.py): equal to the readable GPT within float64 rounding
    (tests/test_torch_fast.py) and, at some 150 operations on tiny tensors a step, 30% quicker
    forward and backward.
    The gradients stay on the parameters until the next step.
    """
    set_learning_rate(optimizer, step, getattr(model, "module", model).config)
    optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(model, tokens)
    loss.backward()
    loss_value = loss.item()
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"loss is {loss_value} at step {step + 1}")
    optimizer.step()
    return loss_value


def check_finite_params(model: torch.nn.Module, step: int) -> None:
    """Raise NonFiniteLossError if an update left a weight at inf or nan (not worth saving).

    Under data parallelism every process must call it: if any process finds such a weight,
    every process raises, so none is left waiting for the others in a collective.
    """
    bad = next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)
    if any_process(bad is not None, model_device(model)):
        where = f"parameter {bad}" if bad is not None else "a parameter in another process"
        raise NonFiniteLossError(f"{where} is not finite after step {step}")


def faithful_steps(model: GPT, optimizer, docs: list[str], tokenizer: Tokenizer, start_step: int = 0):
    """Yield (0-based step, loss) for the reference loop: document step % len(docs) at step."""
    for step in range(start_step, model.config.num_steps):
        yield step, train_step(model, optimizer, tokenizer.encode(docs[step % len(docs)]), step)


def split_docs(docs: list[str], val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train, validation): the last val_fraction of the (already shuffled) documents is held out."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = max(1, round(len(docs) * val_fraction))
    if n_val >= len(docs):
        raise ValueError(f"{len(docs)} document(s) cannot be split into training and validation")
    return docs[:-n_val], docs[-n_val:]


def make_batch(token_lists: list[list[int]], block_size: int, device=None):
    """(idx, targets), each (B, T): document b's first n_b positions, then padding.

    Padded inputs are token 0 (causality keeps them from touching earlier positions) and
    padded targets are IGNORE_INDEX, so they add nothing to the loss. T is the longest n_b.
    """
    idx, targets, _ = PackedDocuments.of(token_lists, block_size, device).batch(range(len(token_lists)))
    return idx, targets


@dataclass(frozen=True)
class PackedDocuments:
    """Documents as token ids back to back, held on the training device, so that a batch is
    gathered there by a few tensor operations instead of a Python loop over its documents
    (at 2,048 documents a step, measured on one CPU thread, that loop took 21 ms and the
    training step 34 ms), and nothing but the batch's row numbers crosses from the host.

    Document b is [BOS] + ids[starts[b] : starts[b] + its characters] + [BOS]; a batch pads
    it as make_batch does. The targets per document (n_b) stay on the host as well, so the
    host knows each batch's width and target count without waiting for the device.
    """

    ids: torch.Tensor  # (total characters,) every document's ids, no BOS, on the device
    starts: torch.Tensor  # (N,) where document b begins in ids, on the device
    chars: torch.Tensor  # (N,) document b's characters, at most block_size, on the device
    num_targets: torch.Tensor  # (N,) n_b = min(block_size, characters + 1), on the CPU
    bos: int
    block_size: int

    @classmethod
    def of(cls, token_lists: list[list[int]], block_size: int, device=None) -> "PackedDocuments":
        """From token lists made by Tokenizer.encode ([BOS] + ids + [BOS])."""
        bos = token_lists[0][0] if token_lists else 0
        if any(len(tokens) < 2 or tokens[0] != bos or tokens[-1] != bos for tokens in token_lists):
            raise ValueError("every token list must begin and end with the same BOS token")
        lengths = [len(tokens) - 2 for tokens in token_lists]
        ids = torch.tensor([t for tokens in token_lists for t in tokens[1:-1]], dtype=torch.long)
        starts = torch.tensor([0] + lengths, dtype=torch.long).cumsum(0)[:-1]
        return cls._packed(ids, starts, torch.tensor(lengths, dtype=torch.long), bos, block_size, device)

    @classmethod
    def of_corpus(cls, corpus, block_size: int, device=None) -> "PackedDocuments":
        """The documents of a Corpus view, in its order; the token ids are used in place
        on the CPU (no copy) and copied once to any other device."""
        offsets, order = _tensor_of(corpus.offsets), _tensor_of(corpus.document_order())
        starts = torch.empty(len(order), dtype=_index_dtype(len(corpus.ids)))
        chars = torch.empty(len(order), dtype=_count_dtype(block_size))
        for first in range(0, len(order), 1 << 16):  # a piece at a time: temporaries of a few MB
            piece = order[first:first + (1 << 16)].long()
            starts[first:first + len(piece)] = offsets[piece]
            chars[first:first + len(piece)] = (offsets[piece + 1] - offsets[piece]).clamp_(max=block_size)
        return cls._packed(_tensor_of(corpus.ids), starts, chars, len(corpus.chars), block_size, device)

    @classmethod
    def _packed(cls, ids, starts, lengths, bos: int, block_size: int, device) -> "PackedDocuments":
        chars = lengths.clamp(max=block_size).to(_count_dtype(block_size))
        num_targets = (chars + 1).clamp_(max=block_size)
        return cls(ids.to(device), starts.to(device), chars.to(device), num_targets, bos, block_size)

    def __getitem__(self, rows: slice) -> "PackedDocuments":
        """Documents `rows` (a slice), sharing this one's memory: e.g. packed[:-n_val]."""
        if not isinstance(rows, slice):
            raise TypeError("PackedDocuments takes a slice; batch() gathers single documents")
        return PackedDocuments(self.ids, self.starts[rows], self.chars[rows], self.num_targets[rows], self.bos,
                               self.block_size)

    def __len__(self) -> int:
        return len(self.num_targets)

    def batch(self, rows, width: int | None = None):
        """(idx, targets, num_targets) of documents `rows` (a host sequence or tensor): (B, T)
        tensors on the device, T = the longest n_b of them (or `width`, up to block_size),
        padded as make_batch pads; num_targets = sum of n_b, a Python int."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        num_targets = self.num_targets[rows].long()  # (B,), on the host
        T = width or int(num_targets.max())
        device = self.ids.device
        rows = rows.to(device, non_blocking=True)
        pos = torch.arange(T + 1, device=device)  # (T + 1,) sequence positions
        chars = self.chars[rows].long().unsqueeze(1)  # (B, 1)
        where = (self.starts[rows].long().unsqueeze(1) + pos - 1).clamp_(0, max(len(self.ids) - 1, 0))
        tokens = self.ids[where].long() if len(self.ids) else torch.zeros_like(where)  # (B, T + 1)
        is_char = (pos >= 1) & (pos <= chars)  # position 0 and the one after the last character: BOS
        tokens = torch.where(is_char, tokens, self.bos)
        valid = pos[:T] < (chars + 1).clamp(max=self.block_size)  # (B, T): p < n_b
        idx = tokens[:, :T].masked_fill(~valid, 0)
        targets = tokens[:, 1:].masked_fill(~valid, IGNORE_INDEX)
        return idx, targets, int(num_targets.sum())


def _tensor_of(values) -> torch.Tensor:
    """A tensor over an array's memory (no copy) where torch reads its type as is."""
    dtypes = {"B": torch.uint8, "i": torch.int32, "I": torch.int32, "q": torch.int64, "l": torch.int64}
    if values.typecode in dtypes and values.itemsize == dtypes[values.typecode].itemsize and len(values):
        # "I" holds indices below 2 ** 31 here (at most the number of characters, or documents, of a file)
        return torch.frombuffer(values, dtype=dtypes[values.typecode])
    return torch.tensor(list(values), dtype=torch.long)


def _index_dtype(size: int) -> torch.dtype:
    return torch.int32 if size < 1 << 31 else torch.int64


def _count_dtype(block_size: int) -> torch.dtype:
    return torch.uint8 if block_size < 255 else torch.int32


def batch_order(num_docs: int, batch_size: int, generator: torch.Generator, lengths: torch.Tensor | None = None):
    """Endless mini-batches of document indices: each epoch a fresh shuffle, cut in batches
    (a short last batch is dropped so every step sees batch_size documents).

    With `lengths` (n_b of each document), each epoch's shuffle is sorted by length before
    the cut and the batches are then shuffled: documents of one length train together, so a
    batch holds little padding (on names.txt, batches of 2,048 documents: 14% of the positions
    are padding at block_size 8 and 51% at 16; grouped by length, 3% and 9%).

    A batch larger than the documents draws each of its rows at random, with replacement.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > num_docs:
        if lengths is not None:
            raise ValueError(f"grouping by length needs a batch size of at most the {num_docs} training documents")
        while True:
            yield torch.randint(num_docs, (batch_size,), generator=generator).tolist()
    while True:
        # int32 draws the permutation int64 draws, in half the memory
        order = torch.randperm(num_docs, generator=generator, dtype=_index_dtype(num_docs))
        order = order[:num_docs // batch_size * batch_size]
        if lengths is not None:  # the documents left out above are random ones, not the longest
            order = order[torch.argsort(lengths[order], stable=True)]  # by length, shuffled within a length
        starts = range(0, len(order), batch_size)
        if lengths is not None:
            starts = [starts[i] for i in torch.randperm(len(starts), generator=generator).tolist()]
        for start in starts:  # one batch at a time: an epoch of a large file as Python ints would not fit
            yield order[start:start + batch_size].tolist()


def config_of(model):
    """The GPT's config through a DistributedDataParallel (.module) or compiled (._orig_mod) wrapper."""
    while not hasattr(model, "config"):
        model = getattr(model, "module", None) or model._orig_mod
    return model.config


def forward_backward(model, idx, targets, num_targets: int, world_size: int = 1, autocast_dtype=None,
                     shared=None) -> torch.Tensor:
    """Gradients of this process's rows of a global batch; returns the global mean loss as a
    0-d float64 tensor on the device, without waiting for it.

    `num_targets` counts the valid targets of the whole global batch. Each process
    backpropagates its loss sum * world_size / num_targets; data parallelism averages the
    gradients over world_size processes, which leaves the gradient of the global mean:
    DistributedDataParallel does it as the backward pass runs, or, given `shared` (a
    SharedMemoryGroup of processes on one machine's CPU), the group after it, with the loss.
    `autocast_dtype` (e.g. torch.bfloat16) runs the forward under autocast.
    """
    autocast = torch.autocast(idx.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with autocast:
        _, loss = model(idx, targets)
    loss_sum = loss * (targets != IGNORE_INDEX).sum()
    (loss_sum * (world_size / num_targets)).backward()
    total = loss_sum.detach().double()
    if shared is not None:
        for p in model.parameters():
            if p.grad is None:  # unused by this batch: every process must still send one
                p.grad = torch.zeros_like(p)
        gradients = [p.grad for p in model.parameters()]
        shared.sum_(gradients + [total])  # one meeting: every process's gradients and loss added up
        for gradient in gradients:
            gradient.div_(world_size)  # the mean, as DistributedDataParallel leaves it
    elif world_size > 1:
        dist.all_reduce(total)  # every process sees the same loss, so all stop together
    return total / num_targets


def loss_value(loss, step: int) -> float:
    """The loss of 0-based `step` as a float (reading a tensor back from the device);
    NonFiniteLossError if it is inf or nan."""
    value = float(loss)
    if not math.isfinite(value):
        raise NonFiniteLossError(f"loss is {value} at step {step + 1}")
    return value


def batched_train_step(model, optimizer, idx, targets, num_targets: int, step: int, world_size: int = 1,
                       autocast_dtype=None, shared=None, check_finite: bool = True):
    """One Adam update, for 0-based `step`, on this process's rows of a global batch, on the
    threads that pay for its rows; returns the global mean loss, checked finite before the
    weights change (see forward_backward for the arguments). Without `check_finite`, nothing
    waits for the device: the loss comes back as a 0-d tensor, unread."""
    with threads_for_rows(len(idx), idx.device):
        optimizer.zero_grad(set_to_none=True)
        loss = forward_backward(model, idx, targets, num_targets, world_size, autocast_dtype, shared)
        if check_finite:
            loss = loss_value(loss, step)
        set_learning_rate(optimizer, step, config_of(model))
        optimizer.step()
    return loss


def batched_steps(model, optimizer, train, batch_size: int, generator: torch.Generator, start_step: int = 0,
                  rank: int = 0, world_size: int = 1, autocast_dtype=None, group_by_length: bool = False,
                  check_each_step: bool = True, fixed_width: bool = False, shared=None):
    """Yield (0-based step, global mean loss) for steps start_step .. num_steps - 1.

    `train` is a PackedDocuments (on the model's device) or a list of token lists. Every
    process draws the same global batches from `generator` (seeded alike everywhere, on the
    CPU, so every device sees the same batches) and trains on its rows rank,
    rank + world_size, ...; `model` may be wrapped in DistributedDataParallel or compiled, or
    its gradients summed by `shared` (see forward_backward).
    `group_by_length` batches documents of one length together (see batch_order).

    With `check_each_step` every loss is read back and checked finite before its update (a
    float is yielded); without, nothing waits for the device: the loss is yielded as a 0-d
    tensor, for the caller to read (loss_value) every so often. `fixed_width` pads every
    batch to block_size, so every step has the same shapes (as a replayed CUDA graph needs).
    """
    config = config_of(model)
    if not isinstance(train, PackedDocuments):
        train = PackedDocuments.of(train, config.block_size, model_device(model))
    order = batch_order(len(train), batch_size, generator, train.num_targets if group_by_length else None)
    for _ in range(start_step):
        next(order)  # a resumed run sees the batches an uninterrupted one would
    width = config.block_size if fixed_width else None
    for step in range(start_step, config.num_steps):
        idx, targets, num_targets = train.batch(next(order), width)
        idx, targets = idx[rank::world_size], targets[rank::world_size]
        yield step, batched_train_step(model, optimizer, idx, targets, num_targets, step, world_size,
                                       autocast_dtype, shared, check_finite=check_each_step)


@torch.no_grad()
def evaluate(model: GPT, docs, batch_size: int = 256) -> float:
    """The mean loss per target over all of `docs` (a PackedDocuments or token lists, e.g.
    the validation documents)."""
    if not isinstance(docs, PackedDocuments):
        docs = PackedDocuments.of(docs, model.config.block_size, model_device(model))
    total, count = torch.zeros((), dtype=torch.float64, device=docs.ids.device), 0
    for start in range(0, len(docs), batch_size):
        idx, targets, n = docs.batch(range(start, min(start + batch_size, len(docs))))
        _, loss = model(idx, targets)
        total, count = total + loss.double() * n, count + n
    return float(total) / count


@torch.no_grad()
def sample(model: GPT, tokenizer: Tokenizer, rng: random.Random, temperature: float = 0.5) -> str:
    """Draw one document exactly as the scalar engine does: the same float64 probabilities
    and the same `rng.choices` call, so the same weights and rng give the same name."""
    device, token_ids, out = model_device(model), [tokenizer.BOS], []
    for pos_id in range(model.config.block_size):
        logits, _ = model(torch.tensor([token_ids], device=device))  # (1, pos_id + 1, vocab_size)
        # The scalar engine divides a Value by multiplying with temperature ** -1.
        probs = softmax(logits[0, -1].double() * temperature**-1)  # (vocab_size,)
        token_id = rng.choices(range(tokenizer.vocab_size), weights=probs.tolist())[0]
        if token_id == tokenizer.BOS:
            break
        out.append(token_id)
        token_ids.append(token_id)
    return tokenizer.decode(out)


def generate(model: GPT, tokenizer: Tokenizer, generator: torch.Generator, temperature: float = 0.5,
             num_samples: int = 20) -> list[str]:
    """Draw `num_samples` documents at once with torch's sampler, driven by `generator`."""
    if tokenizer.BOS != model.config.vocab_size - 1:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, the model {model.config.vocab_size}")
    start = torch.full((num_samples, 1), tokenizer.BOS, dtype=torch.long, device=model_device(model))
    idx = model.generate(start, temperature=temperature, generator=generator)  # (num_samples, T)
    names = []
    for row in idx[:, 1:].tolist():
        end = row.index(tokenizer.BOS) if tokenizer.BOS in row else len(row)
        names.append(tokenizer.decode(row[:end]))
    return names
