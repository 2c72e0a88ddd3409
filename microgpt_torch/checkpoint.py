"""Torch checkpoints, and conversion to and from the scalar JSON checkpoint.

    {"format": "microgpt-torch-checkpoint", "version": 1,
     "config": {...GPTConfig fields...}, "chars": ["a", ...],
     "model": {"wte.weight": tensor, ...},               # torch names, [n_out][n_in], on the CPU
     "adam": {"m": {name: tensor}, "v": {name: tensor}} or None,
     "step": 500, "seed": 42,                             # steps taken; Adam has taken as many
     "run": {"data_sha256": "...", "mode": "batched", ...} or None}   # settings a resume must repeat

Only plain tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)`
reads it. Files are written beside the target and renamed over it, as the scalar package
does, so a crash never replaces a good checkpoint with a half-written one.

    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step, seed))
    model, optimizer, scheduler = restore(load_any_checkpoint(path))   # torch or scalar file
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from microgpt_scalar.checkpoint import (Checkpoint, CheckpointError, adam_moments, check_fields, check_names,
                                        check_preset, from_payload, to_payload, write_atomically)
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
    run: dict | None = None  # the run's other settings (data file hash, mode, ...); None in older files


def checkpoint_of(model: GPT, chars, optimizer=None, step: int = 0, seed: int | None = None,
                  run: dict | None = None) -> TorchCheckpoint:
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
    return TorchCheckpoint(model.config, list(chars), tensors, adam, step, seed, run)


def save_checkpoint(path, checkpoint: TorchCheckpoint) -> None:
    validate(checkpoint)
    buffer = io.BytesIO()
    torch.save(to_payload(checkpoint, FORMAT, VERSION, "model"), buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path, preset: str | None = None) -> TorchCheckpoint:
    """Read and check a torch checkpoint; with `preset`, also require that it was made from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only runs no code, but junk makes the unpickler fail in many ways
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"not a readable torch checkpoint: {path} ({first_line})") from None
    checkpoint = from_payload(payload, FORMAT, VERSION, "model", TorchCheckpoint, path)
    validate(checkpoint)
    check_preset(checkpoint.config, preset, path)
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
    try:
        with path.open("rb") as file:
            head = file.read(64).lstrip()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path}: {error.strerror}") from None
    return head.startswith(b"{")


def validate(checkpoint: TorchCheckpoint) -> None:
    """Raise CheckpointError unless the vocabulary, the step, the seed and every tensor (name,
    shape, finite floats) fit the checkpoint's config."""
    check_fields(checkpoint)
    check_tensors("model", checkpoint.model, checkpoint.config)
    for moment, tensors in adam_moments(checkpoint.adam):
        check_tensors(f"adam {moment}", tensors, checkpoint.config)


def check_tensors(what: str, tensors, config: GPTConfig) -> None:
    shapes = {torch_name(name): shape for name, shape in param_shapes(config)}
    check_names(what, tensors, shapes)
    for name, shape in shapes.items():
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.layout != torch.strided:
            raise CheckpointError(f"checkpoint {what} {name} is not a dense floating-point tensor")
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"checkpoint {what} {name} has shape {list(tensor.shape)}, "
                                  f"the config needs {list(shape)}")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"checkpoint {what} {name} holds a value that is not a finite number")
        if what == "adam v" and (tensor < 0).any():
            raise CheckpointError(f"checkpoint adam v {name} holds a negative value (a mean of squares is >= 0)")


def to_scalar_checkpoint(checkpoint: TorchCheckpoint) -> Checkpoint:
    """The same contents as the scalar engine's JSON checkpoint (float64 values)."""
    def rows(tensors):
        return {scalar_name(name): tensor.double().tolist() for name, tensor in tensors.items()}

    adam = None if checkpoint.adam is None else {moment: rows(checkpoint.adam[moment]) for moment in ("m", "v")}
    return Checkpoint(checkpoint.config, list(checkpoint.chars), rows(checkpoint.model), adam,
                      checkpoint.step, checkpoint.seed, checkpoint.run)


def from_scalar_checkpoint(checkpoint: Checkpoint) -> TorchCheckpoint:
    """A scalar checkpoint's contents as float64 tensors under torch names."""
    def tensors(rows):
        return {torch_name(name): torch.tensor(rows[name], dtype=torch.float64) for name, _ in
                param_shapes(checkpoint.config)}

    adam = None if checkpoint.adam is None else {moment: tensors(checkpoint.adam[moment]) for moment in ("m", "v")}
    return TorchCheckpoint(checkpoint.config, list(checkpoint.chars), tensors(checkpoint.params), adam,
                           checkpoint.step, checkpoint.seed, checkpoint.run)


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
                # Bias correction of step s uses s + 1; fused Adam keeps the count as float32
                # beside the parameter (on the GPU for a CUDA model).
                "step": torch.tensor(float(checkpoint.step), dtype=torch.float32, device=p.device),
                "exp_avg": m.to(dtype=p.dtype, device=p.device).clone(),
                "exp_avg_sq": v.to(dtype=p.dtype, device=p.device).clone(),
            }
    scheduler = make_scheduler(optimizer, checkpoint.config, step=checkpoint.step)
    return model, optimizer, scheduler
