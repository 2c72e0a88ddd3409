"""Checkpoints as JSON: config, vocabulary, parameters by name, Adam state and step.

    {"format": "microgpt-checkpoint", "version": 1,
     "config": {...GPTConfig fields...}, "chars": ["a", ...],
     "params": {"wte": [[...], ...], ...},          # [n_out][n_in] per name
     "adam": {"m": {name: rows}, "v": {name: rows}} or null,
     "step": 500, "seed": 42,                       # steps already taken; the run's seed or null
     "run": {"data_sha256": "...", "mode": "faithful", ...} or null}   # settings a resume must repeat

The file is written through `microgpt_scalar.files` (to a temporary file renamed over the
target), so a crash never leaves a half-written checkpoint in place of a good one. The torch package converts its
own checkpoints to and from this one (`microgpt_torch.checkpoint`), and shares the checks
of the fields both formats hold.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .config import GPTConfig, num_param_matrices, param_shapes
from .files import FileError, read_input, shown, write_atomically
from .optim import adam_moments, set_adam_moments

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
    run: dict | None = None  # the run's other settings (data file hash, mode, ...); null in older files


def save_checkpoint(path, checkpoint: Checkpoint) -> None:
    validate(checkpoint)
    write_atomically(path, json.dumps(to_payload(checkpoint)).encode("utf-8"))


def load_checkpoint(path, preset: str | None = None) -> Checkpoint:
    """Read and check a checkpoint; with `preset`, also require that it was made from it."""
    try:
        raw = read_input(path, "checkpoint")
    except FileError as error:
        raise CheckpointError(str(error)) from None
    path = shown(path)
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint is not valid JSON: {path} ({error})") from None
    except RecursionError:
        raise CheckpointError(f"checkpoint {path} is malformed: nested too deeply") from None
    checkpoint = from_payload(payload, path)
    try:
        validate(checkpoint)
    except OverflowError as error:  # an integer too large for a float
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None
    check_preset(checkpoint.config, preset, path)
    return checkpoint


def to_payload(checkpoint: Checkpoint) -> dict:
    """A checkpoint's fields as the file holds them."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": checkpoint.config.to_dict(),
        "chars": list(checkpoint.chars),
        "params": checkpoint.params,
        "adam": checkpoint.adam,
        "step": checkpoint.step,
        "seed": checkpoint.seed,
        "run": checkpoint.run,
    }


def from_payload(payload, path) -> Checkpoint:
    """`to_payload` undone, not yet validated; CheckpointError if the file is of another
    format or version, or lacks a field."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a microgpt checkpoint: {path} (expected format {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {payload.get('version')!r} is not {VERSION}: {path}")
    try:
        return Checkpoint(GPTConfig.from_dict(payload["config"]), payload["chars"], payload["params"],
                          payload.get("adam"), payload["step"], payload.get("seed"), payload.get("run"))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None


def check_preset(config: GPTConfig, preset: str | None, path) -> None:
    if preset is not None and config.preset != preset:
        raise CheckpointError(f"checkpoint {path} was made with preset {config.preset!r}, not {preset!r}")


def check_config(checkpoint, **fields) -> None:
    """Raise CheckpointError if a requested config field differs from the checkpoint's
    (None means not requested: an unset command-line flag)."""
    for name, value in fields.items():
        if value is not None and getattr(checkpoint.config, name) != value:
            raise CheckpointError(f"checkpoint has {name}={getattr(checkpoint.config, name)!r}, "
                                  f"but {name}={value!r} was asked for")


def validate(checkpoint: Checkpoint) -> None:
    """Raise CheckpointError unless the vocabulary, the step, the seed and every tensor fit
    the checkpoint's config."""
    check_fields(checkpoint)
    check_tensors("params", checkpoint.params, checkpoint.config)
    for moment, tensors in saved_moments(checkpoint.adam):
        check_tensors(f"adam {moment}", tensors, checkpoint.config)


def check_fields(checkpoint) -> None:
    """The checks both formats make of everything but the tensors."""
    chars, step, seed = checkpoint.chars, checkpoint.step, checkpoint.seed
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars) \
            or len(set(chars)) != len(chars):
        raise CheckpointError("checkpoint chars must be a list of distinct single characters")
    if len(chars) + 1 != checkpoint.config.vocab_size:
        raise CheckpointError(f"checkpoint has {len(chars)} characters but vocab_size "
                              f"{checkpoint.config.vocab_size} (expected characters + 1 for BOS)")
    if not _is_whole(step) or step < 0:
        raise CheckpointError(f"checkpoint step must be a whole number >= 0, got {step!r}")
    if step > checkpoint.config.num_steps:
        raise CheckpointError(f"checkpoint step {step} is past the run's own num_steps "
                              f"{checkpoint.config.num_steps}: no run can go on from it")
    if seed is not None and not _is_whole(seed):
        raise CheckpointError(f"checkpoint seed must be a whole number or null, got {seed!r}")
    run = checkpoint.run
    if run is not None and not (isinstance(run, dict) and all(
            isinstance(key, str) and (value is None or isinstance(value, (str, int, float))) for key, value in run.items())):
        raise CheckpointError("checkpoint run must map setting names to plain values, or be null")
    texts = list(chars) + [checkpoint.config.preset, checkpoint.config.activation, checkpoint.config.lr_schedule]
    texts += [text for key, value in (run or {}).items() for text in (key, value) if isinstance(text, str)]
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError(f"checkpoint holds a string that is not valid Unicode text: {text!r}") from None


def check_count(what: str, tensors, config: GPTConfig) -> None:
    """CheckpointError if the config has more matrices than any file could hold (checked before
    `param_shapes` lists their names, which for billions of layers would never end)."""
    if not isinstance(tensors, dict):
        raise CheckpointError(f"checkpoint {what} is missing")
    if num_param_matrices(config) > MAX_LISTED_MATRICES and len(tensors) != num_param_matrices(config):
        raise CheckpointError(f"checkpoint {what} holds {len(tensors)} matrices, the config needs "
                              f"{num_param_matrices(config):,}")


MAX_LISTED_MATRICES = 10**6  # more than a checkpoint could hold in memory: counted, not listed


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def saved_moments(adam) -> list:
    """[("m", tensors), ("v", tensors)] of a checkpoint's Adam state; [] if it has none."""
    if adam is None:
        return []
    if not isinstance(adam, dict):
        raise CheckpointError(f"checkpoint adam state is malformed: {type(adam).__name__}, not m and v")
    return [(moment, adam.get(moment)) for moment in ("m", "v")]


def check_names(what: str, tensors, names) -> None:
    """Raise CheckpointError unless `tensors` maps exactly `names` (to anything)."""
    if not isinstance(tensors, dict):
        raise CheckpointError(f"checkpoint {what} is missing")
    missing, extra = sorted(set(names) - set(tensors)), sorted(set(tensors) - set(names))
    if missing or extra:
        raise CheckpointError(f"checkpoint {what} does not fit the config: missing {missing}, unexpected {extra}")


def check_tensors(what: str, tensors, config: GPTConfig) -> None:
    check_count(what, tensors, config)
    shapes = dict(param_shapes(config))
    check_names(what, tensors, shapes)
    for name, (n_out, n_in) in shapes.items():
        rows = tensors[name]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise CheckpointError(f"checkpoint {what} {name} is malformed: not a list of rows")
        got = (len(rows), len(rows[0]) if rows else 0)
        if got != (n_out, n_in) or any(len(row) != n_in for row in rows):
            raise CheckpointError(f"checkpoint {what} {name} has shape {list(got)}, the config needs [{n_out}, {n_in}]")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for row in rows for x in row):
            raise CheckpointError(f"checkpoint {what} {name} holds a value that is not a finite number")
        if what == "adam v" and any(x < 0 for row in rows for x in row):
            raise CheckpointError(f"checkpoint adam v {name} holds a negative value (a mean of squares is >= 0)")


def checkpoint_of(model, chars, optimizer=None, step: int = 0, seed: int | None = None,
                  run: dict | None = None) -> Checkpoint:
    """A scalar model (and its Adam state) as a Checkpoint; `run` records the settings a
    resumed run must repeat."""
    adam = None
    if optimizer is not None:
        m, v = adam_moments(optimizer)
        adam = {"m": unflatten(m, model.config), "v": unflatten(v, model.config)}
    return Checkpoint(model.config, list(chars), model.params_as_floats(), adam, step, seed, run)


def restore_adam(optimizer, checkpoint: Checkpoint) -> None:
    """Give a scalar Adam the moments a checkpoint holds (a fresh Adam keeps its zeros if none)."""
    if checkpoint.adam is not None:
        set_adam_moments(optimizer, flatten(checkpoint.adam["m"], checkpoint.config),
                         flatten(checkpoint.adam["v"], checkpoint.config))


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
