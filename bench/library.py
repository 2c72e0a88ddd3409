"""Every call the benchmark makes into the project, in one place.

The sections measure the project through these functions and through the scripts' command
lines built here, so a change of signature or flag name is answered in this file alone.
torch is imported inside the torch functions only: the compare section times `import torch`
in fresh processes, and the scalar section needs none of it.
"""
from __future__ import annotations

import sys

from microgpt_scalar.config import PRESETS, get_config
from microgpt_scalar.data import DataError, default_data_path, load_docs
from microgpt_scalar.engine import Value, topological_order
from microgpt_scalar.fused import FusedValue
from microgpt_scalar.model import softmax as scalar_softmax
from microgpt_scalar.optim import learning_rate_at
from microgpt_scalar.train import forward_loss as scalar_forward_loss
from microgpt_scalar.train import start_run, train_step

from .common import SCRIPTS

__all__ = ["PRESETS", "DataError", "load_docs", "topological_order", "scalar_softmax", "scalar_forward_loss",
           "VALUE_CLASSES", "read_docs", "scalar_config", "scalar_start", "scalar_train_step", "learning_rate"]

VALUE_CLASSES = {"per-op": Value, "fused": FusedValue}  # the project's scalar engines, by their flag's name


def read_docs(data: str | None) -> list[str]:
    """The documents of `data`, or of the file the scripts use when no --data is given."""
    return load_docs(data if data else default_data_path())


def default_data() -> str:
    """The path the scripts read when no --data is given."""
    return str(default_data_path())


def scalar_config(preset: str, **overrides):
    return get_config(preset, **overrides)


def scalar_start(docs: list[str], config, seed: int, value_cls):
    """(docs, tokenizer, model, optimizer, rng): the reference program's start on `value_cls`."""
    return start_run(docs, config, seed, value_cls)


def scalar_train_step(model, optimizer, tokens: list[int], step: int) -> float:
    return train_step(model, optimizer, tokens, step)


def learning_rate(config, step: int) -> float:
    """The schedule's rate at 0-based `step`."""
    return learning_rate_at(step, config)


# --- the scripts' command lines ------------------------------------------------------------

def train_scalar_command(engine: str, data: str, steps: int, samples: int = 20) -> list:
    """scripts/train_scalar.py on the scalar engine `engine` ("per-op" or "fused")."""
    return [sys.executable, SCRIPTS / "train_scalar.py", "--value-class", engine, "--data", data,
            "--steps", str(steps), "--samples", str(samples)]


def train_torch_batched_command(data: str, batch_size: int, steps: int, eval_every: int, *flags) -> list:
    """scripts/train_torch.py in batched mode on the CPU, no samples, its thread policy its own."""
    return [sys.executable, SCRIPTS / "train_torch.py", "--mode", "batched", "--device", "cpu", "--data", data,
            "--batch-size", str(batch_size), "--steps", str(steps), "--eval-every", str(eval_every),
            "--samples", "0", *flags]


def compare_step_command(*flags) -> list:
    return [sys.executable, SCRIPTS / "compare_step.py", *flags]


# --- microgpt_torch ------------------------------------------------------------------------

def torch_start(docs: list[str], preset: str, seed: int, val_fraction: float = 0.1, **overrides):
    """The reference start on the torch side, and the held-out split of the shuffled
    documents: (config, params, train tokens, validation tokens, shuffled docs, tokenizer)."""
    from microgpt_torch.train import reference_start, split_docs

    docs, tokenizer, config, params, _ = reference_start(docs, seed, preset, **overrides)
    train_docs, val_docs = split_docs(docs, val_fraction)
    train_tokens = [tokenizer.encode(doc) for doc in train_docs]
    val_tokens = [tokenizer.encode(doc) for doc in val_docs]
    return config, params, train_tokens, val_tokens, docs, tokenizer


def torch_float64():
    import torch

    return torch.float64


def torch_model(config, params: dict, dtype=None):
    """The torch GPT with scalar-layout weights `params` (float64 unless `dtype`)."""
    from microgpt_torch.model import GPT

    return GPT.from_scalar_params(config, params, dtype=dtype or torch_float64(), fused=True)


def torch_optimizer(model, config):
    """The optimizer a training loop steps (it sets the learning rate of each step itself)."""
    from microgpt_torch.optim import make_optimizer

    return make_optimizer(model, config)


def faithful_losses(model, optimizer, docs: list[str], tokenizer) -> list[float]:
    """Every loss of the faithful run (one document a step, the reference order)."""
    from microgpt_torch.train import faithful_steps

    return [loss for _, loss in faithful_steps(model, optimizer, docs, tokenizer)]


def batched_losses(step_model, optimizer, train_tokens: list, batch_size: int, generator, grouped: bool = False):
    """The batched loop: yields (0-based step, loss)."""
    from microgpt_torch.train import batched_steps

    return batched_steps(step_model, optimizer, train_tokens, batch_size, generator, group_by_length=grouped)


def batched_step(model, optimizer, idx, targets, num_targets: int, step: int) -> float:
    """One batched training step on a ready batch."""
    from microgpt_torch.train import batched_train_step

    return batched_train_step(model, optimizer, idx, targets, num_targets, step)


def batch_rows(num_docs: int, batch_size: int, generator, lengths=None):
    """The batched loop's endless order of document indices, batch by batch."""
    from microgpt_torch.train import batch_order

    return batch_order(num_docs, batch_size, generator, lengths)


def packed_batch(train_tokens: list, block_size: int, rows):
    """(idx, targets, num_targets) of documents `rows`, as the batched loop builds them."""
    from microgpt_torch.train import PackedDocuments

    return PackedDocuments.of(train_tokens, block_size).batch(rows)


def evaluate(model, token_lists: list) -> float:
    from microgpt_torch.train import evaluate as evaluate_loss

    return evaluate_loss(model, token_lists)


def scalar_params_of(model) -> dict:
    """A torch GPT's weights in the scalar layout (name -> rows of floats)."""
    return model.scalar_params()
