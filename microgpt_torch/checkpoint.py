"""Torch checkpoints, and conversion to and from the scalar JSON checkpoint.

    {"format": "microgpt-torch-checkpoint", "version": 2,
     "config": {...GPTConfig fields...}, "chars": ["a", ...],
     "model": {"wte.weight": tensor, ...},               # the model's state_dict, [n_out][n_in], on the CPU
     "adam": {"m": {name: tensor}, "v": {name: tensor}} or None,
     "step": 500, "seed": 42,                             # steps taken; Adam has taken as many
     "run": {"data_sha256": "...", "mode": "batched", ...} or None}   # settings a resume must repeat

Only plain tensors, numbers, strings, lists and dicts, so `torch.load(weights_only=True)`
reads it. Files are written beside the target and renamed over it, as the scalar package
does, so a crash never replaces a good checkpoint with a half-written one. Version 1 files
named the layer weights "layers.0.attn_wq.weight" (now "layers.0.attn.wq.weight"); they load.

    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step, seed))
    model, optimizer = restore(load_any_checkpoint(path))   # torch or scalar file
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

import torch

from microgpt_scalar.checkpoint import (Checkpoint, CheckpointError, check_count, check_fields, check_names,
                                        check_preset, saved_moments)
from microgpt_scalar.checkpoint import load_checkpoint as load_scalar_checkpoint
from microgpt_scalar.config import GPTConfig, param_shapes
from microgpt_scalar.files import FileError, read_input, shown, write_atomically

from .model import GPT, scalar_name, torch_name
from .optim import adam_moments, make_optimizer, set_adam_moments

FORMAT = "microgpt-torch-checkpoint"
VERSION = 2
_OLD_LAYER_NAME = re.compile(r"layers\.(0|[1-9][0-9]*)\.(attn|mlp)_(wq|wk|wv|wo|fc1|fc2)\.weight")  # version 1


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
    names = [name for name, _ in model.named_parameters()]  # the optimizer's order
    tensors = {name: p.detach().cpu().clone() for name, p in model.named_parameters()}
    state = adam_moments(optimizer) if optimizer is not None else None
    adam = None
    if state is not None:
        adam_step, m, v = state
        if adam_step != step:
            raise ValueError(f"Adam has taken {adam_step} steps, the checkpoint says {step}")
        adam = {"m": {name: m_i.cpu() for name, m_i in zip(names, m)},
                "v": {name: v_i.cpu() for name, v_i in zip(names, v)}}
    return TorchCheckpoint(model.config, list(chars), tensors, adam, step, seed, run)


def save_checkpoint(path, checkpoint: TorchCheckpoint) -> None:
    validate(checkpoint)
    payload = {"format": FORMAT, "version": VERSION, "config": checkpoint.config.to_dict(),
               "chars": list(checkpoint.chars), "model": checkpoint.model, "adam": checkpoint.adam,
               "step": checkpoint.step, "seed": checkpoint.seed, "run": checkpoint.run}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomically(path, buffer.getvalue())


def load_checkpoint(path, preset: str | None = None) -> TorchCheckpoint:
    """Read and check a torch checkpoint; with `preset`, also require that it was made from it."""
    try:
        raw = read_input(path, "checkpoint")
    except FileError as error:
        raise CheckpointError(str(error)) from None
    path = shown(path)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only runs no code, but junk makes the unpickler fail in many ways
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"not a readable torch checkpoint: {path} ({first_line})") from None
    checkpoint = from_payload(payload, path)
    validate(checkpoint)
    check_preset(checkpoint.config, preset, path)
    return checkpoint


def from_payload(payload, path) -> TorchCheckpoint:
    """The file's dict as a TorchCheckpoint, not yet validated, with version 1's names renamed."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"not a microgpt checkpoint: {path} (expected format {FORMAT!r})")
    version = payload.get("version")
    if version not in (1, VERSION):
        raise CheckpointError(f"checkpoint version {version!r} is not 1 or {VERSION}: {path}")
    try:
        config = GPTConfig.from_dict(payload["config"])
        model, adam = payload["model"], payload.get("adam")
        if version == 1:
            model = _renamed(model)
            adam = {moment: _renamed(tensors) for moment, tensors in adam.items()} if isinstance(adam, dict) else adam
        return TorchCheckpoint(config, payload["chars"], model, adam, payload["step"], payload.get("seed"),
                               payload.get("run"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"checkpoint {path} is malformed: {error}") from None


def _renamed(tensors):
    """Version 1's "layers.0.attn_wq.weight" -> "layers.0.attn.wq.weight" (other names as they are)."""
    if not isinstance(tensors, dict):
        return tensors
    return {_OLD_LAYER_NAME.sub(r"layers.\1.\2.\3.weight", name): tensor for name, tensor in tensors.items()}


def load_any_checkpoint(path, preset: str | None = None) -> TorchCheckpoint:
    """A torch or a scalar JSON checkpoint, told apart by content (a zip archive or JSON)."""
    return from_scalar_checkpoint(load_scalar_checkpoint(path, preset)) if is_scalar_checkpoint(path) \
        else load_checkpoint(path, preset)


def is_scalar_checkpoint(path) -> bool:
    """True for a JSON file (the scalar format), False for anything else (tried as torch)."""
    try:
        head = read_input(path, "checkpoint")[:64].lstrip()
    except FileError as error:
        raise CheckpointError(str(error)) from None
    return head.startswith(b"{")


def validate(checkpoint: TorchCheckpoint) -> None:
    """Raise CheckpointError unless the vocabulary, the step, the seed and every tensor (name,
    shape, finite floats) fit the checkpoint's config."""
    check_fields(checkpoint)
    check_tensors("model", checkpoint.model, checkpoint.config)
    for moment, tensors in saved_moments(checkpoint.adam):
        check_tensors(f"adam {moment}", tensors, checkpoint.config)


def check_tensors(what: str, tensors, config: GPTConfig) -> None:
    check_count(what, tensors, config)
    shapes = {torch_name(name): shape for name, shape in param_shapes(config)}
    check_names(what, tensors, shapes)
    for name, shape in shapes.items():
        tensor = tensors[name]
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point() or tensor.layout != torch.strided:
            raise CheckpointError(f"checkpoint {what} {name} is not a dense floating-point tensor")
        if tensor.device.type != "cpu":  # a "meta" tensor has a shape and no values
            raise CheckpointError(f"checkpoint {what} {name} is on the {tensor.device.type!r} device, "
                                  f"not in the file (a checkpoint holds its values)")
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


def restore(checkpoint: TorchCheckpoint, dtype=torch.float64, device=None, model_class: type[GPT] = GPT):
    """(model, optimizer) in the state the checkpoint was saved in, ready for step
    `checkpoint.step` (0-based). The model is a `model_class`: the readable GPT, or one of
    microgpt_torch/fast.py's (the parameters are the same for each)."""
    model = model_class(checkpoint.config).to(dtype=dtype, device=device)
    model.load_state_dict(checkpoint.model)  # copies, casting to the model's dtype and device
    optimizer = make_optimizer(model, checkpoint.config)
    if checkpoint.adam is not None or checkpoint.step > 0:
        named = list(model.named_parameters())  # the optimizer's order
        m = [checkpoint.adam["m"][name] if checkpoint.adam else torch.zeros_like(p) for name, p in named]
        v = [checkpoint.adam["v"][name] if checkpoint.adam else torch.zeros_like(p) for name, p in named]
        set_adam_moments(optimizer, checkpoint.step, m, v)  # bias correction of step s uses s + 1
    return model, optimizer
