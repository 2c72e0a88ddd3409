"""Train microgpt on the scalar engine and sample names from it.

    python scripts/train_scalar.py                          # the original program: 500 steps, 20 samples
    python scripts/train_scalar.py --preset microgpt-v2     # the later revision
    python scripts/train_scalar.py --stop-after 200 --save run.json   # steps 1-200 of 500, saved
    python scripts/train_scalar.py --resume run.json                  # steps 201-500, then samples
    microgpt-train scalar --steps 2 --samples 3 -q                    # installed: the same command

The documents are the names file shipped with the package unless --data names another.
stdout carries the original program's log, line for line; a progress bar goes to stderr
when stderr is a terminal (never with -q). The --save file is claimed at the start: a second
run aiming at it is refused.

Exit codes: 0 done; 1 the loss stopped being finite; 2 bad input, or a checkpoint that cannot
be written, with a one-line error; 130 Ctrl-C, which finishes the step and saves the
checkpoint --save names. (--load is the old spelling of --resume.)
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from microgpt_scalar.checkpoint import (CheckpointError, check_config, checkpoint_of, load_checkpoint,
                                        save_checkpoint)
from microgpt_scalar.cli import (Deprecated, OneLineParser, StopOnInterrupt, add_config_flags, add_data_flag,
                                 add_quiet_flag, check_same_run, check_scalar_model_fits, command, config_overrides,
                                 data_path, file_sha256, inference_header, print_error, sample_count, seed_number,
                                 step_count, temperature)
from microgpt_scalar.config import PRESETS, get_config
from microgpt_scalar.data import Corpus, DataError
from microgpt_scalar.engine import Value
from microgpt_scalar.files import claim_output
from microgpt_scalar.progress import Progress
from microgpt_scalar.train import NonFiniteLossError, resume_run, sample, start_run, train_step

def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="microgpt (default) or microgpt-v2; with --resume, the checkpoint must match it")
    add_data_flag(parser)
    parser.add_argument("--stop-after", type=step_count, metavar="K",
                        help="stop after step K of the run (save it with --save, go on later with --resume)")
    parser.add_argument("--seed", type=seed_number, help="seed of random.Random (default: 42, or the checkpoint's)")
    parser.add_argument("--samples", type=sample_count, default=20, help="names to sample after training")
    parser.add_argument("--temperature", type=temperature, default=0.5)
    parser.add_argument("--save", help="write a JSON checkpoint here after training (and on Ctrl-C)")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --save replace an existing file that is not the --resume checkpoint")
    parser.add_argument("--load", action=Deprecated, new="--resume", dest="resume")
    add_quiet_flag(parser, "the log on stdout is unchanged")
    parser.add_argument("--resume", help="continue from this JSON checkpoint (its config; flags may only repeat it, "
                                       "but --steps may lengthen the run)")
    parser.add_argument("--value-class", choices=["fused", "per-op"], default="fused",
                        help="fused dot products (faster, same results) or one node per operation")
    add_config_flags(parser)  # --n-layer ..., and --steps: the run's length, which sets its schedule
    return parser.parse_args(argv)


def value_class(name: str):
    if name == "per-op":
        return Value
    from microgpt_scalar.fused import FusedValue

    return FusedValue


def setup(args):
    """Documents, tokenizer, model, optimizer, rng and the first step, fresh or resumed."""
    docs = Corpus.from_file(args.data)  # compact; strings decoded as used
    args.run = run_settings(args)
    value_cls = value_class(args.value_class)
    overrides = config_overrides(args)
    if args.resume:
        return resume(args, docs, value_cls, overrides)
    config = get_config(args.preset or "microgpt", **overrides)
    check_scalar_model_fits(dataclasses.replace(config, vocab_size=len(docs.chars) + 1))
    seed = 42 if args.seed is None else args.seed
    return (*start_run(docs, config, seed, value_cls), 0, seed)


def resume(args, docs, value_cls, overrides):
    """setup() from a checkpoint: config flags may repeat its config, --steps may lengthen the run."""
    checkpoint = load_checkpoint(args.resume, preset=args.preset)
    num_steps = overrides.pop("num_steps")
    check_config(checkpoint, **overrides)
    check_same_run(checkpoint.run, args.run, args.resume)
    for flag, step in (("--steps", num_steps), ("--stop-after", args.stop_after)):
        if step is not None and step < checkpoint.step:
            raise CheckpointError(f"{flag} {step}: checkpoint {args.resume} has already taken {checkpoint.step} steps")
    if num_steps is not None:
        checkpoint.config = dataclasses.replace(checkpoint.config, num_steps=num_steps)
    if args.seed is not None and checkpoint.seed is not None and args.seed != checkpoint.seed:
        raise CheckpointError(f"checkpoint {args.resume} was trained with --seed {checkpoint.seed}, not {args.seed}")
    seed = args.seed if args.seed is not None else (checkpoint.seed if checkpoint.seed is not None else 42)
    return (*resume_run(docs, checkpoint, seed, value_cls), checkpoint.step, seed)


def run_settings(args) -> dict:
    """What a checkpoint records of the run, beyond its config and seed, for --resume to check:
    the data file (by content) and the mode (one document per step, as torch's faithful mode)."""
    return {"data_sha256": file_sha256(args.data), "mode": "faithful"}


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        docs, tokenizer, model, optimizer, rng, first_step, seed = setup(args)
    except (DataError, CheckpointError, ValueError) as error:
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print_error("interrupted before training; nothing saved")
        return 130
    print(f"num docs: {len(docs)}")
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {len(model.parameters())}")
    last_step = min(model.config.num_steps, args.stop_after or model.config.num_steps)

    def save(step: int) -> None:
        if args.save:
            save_checkpoint(args.save, checkpoint_of(model, tokenizer.chars, optimizer, step, seed, args.run))

    try:
        with StopOnInterrupt() as stop:
            done = train(model, optimizer, tokenizer, docs, first_step, last_step, stop, args.quiet)
        save(done)
        if done < last_step:
            saved = f"; checkpoint of step {done} saved to {args.save}" if args.save else "; nothing saved (no --save)"
            print_error(f"interrupted after step {done}{saved}")
            return 130
    except NonFiniteLossError as error:
        print_error(f"{error}; stopped, nothing saved")
        return 1
    except KeyboardInterrupt:
        print_error("interrupted twice; nothing saved")
        return 130
    except ValueError as error:  # the checkpoint could not be written (a full disk) or was changed by another program
        print_error(f"{error}; the run's checkpoint is not saved")
        return 2
    if args.samples:
        print(f"\n{inference_header(model.config.preset)}")
    for i in range(args.samples):
        print(f"sample {i + 1:2d}: {sample(model, tokenizer, rng, args.temperature)}")
    return 0


def check_args(args) -> None:
    """Claim the --save file for this run, before any work is done: ValueError if no run may
    write it (a link, a device, the data file, another run's) or another run is writing it."""
    claim_output(args.save, "--save", inputs=[data_path(args.data)], may_replace=[args.resume],
                 overwrite=args.overwrite)


def train(model, optimizer, tokenizer, docs: list[str], first_step: int, last_step: int, stop,
          quiet: bool = False) -> int:
    """Steps first_step .. last_step - 1 of the run, each printing the reference program's line,
    until `stop.requested`; returns the number of steps done."""
    progress = Progress(first_step, last_step, quiet=quiet)  # on stderr, when it is a terminal
    step = first_step
    try:
        while step < last_step and not stop.requested:
            loss = train_step(model, optimizer, tokenizer.encode(docs[step % len(docs)]), step)
            progress.write(f"step {step + 1:4d} / {model.config.num_steps:4d} | loss {loss:.4f}")
            progress.update()
            step += 1
    finally:
        progress.close()
    return step


if __name__ == "__main__":
    sys.exit(main())
