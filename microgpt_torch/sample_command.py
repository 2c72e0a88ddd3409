"""Draw names from a checkpoint, torch or scalar JSON (told apart by content), with either engine.

    python scripts/sample.py out/model.pt                       # torch engine, random.Random(seed)
    python scripts/sample.py out/model.json --from scalar       # the same names, scalar engine
    python scripts/sample.py out/model.pt --sampler torch       # torch.multinomial, batched
    microgpt-sample out/model.pt --samples 5 --device auto      # installed: the same command

With the default sampler both engines make the same draws from random.Random(--seed), so
the same checkpoint and seed print the same names.

Exit codes: 0 done; 2 bad input (a checkpoint that cannot be read, a device this machine
does not have), with a one-line error. (--num-samples is the old spelling of --samples.)
"""
from __future__ import annotations

import argparse
import random
import sys

import torch

from microgpt_scalar.checkpoint import CheckpointError
from microgpt_scalar.cli import (Deprecated, OneLineParser, add_quiet_flag, command, print_error, sample_count,
                                 seed_number, temperature)
from microgpt_scalar.data import Tokenizer
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.train import sample as scalar_sample
from microgpt_torch.checkpoint import load_any_checkpoint, restore, to_scalar_checkpoint
from microgpt_torch.device import pick_device
from microgpt_torch.device_names import DEVICE_NAMES
from microgpt_torch.train import generate, sample


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("checkpoint", help="a torch (.pt) or scalar (JSON) checkpoint")
    parser.add_argument("--from", dest="engine", choices=("torch", "scalar"), default="torch",
                        help="the engine that samples: torch (default) or the scalar one")
    parser.add_argument("--sampler", choices=("python", "torch"), default="python",
                        help="python: random.Random(seed) as the scalar engine draws; torch: torch.Generator (torch engine)")
    parser.add_argument("--samples", type=sample_count, default=20, help="names to draw (default 20)")
    parser.add_argument("--num-samples", action=Deprecated, new="--samples", dest="samples", type=sample_count)
    parser.add_argument("--temperature", type=temperature, default=0.5)
    parser.add_argument("--seed", type=seed_number, default=42)
    parser.add_argument("--device", default="cpu", help=f"{DEVICE_NAMES} (default cpu)")
    add_quiet_flag(parser, "the names are printed as ever")
    return parser.parse_args(argv)


def draw(args) -> list[str]:
    if args.engine == "scalar" and args.sampler == "torch":
        raise ValueError("--sampler torch needs --from torch")
    device = pick_device(args.device, keep_on_cpu=True)  # DeviceError for a device that is not there
    checkpoint = load_any_checkpoint(args.checkpoint)
    tokenizer = Tokenizer(checkpoint.chars)
    if args.engine == "scalar":
        scalar = to_scalar_checkpoint(checkpoint)
        model = ScalarGPT(scalar.config, params=scalar.params)
        rng = random.Random(args.seed)
        return [scalar_sample(model, tokenizer, rng, args.temperature) for _ in range(args.samples)]
    model, _ = restore(checkpoint, dtype=torch.float64, device=device)
    if args.sampler == "torch":
        return generate(model, tokenizer, torch.Generator().manual_seed(args.seed), args.temperature, args.samples)
    rng = random.Random(args.seed)
    return [sample(model, tokenizer, rng, args.temperature) for _ in range(args.samples)]


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        names = draw(args)
    except (CheckpointError, ValueError) as error:
        print_error(error)
        return 2
    for i, name in enumerate(names):
        print(f"sample {i + 1:2d}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
