"""Checkpoints as JSON: config, vocabulary, parameters by name, Adam state and step.

    {"format": "microgpt-checkpoint", "version": 1,
     "config": {...GPTConfig fields...}, "chars": ["a", ...],
     "params": {"wte": [[...], ...], ...},          # [n_out][n_in] per name
     "adam": {"m": {name: rows}, "v": {name: rows}} or null,
     "step": 500}                                   # steps already taken

The file is written to a temporary name and renamed over the target, so a crash never
leaves a half-written checkpoint in place of a good one. The torch package converts its
own checkpoints to and from this one (`microgpt_torch.checkpoint`).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import GPTConfig, param_shapes

FORMAT = "microgpt-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message is one line."""


@dataclass
class Checkpoint:
    """A checkpoint's contents as plain Python numbers, engine-free."""

    config: GPTConfig
    chars: list  # the tokenizer's characters; BOS is len(chars)
    params: dict  # name -> [n_out][n_in] list of floats
    adam: dict | None = None  # {"m": {name: rows}, "v": {name: rows}}
    step: int = 0  # training steps already taken
    seed: int | None = None  # the seed of the run: it fixes the document order and the samples


def save_checkpoint(path, checkpoint: Checkpoint) -> None:
    validate(checkpoint)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": checkpoint.config.to_dict(),
        "chars": checkpoint.chars,
        "params": checkpoint.params,
        "adam": checkpoint.adam,
        "step": checkpoint.step,
        "seed": checkpoint.seed,
    }
    write_atomically(path, json.dumps(payload).encode("utf-8"))


def load_checkpoint(path, preset: str | None = None) -> Checkpoint:
    """Read and check a checkpoint; with `preset`, also require that it was made from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint is not valid JSON: {path} ({error})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a microgpt checkpoint: {path}")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {payload.get('version')!r} is not {VERSION}: {path}")
    try:
        config = GPTConfig.from_dict(payload["config"])
        checkpoint = Checkpoint(
            config, payload["chars"], payload["params"], payload.get("adam"), payload["step"], payload.get("seed")
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None
    try:
        validate(checkpoint)
    except (TypeError, AttributeError, OverflowError) as error:  # e.g. a number where rows belong
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None
    if preset is not None and config.preset != preset:
        raise CheckpointError(f"checkpoint {path} was made with preset {config.preset!r}, not {preset!r}")
    return checkpoint


def validate(checkpoint: Checkpoint) -> None:
    """Raise CheckpointError unless every tensor has the shape its config asks for."""
    config = checkpoint.config
    chars = checkpoint.chars
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars) \
            or len(set(chars)) != len(chars):
        raise CheckpointError("checkpoint chars must be a list of distinct single characters")
    if len(checkpoint.chars) + 1 != config.vocab_size:
        raise CheckpointError(
            f"checkpoint has {len(checkpoint.chars)} characters but vocab_size {config.vocab_size} "
            f"(expected characters + 1 for BOS)"
        )
    if not isinstance(checkpoint.step, int) or checkpoint.step < 0:
        raise CheckpointError(f"checkpoint step must be a whole number >= 0, got {checkpoint.step!r}")
    check_tensors("params", checkpoint.params, config)
    if checkpoint.adam is not None:
        for moment in ("m", "v"):
            check_tensors(f"adam {moment}", checkpoint.adam.get(moment), config)


def check_tensors(what: str, tensors, config: GPTConfig) -> None:
    shapes = dict(param_shapes(config))
    if not isinstance(tensors, dict):
        raise CheckpointError(f"checkpoint {what} is missing")
    missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise CheckpointError(f"checkpoint {what} do not fit the config: missing {missing}, unexpected {extra}")
    for name, (n_out, n_in) in shapes.items():
        rows = tensors[name]
        got = (len(rows), len(rows[0]) if rows else 0)
        if got != (n_out, n_in) or any(len(row) != n_in for row in rows):
            raise CheckpointError(f"checkpoint {what} {name} has shape {list(got)}, the config needs [{n_out}, {n_in}]")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for row in rows for x in row):
            raise CheckpointError(f"checkpoint {what} {name} holds a value that is not a finite number")


def write_atomically(path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_of(model, chars, optimizer=None, step: int = 0, seed: int | None = None) -> Checkpoint:
    """A scalar model (and its Adam state) as a Checkpoint."""
    adam = None
    if optimizer is not None:
        adam = {"m": unflatten(optimizer.m, model.config), "v": unflatten(optimizer.v, model.config)}
    return Checkpoint(model.config, list(chars), model.params_as_floats(), adam, step, seed)


def flatten(tensors: dict, config: GPTConfig) -> list:
    """name -> rows, to one flat list in the parameter order."""
    return [float(x) for name, _ in param_shapes(config) for row in tensors[name] for x in row]


def unflatten(flat: list, config: GPTConfig) -> dict:
    """One flat list in the parameter order, to name -> rows."""
    tensors, start = {}, 0
    for name, (n_out, n_in) in param_shapes(config):
        tensors[name] = [list(flat[start + r * n_in: start + (r + 1) * n_in]) for r in range(n_out)]
        start += n_out * n_in
    return tensors
