"""Training and sampling on the torch model: the faithful one-document step, batched
training (padded mini-batches, a held-out split, data-parallel ready) and sampling.

    docs, tokenizer, config, params, rng = reference_start(load_docs(path), seed=42)
    model = GPT.from_scalar_params(config, params, fused=True)  # the scalar engine's initial weights
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

from .model import GPT, IGNORE_INDEX, softmax
from .optim import set_learning_rate

__all__ = [
    "NonFiniteLossError", "reference_start", "forward_loss", "train_step", "check_finite_params", "faithful_steps",
    "split_docs", "make_batch", "PackedDocuments", "batch_order", "batched_train_step", "batched_steps", "evaluate",
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
    documents whose mean loss the step descends. The training scripts build the model with
    fused=True: equal to the readable path within float64 rounding (tests/test_torch_model.py)
    and, at some 150 operations on tiny tensors a step, 30% quicker forward and backward.
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
    """Raise NonFiniteLossError if an update left a weight at inf or nan (not worth saving)."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise NonFiniteLossError(f"parameter {name} is not finite after step {step}")


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
    idx, targets, _ = PackedDocuments.of(token_lists, block_size).batch(range(len(token_lists)), device)
    return idx, targets


@dataclass(frozen=True)
class PackedDocuments:
    """Documents tokenised and padded once, so that a batch is an index into three tensors
    instead of a Python loop over its documents (at 2,048 documents a step, measured on one
    CPU thread, that loop took 21 ms and the training step 34 ms). Row b is document b,
    padded to block_size as make_batch pads."""

    idx: torch.Tensor  # (N, block_size) inputs, token 0 after the document's n_b positions
    targets: torch.Tensor  # (N, block_size) next tokens, IGNORE_INDEX after n_b
    lengths: torch.Tensor  # (N,) n_b = min(block_size, len(tokens) - 1), the document's targets

    @classmethod
    def of(cls, token_lists: list[list[int]], block_size: int) -> "PackedDocuments":
        lengths = [min(block_size, len(tokens) - 1) for tokens in token_lists]
        idx = [tokens[:n] + [0] * (block_size - n) for tokens, n in zip(token_lists, lengths)]
        targets = [tokens[1:n + 1] + [IGNORE_INDEX] * (block_size - n) for tokens, n in zip(token_lists, lengths)]
        shape = (len(token_lists), block_size)
        return cls(torch.tensor(idx, dtype=torch.long).view(shape), torch.tensor(targets, dtype=torch.long).view(shape),
                   torch.tensor(lengths, dtype=torch.long))

    def batch(self, rows, device=None):
        """(idx, targets, num_targets) of documents `rows`: (B, T) tensors cut to the
        longest of them, T = max n_b, as make_batch pads; num_targets = sum of n_b."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        lengths = self.lengths[rows]  # (B,)
        width = int(lengths.max())
        idx, targets = self.idx[rows, :width], self.targets[rows, :width]  # (B, T), gathered copies
        return idx.to(device), targets.to(device), int(lengths.sum())


def batch_order(num_docs: int, batch_size: int, generator: torch.Generator, lengths: torch.Tensor | None = None):
    """Endless mini-batches of document indices: each epoch a fresh shuffle, cut in batches
    (a short last batch is dropped so every step sees batch_size documents).

    With `lengths` (n_b of each document), each epoch's shuffle is sorted by length before
    the cut and the batches are then shuffled: documents of one length train together, so a
    batch holds little padding (on names.txt, batches of 2,048 documents: 14% of the positions
    are padding at block_size 8 and 51% at 16; grouped by length, 3% and 9%).
    """
    if not 1 <= batch_size <= num_docs:
        raise ValueError(f"batch size must be between 1 and the {num_docs} training documents, got {batch_size}")
    while True:
        order = torch.randperm(num_docs, generator=generator)[:num_docs // batch_size * batch_size]
        if lengths is not None:  # the documents left out above are random ones, not the longest
            order = order[torch.argsort(lengths[order], stable=True)]  # by length, shuffled within a length
        batches = [order[start:start + batch_size].tolist() for start in range(0, len(order), batch_size)]
        if lengths is not None:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        yield from batches


def batched_train_step(model, optimizer, idx, targets, num_targets: int, step: int, world_size: int = 1,
                       autocast_dtype=None) -> float:
    """One Adam update on this process's rows of a global batch; returns the global mean loss.

    `num_targets` counts the valid targets of the whole global batch. Each process
    backpropagates its loss sum * world_size / num_targets; data parallelism averages the
    gradients over world_size processes, which leaves the gradient of the global mean.
    `autocast_dtype` (e.g. torch.bfloat16) runs the forward under autocast.
    """
    set_learning_rate(optimizer, step, getattr(model, "module", model).config)
    optimizer.zero_grad(set_to_none=True)
    autocast = torch.autocast(idx.device.type, dtype=autocast_dtype) if autocast_dtype else contextlib.nullcontext()
    with autocast:
        _, loss = model(idx, targets)
    loss_sum = loss * (targets != IGNORE_INDEX).sum()
    (loss_sum * (world_size / num_targets)).backward()
    total = loss_sum.detach().double()
    if world_size > 1:
        dist.all_reduce(total)  # every process sees the same loss, so all stop together
    loss_value = total.item() / num_targets
    if not math.isfinite(loss_value):
        raise NonFiniteLossError(f"loss is {loss_value} at step {step + 1}")
    optimizer.step()
    return loss_value


def batched_steps(model, optimizer, train_tokens: list[list[int]], batch_size: int,
                  generator: torch.Generator, start_step: int = 0, rank: int = 0, world_size: int = 1,
                  autocast_dtype=None, group_by_length: bool = False):
    """Yield (0-based step, global mean loss) for steps start_step .. num_steps - 1.

    Every process draws the same global batches from `generator` (seeded alike everywhere)
    and trains on its rows rank, rank + world_size, ...; `model` may be wrapped in
    DistributedDataParallel (which keeps the GPT as .module) or compiled.
    `group_by_length` batches documents of one length together (see batch_order).
    """
    config = getattr(model, "module", model).config
    device, packed = model_device(model), PackedDocuments.of(train_tokens, config.block_size)
    order = batch_order(len(train_tokens), batch_size, generator, packed.lengths if group_by_length else None)
    for _ in range(start_step):
        next(order)  # a resumed run sees the batches an uninterrupted one would
    for step in range(start_step, config.num_steps):
        idx, targets, num_targets = packed.batch(next(order), device)
        yield step, batched_train_step(model, optimizer, idx[rank::world_size], targets[rank::world_size],
                                       num_targets, step, world_size, autocast_dtype)


@torch.no_grad()
def evaluate(model: GPT, token_lists: list[list[int]], batch_size: int = 256) -> float:
    """The mean loss per target over all of `token_lists` (e.g. the validation documents)."""
    device, total, count = model_device(model), 0.0, 0
    packed = PackedDocuments.of(token_lists, model.config.block_size)
    for start in range(0, len(token_lists), batch_size):
        idx, targets, n = packed.batch(range(start, min(start + batch_size, len(token_lists))), device)
        _, loss = model(idx, targets)
        total, count = total + loss.item() * n, count + n
    return total / count


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
