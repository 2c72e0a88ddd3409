"""What one comparison is asked to do, checked once, before any engine starts.

    request = CompareRequest(engine="my_engine.py", fd=20)      # raises ValueError, one line
    request = CompareRequest.from_args(args)                    # a script's flags, in one call
    report = compare_step(request)

A request is frozen: the script, the API and the report read the same one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from microgpt_scalar.config import get_config

from .engine.faults import check_injection
from .engine.process import DEFAULT_TIMEOUT
from .judge.tolerances import tolerances_for

SIZE_FIELDS = ("n_layer", "n_embd", "n_head", "block_size")


@dataclass(frozen=True)
class CompareRequest:
    preset: str = "microgpt"
    weights: str = "dense"  # "dense", "reference" or a checkpoint's path
    docs: tuple | None = None  # documents to train on, all in every step (default: the built-in ones)
    data: str | None = None  # or a data file, one document per step as the reference program takes them
    seed: int = 42
    steps: int = 1
    dtype: str = "float64"  # the torch side's
    device: str = "cpu"  # the torch side's
    engine: object = None  # a learner's "FILE[:CLASS]" (its own process) or a class (this process)
    inject: str | None = None  # a fault of compare.engine.faults
    fd: int = 0  # gradients also checked against finite differences
    overrides: dict = field(default_factory=dict)  # config fields: n_layer, n_embd, n_head, block_size
    timeout: float = DEFAULT_TIMEOUT  # seconds the engine may take to load and for each step

    def __post_init__(self):
        overrides = {name: value for name, value in (self.overrides or {}).items() if value is not None}
        unknown = sorted(set(overrides) - set(SIZE_FIELDS))
        if unknown:
            raise ValueError(f"overrides: {', '.join(unknown)} is not a model size ({', '.join(SIZE_FIELDS)})")
        object.__setattr__(self, "overrides", overrides)
        if self.docs is not None:
            object.__setattr__(self, "docs", tuple(self.docs))
        if self.docs and self.data is not None:
            raise ValueError("give documents (--doc) or a data file (--data), not both")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, got {self.steps!r}")
        if isinstance(self.fd, bool) or not isinstance(self.fd, int) or self.fd < 0:
            raise ValueError(f"fd must be a whole number >= 0, got {self.fd!r}")
        tolerances_for(self.dtype)  # raises for an unknown dtype
        check_injection(self.inject, self.engine)
        get_config(self.preset, **overrides)  # raises for an unknown preset or a model that cannot be built
        if overrides and self.weights not in ("reference", "dense"):
            raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in overrides)} cannot change a checkpoint's "
                             f"model; use them with --weights dense or reference")

    @classmethod
    def from_args(cls, args) -> "CompareRequest":
        """The request of compare_step.py's flags."""
        return cls(preset=args.preset, weights=args.weights, docs=args.doc, data=args.data, seed=args.seed,
                   steps=args.steps, dtype=args.dtype, device=args.device, engine=args.engine, inject=args.inject,
                   fd=args.fd, overrides={name: getattr(args, name) for name in SIZE_FIELDS}, timeout=args.timeout)

    @property
    def config(self):
        return get_config(self.preset, **self.overrides)
