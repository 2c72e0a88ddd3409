"""The one model and training configuration, shared by the scalar and the torch packages.

Standard library only: `microgpt_torch` imports this module, never the other way round.

    from microgpt_scalar.config import get_config, param_shapes
    config = get_config("microgpt-v2", n_layer=2)
    for name, (n_out, n_in) in param_shapes(config): ...
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

ACTIVATIONS = ("relu2", "relu")  # relu(x) ** 2 (microgpt), relu(x) (microgpt-v2)
LR_SCHEDULES = ("cosine", "linear")  # lr * 0.5 * (1 + cos(pi * s / N)), lr * (1 - s / N)


@dataclass(frozen=True)
class GPTConfig:
    preset: str = "microgpt"  # the preset this config started from (checked when loading checkpoints)
    vocab_size: int = 27  # characters + 1 for BOS; set from the documents' tokenizer
    n_layer: int = 1  # transformer blocks
    n_embd: int = 16  # width of the residual stream
    n_head: int = 4  # attention heads; each sees n_embd // n_head dimensions
    block_size: int = 8  # longest context, in tokens (positions 0 .. block_size - 1)
    activation: str = "relu2"  # MLP non-linearity, one of ACTIVATIONS
    init_std: float = 0.02  # gauss(0, init_std) for every matrix but the two projections below
    proj_init_std: float = 0.0  # gauss(0, proj_init_std) for attn_wo and mlp_fc2
    learning_rate: float = 1e-2  # Adam's base step size, before the schedule
    beta1: float = 0.9  # Adam's decay of the first moment (mean of gradients)
    beta2: float = 0.95  # Adam's decay of the second moment (mean of squared gradients)
    eps_adam: float = 1e-8  # added to sqrt(v_hat) so the step never divides by zero
    num_steps: int = 500  # training steps; the schedule runs from step 0 to num_steps
    lr_schedule: str = "cosine"  # how the learning rate decays, one of LR_SCHEDULES

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_embd", "n_head", "block_size", "num_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2 (one character and BOS), got {self.vocab_size}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("init_std", "proj_init_std"):
            if not _is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not _is_real(self.learning_rate) or self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}")
        if not _is_real(self.eps_adam) or self.eps_adam <= 0:
            raise ValueError(f"eps_adam must be a finite number > 0, got {self.eps_adam!r}")
        for name in ("beta1", "beta2"):
            if not _is_real(getattr(self, name)) or not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "GPTConfig":
        unknown = sorted(set(fields) - set(field_names()))
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**fields)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


PRESETS = {
    "microgpt": GPTConfig(),
    "microgpt-v2": GPTConfig(
        preset="microgpt-v2",
        block_size=16,
        activation="relu",
        init_std=0.08,
        proj_init_std=0.08,
        beta1=0.85,
        beta2=0.99,
        num_steps=1000,
        lr_schedule="linear",
    ),
}


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(GPTConfig)]


def field_types() -> dict[str, type]:
    """name -> type (str, int or float) of every field, in order: scripts make their
    command-line flags from it, so a new field gets its flag."""
    return typing.get_type_hints(GPTConfig)


def get_config(preset: str = "microgpt", **overrides) -> GPTConfig:
    """A preset, with any fields replaced; `None` overrides are ignored (unset command-line flags)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    overrides = {name: value for name, value in overrides.items() if value is not None}
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def param_shapes(config: GPTConfig) -> list[tuple[str, tuple[int, int]]]:
    """Every parameter matrix as (name, (n_out, n_in)), in the order the reference creates them.

    This order is the random number generator's draw order and the flat parameter order.
    """
    e, v = config.n_embd, config.vocab_size
    shapes = [("wte", (v, e)), ("wpe", (config.block_size, e)), ("lm_head", (v, e))]
    for i in range(config.n_layer):
        shapes += [
            (f"layer{i}.attn_wq", (e, e)),
            (f"layer{i}.attn_wk", (e, e)),
            (f"layer{i}.attn_wv", (e, e)),
            (f"layer{i}.attn_wo", (e, e)),
            (f"layer{i}.mlp_fc1", (4 * e, e)),
            (f"layer{i}.mlp_fc2", (e, 4 * e)),
        ]
    return shapes


def init_std_of(config: GPTConfig, name: str) -> float:
    """The standard deviation a parameter matrix is drawn with."""
    is_projection = name.endswith(".attn_wo") or name.endswith(".mlp_fc2")
    return config.proj_init_std if is_projection else config.init_std


def num_params(config: GPTConfig) -> int:
    """The number of scalar parameters, counted without listing the matrices (any size)."""
    e, v = config.n_embd, config.vocab_size
    return 2 * v * e + config.block_size * e + config.n_layer * 12 * e * e


def num_param_matrices(config: GPTConfig) -> int:
    """How many matrices `param_shapes` lists, without listing them."""
    return 3 + 6 * config.n_layer

