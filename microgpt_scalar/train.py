"""One training step, the training loop and sampling, on the scalar engine.

    model = GPT(config, rng); optimizer = Adam(model.parameters(), config)
    loss = train_step(model, optimizer, tokenizer.encode(doc), step)
"""
from __future__ import annotations

import dataclasses
import gc
import math
import random
from contextlib import contextmanager

from .checkpoint import Checkpoint, restore_adam
from .config import GPTConfig, num_params
from .data import Corpus, Tokenizer, shuffle_docs
from .engine import Value
from .fused import FusedGPT, FusedValue
from .model import GPT, softmax
from .optim import Adam, learning_rate_at


class NonFiniteLossError(ArithmeticError):
    """The loss or a gradient became inf or nan; the parameters that produced it are not worth saving."""


def forward_loss(model: GPT, tokens: list[int]):
    """The mean cross-entropy of predicting tokens[p + 1] from tokens[0 .. p], as a Value."""
    n = min(model.config.block_size, len(tokens) - 1)
    keys, values = model.empty_cache()
    losses = []
    for pos_id in range(n):
        token_id, target_id = tokens[pos_id], tokens[pos_id + 1]
        logits = model.forward(token_id, pos_id, keys, values)
        losses.append(model.loss(logits, target_id))
    return (1 / n) * sum(losses)


def batch_loss(model: GPT, tokens):
    """forward_loss of one document (a list of token ids), or the mean of the losses of a
    batch of documents (a list of such lists), written like the mean over positions."""
    if not tokens or not isinstance(tokens[0], list):
        return forward_loss(model, tokens)
    return (1 / len(tokens)) * sum(forward_loss(model, document) for document in tokens)


def train_step(model: GPT, optimizer: Adam, tokens, step: int) -> float:
    """Forward, backward and one Adam update for 0-based `step`; returns the loss.

    `tokens` is one document's token ids (the reference program's step), or a list of
    documents whose mean loss the step descends.
    """
    with graph_scope():
        try:
            loss = batch_loss(model, tokens)
        except (ValueError, OverflowError, ZeroDivisionError) as error:  # log(0), exp overflow
            raise NonFiniteLossError(f"loss is not finite at step {step + 1} ({error})") from error
        loss.backward()
        loss = loss.data  # drops the graph now, while the collector is still paused (see graph_scope)
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss is {loss} at step {step + 1}")
    if not all(math.isfinite(p.grad) for p in model.parameters()):  # a finite loss can still overflow backward
        raise NonFiniteLossError(f"a gradient is not finite at step {step + 1} (loss {loss})")
    optimizer.step(learning_rate_at(step, model.config), step)
    return loss


@contextmanager
def graph_scope():
    """Pause the cyclic garbage collector while a step's graph is built and walked.

    A step makes tens of thousands of nodes that stay alive until its end, and the collector
    would scan them again and again for cycles they do not have; reference counting frees
    the whole graph when the step's last reference to it goes.

    Drop the graph before leaving the scope: the collector counts every node made while it
    was paused, and its first allocation after resuming would otherwise start a collection
    that scans the whole still-living graph (about a third of a per-op step's time).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sample(model: GPT, tokenizer: Tokenizer, rng: random.Random, temperature: float = 0.5) -> str:
    """Draw one document: start from BOS, stop at BOS or after block_size tokens."""
    keys, values = model.empty_cache()
    token_id, out = tokenizer.BOS, []
    with graph_scope():
        for pos_id in range(model.config.block_size):
            logits = model.forward(token_id, pos_id, keys, values)
            probs = softmax([logit / temperature for logit in logits])
            token_id = rng.choices(range(tokenizer.vocab_size), weights=[p.data for p in probs])[0]
            if token_id == tokenizer.BOS:
                break
            out.append(token_id)
        del keys, values, logits, probs  # drop the graph while the collector is still paused
    return tokenizer.decode(out)


def model_class(value_cls):
    """The model to build on `value_cls`: FusedGPT, whose pieces make the fused engine's
    nodes, on FusedValue; GPT on any other engine."""
    return FusedGPT if issubclass(value_cls, FusedValue) else GPT


def start_run(docs, config: GPTConfig, seed: int, value_cls=Value):
    """The reference program's start: one `random.Random(seed)` shuffles the documents (a
    list of strings or a Corpus), then draws the parameters; it is returned to go on drawing
    the samples.

    Returns (docs, tokenizer, model, optimizer, rng); the config's vocab_size is the documents'.
    """
    docs, rng = shuffle_docs(docs, seed)
    tokenizer = Tokenizer.from_docs(docs)
    config = dataclasses.replace(config, vocab_size=tokenizer.vocab_size)
    model = model_class(value_cls)(config, rng, value_cls)
    return docs, tokenizer, model, Adam(model.parameters(), config), rng


def resume_run(docs, checkpoint: Checkpoint, seed: int, value_cls=Value):
    """Like `start_run`, with the parameters and Adam state of a checkpoint.

    The random number generator is brought to where it was after the initial draws, so a
    resumed run samples exactly what an uninterrupted one would.
    """
    docs, rng = shuffle_docs(docs, seed)
    tokenizer = Tokenizer(checkpoint.chars)
    unknown = set(docs.chars if isinstance(docs, Corpus) else "".join(docs)) - set(tokenizer.chars)
    if unknown:  # raise DataError naming the first document with a character the checkpoint never saw
        tokenizer.encode(next(doc for doc in docs if unknown & set(doc)))
    config = checkpoint.config
    for _ in range(num_params(config)):
        rng.gauss(0, 1)  # each draw consumes the generator as the initialisation did
    model = model_class(value_cls)(config, value_cls=value_cls, params=checkpoint.params)
    optimizer = Adam(model.parameters(), config)
    restore_adam(optimizer, checkpoint)
    return docs, tokenizer, model, optimizer, rng
