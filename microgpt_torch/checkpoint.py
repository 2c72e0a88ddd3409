"""Torch checkpoints, and conversion to and from the scalar JSON checkpoint.

    {"format": "microgpt-torch-checkpoint", "version": 1,
     "config": {...GPTConfig fields...}, "chars": ["a", ...],
     "model": {"wte.weight": tensor, ...},               # torch names, [n_out][n_in], on the CPU
     "adam": {"m": {name: tensor}, "v": {name: tensor}} or None,
     "step": 500, "seed": 42}                             # steps taken; Adam has taken as many

Only plain tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)`
reads it. Files are written beside the target and renamed over it, as the scalar package
does, so a crash never replaces a good checkpoint with a half-written one.

    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step, seed))
    model, optimizer, scheduler = restore(load_any_checkpoint(path))   # torch or scalar file
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from microgpt_scalar.checkpoint import Checkpoint, CheckpointError, write_atomically
from microgpt_scalar.checkpoint import load_checkpoint as load_scalar_checkpoint
from microgpt_scalar.config import GPTConfig, param_shapes

from .model import GPT, scalar_name, torch_name
from .optim import make_optimizer, make_scheduler

FORMAT = "microgpt-torch-checkpoint"
VERSION = 1


@dataclass
class TorchCheckpoint:
    """A checkpoint's contents with tensors under torch names."""

    config: GPTConfig
    chars: list  # the tokenizer's characters; BOS is len(chars)
    model: dict  # torch name -> tensor [n_out][n_in]
    adam: dict | None = None  # {"m": {torch name: tensor}, "v": {torch name: tensor}}
    step: int = 0  # training steps (and Adam steps) already taken
    seed: int | None = None  # the run's seed: it fixes the document order and the samples


def checkpoint_of(model: GPT, chars, optimizer=None, step: int = 0, seed: int | None = None) -> TorchCheckpoint:
    """The model (and its Adam moments) as a checkpoint after `step` steps; copies to the CPU."""
    tensors = {name: p.detach().cpu().clone() for name, p in model.named_parameters()}
    adam = None
    if optimizer is not None and any(optimizer.state.get(p) for p in model.parameters()):
        adam = {"m": {}, "v": {}}
        for name, p in model.named_parameters():
            state = optimizer.state[p]
            if int(state["step"]) != step:
                raise ValueError(f"Adam has taken {int(state['step'])} steps for {name}, the checkpoint says {step}")
            adam["m"][name] = state["exp_avg"].detach().cpu().clone()
            adam["v"][name] = state["exp_avg_sq"].detach().cpu().clone()
    return TorchCheckpoint(model.config, list(chars), tensors, adam, step, seed)


def save_checkpoint(path, checkpoint: TorchCheckpoint) -> None:
    validate(checkpoint)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": checkpoint.config.to_dict(),
        "chars": list(checkpoint.chars),
        "model": checkpoint.model,
        "adam": checkpoint.adam,
        "step": checkpoint.step,
        "seed": checkpoint.seed,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path, preset: str | None = None) -> TorchCheckpoint:
    """Read and check a torch checkpoint; with `preset`, also require that it was made from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"not a readable torch checkpoint: {path} ({first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a microgpt torch checkpoint: {path}")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {payload.get('version')!r} is not {VERSION}: {path}")
    try:
        checkpoint = TorchCheckpoint(GPTConfig.from_dict(payload["config"]), payload["chars"], payload["model"],
                                     payload.get("adam"), payload["step"], payload.get("seed"))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None
    validate(checkpoint)
    check_preset(checkpoint, preset, path)
    return checkpoint


def load_any_checkpoint(path, preset: str | None = None) -> TorchCheckpoint:
    """A torch or a scalar JSON checkpoint, told apart by content (a zip archive or JSON)."""
    return from_scalar_checkpoint(load_scalar_checkpoint(path, preset)) if is_scalar_checkpoint(path) \
        else load_checkpoint(path, preset)


def is_scalar_checkpoint(path) -> bool:
    """True for a JSON file (the scalar format), False for anything else (tried as torch)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with path.open("rb") as file:
        head = file.read(64).lstrip()
    return head.startswith(b"{")


def check_preset(checkpoint: TorchCheckpoint, preset: str | None, path) -> None:
    if preset is not None and checkpoint.config.preset != preset:
        raise CheckpointError(f"checkpoint {path} was made with preset {checkpoint.config.preset!r}, not {preset!r}")


def check_config(checkpoint: TorchCheckpoint, **fields) -> None:
    """Raise CheckpointError if a requested config field differs from the checkpoint's."""
    for name, value in fields.items():
        if value is not None and getattr(checkpoint.config, name) != value:
            raise CheckpointError(f"checkpoint has {name}={getattr(checkpoint.config, name)!r}, "
                                  f"but {name}={value!r} was asked for")


def validate(checkpoint: TorchCheckpoint) -> None:
    """Raise CheckpointError unless every tensor has the name and shape its config asks for."""
    config = checkpoint.config
    if not isinstance(checkpoint.chars, list) or len(checkpoint.chars) + 1 != config.vocab_size:
        raise CheckpointError(f"checkpoint has {len(checkpoint.chars)} characters but vocab_size "
                              f"{config.vocab_size} (expected characters + 1 for BOS)")
    if isinstance(checkpoint.step, bool) or not isinstance(checkpoint.step, int) or checkpoint.step < 0:
        raise CheckpointError(f"checkpoint step must be a whole number >= 0, got {checkpoint.step!r}")
    check_tensors("model", checkpoint.model, config)
    if checkpoint.adam is not None:
        if not isinstance(checkpoint.adam, dict):
            raise CheckpointError("checkpoint adam state is malformed")
        for moment in ("m", "v"):
            check_tensors(f"adam {moment}", checkpoint.adam.get(moment), config)


def check_tensors(what: str, tensors, config: GPTConfig) -> None:
    shapes = {torch_name(name): shape for name, shape in param_shapes(config)}
    if not isinstance(tensors, dict):
        raise CheckpointError(f"checkpoint {what} is missing")
    missing, extra = sorted(set(shapes) - set(tensors)), sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise CheckpointError(f"checkpoint {what} does not fit the config: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise CheckpointError(f"checkpoint {what} {name} is not a floating-point tensor")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"checkpoint {what} {name} has shape {list(tensor.shape)}, "
                                  f"the config needs {list(shape)}")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {what} {name} holds a value that is not a finite number")


def to_scalar_checkpoint(checkpoint: TorchCheckpoint) -> Checkpoint:
    """The same contents as the scalar engine's JSON checkpoint (float64 values)."""
    def rows(tensors):
        return {scalar_name(name): tensor.double().tolist() for name, tensor in tensors.items()}

    adam = None if checkpoint.adam is None else {moment: rows(checkpoint.adam[moment]) for moment in ("m", "v")}
    return Checkpoint(checkpoint.config, list(checkpoint.chars), rows(checkpoint.model), adam,
                      checkpoint.step, checkpoint.seed)


def from_scalar_checkpoint(checkpoint: Checkpoint) -> TorchCheckpoint:
    """A scalar checkpoint's contents as float64 tensors under torch names."""
    def tensors(rows):
        return {torch_name(name): torch.tensor(rows[name], dtype=torch.float64) for name, _ in
                param_shapes(checkpoint.config)}

    adam = None if checkpoint.adam is None else {moment: tensors(checkpoint.adam[moment]) for moment in ("m", "v")}
    return TorchCheckpoint(checkpoint.config, list(checkpoint.chars), tensors(checkpoint.params), adam,
                           checkpoint.step, checkpoint.seed)


def restore(checkpoint: TorchCheckpoint, dtype=torch.float64, device=None):
    """(model, optimizer, scheduler) in the state the checkpoint was saved in, ready for
    step `checkpoint.step` (0-based) of the schedule."""
    model = GPT(checkpoint.config).to(dtype=dtype, device=device)
    model.load_state_dict(checkpoint.model)  # copies, casting to the model's dtype and device
    optimizer = make_optimizer(model, checkpoint.config)
    if checkpoint.adam is not None or checkpoint.step > 0:
        for name, p in model.named_parameters():
            m = checkpoint.adam["m"][name] if checkpoint.adam else torch.zeros_like(p)
            v = checkpoint.adam["v"][name] if checkpoint.adam else torch.zeros_like(p)
            optimizer.state[p] = {
                "step": torch.tensor(float(checkpoint.step)),  # bias correction of step s uses s + 1
                "exp_avg": m.to(dtype=p.dtype, device=p.device).clone(),
                "exp_avg_sq": v.to(dtype=p.dtype, device=p.device).clone(),
            }
    scheduler = make_scheduler(optimizer, checkpoint.config, step=checkpoint.step)
    return model, optimizer, scheduler
