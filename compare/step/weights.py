"""Where a comparison starts: parameters, Adam state and step count, as a scalar `Checkpoint`
(microgpt_torch.checkpoint carries it to a torch state_dict and optimizer and back).

    docs, rng = shuffle_docs(docs, seed=42)                                 # the reference program's start
    weights = load_weights("reference", config, chars, seed=42, rng=rng)    # microgpt's own draw
    weights = load_weights("dense", config, chars, seed=42)                 # no tensor is zero
    weights = load_weights("run.pt", config)                                # either engine's checkpoint
    model, optimizer = restore(from_scalar_checkpoint(weights))             # the same, in torch

"reference" zeroes attn_wo and mlp_fc2 under the microgpt preset, which makes the gradients
of attn_wq/wk/wv and mlp_fc1 zero at the first step in any engine, correct or not; "dense"
draws every matrix with init_std, so every gradient a step can reach is non-zero.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from microgpt_scalar.checkpoint import Checkpoint, CheckpointError
from microgpt_scalar.config import GPTConfig
from microgpt_scalar.model import init_params

WEIGHT_CHOICES = ("reference", "dense")  # anything else is a checkpoint path


def load_weights(spec: str, config: GPTConfig, chars=None, seed: int = 42,
                 rng: random.Random | None = None) -> Checkpoint:
    """`spec` is "reference", "dense" or the path of a checkpoint of either engine; "reference"
    needs `rng`, the generator `shuffle_docs(docs, seed)` returned for the run's documents.

    A checkpoint brings its own config (which must be of `config.preset`) and vocabulary.
    Raises CheckpointError for a checkpoint that cannot be read or does not fit.
    """
    if spec == "reference":
        return reference_weights(config, chars, seed, rng)
    if spec == "dense":
        return dense_weights(config, chars, seed)
    return checkpoint_weights(spec, config.preset)


def reference_weights(config: GPTConfig, chars, seed: int, rng: random.Random) -> Checkpoint:
    """The parameters the reference program draws for `seed`: it shuffles the documents with
    random.Random(seed) first (`rng` is that generator after the shuffle), then fills every
    matrix from gauss(0, std). Consumes `rng`."""
    if rng is None:
        raise ValueError("reference weights continue the generator that shuffled the documents; none was given")
    return _drawn(config, chars, rng, seed)


def dense_weights(config: GPTConfig, chars, seed: int) -> Checkpoint:
    """Every matrix from gauss(0, init_std), attn_wo and mlp_fc2 included, so none is zero."""
    weights = _drawn(dataclasses.replace(config, proj_init_std=config.init_std), chars, random.Random(seed), seed)
    weights.config = dataclasses.replace(weights.config, proj_init_std=config.proj_init_std)  # only the draw differs
    return weights


def _drawn(config: GPTConfig, chars, rng: random.Random, seed: int) -> Checkpoint:
    config = dataclasses.replace(config, vocab_size=len(chars) + 1)
    params = init_params(config, rng, value_cls=float)  # the same gauss draws, as plain floats
    return Checkpoint(config, list(chars), params, adam=None, step=0, seed=seed)


def checkpoint_weights(path, preset: str) -> Checkpoint:
    """A JSON checkpoint of the scalar engine or a torch checkpoint, as a scalar Checkpoint."""
    if not Path(path).is_file():
        raise CheckpointError(f"--weights must be {' or '.join(WEIGHT_CHOICES)} or a checkpoint file; "
                              f"there is no file {path}")
    from microgpt_torch.checkpoint import load_any_checkpoint, to_scalar_checkpoint  # torch: a .pt may be given

    return to_scalar_checkpoint(load_any_checkpoint(path, preset))
