"""Train microgpt with PyTorch.

    python scripts/train_torch.py                       # faithful: the reference run, float64
    python scripts/train_torch.py --mode batched --batch-size 32 --save out/model.pt
    torchrun --nproc_per_node 2 scripts/train_torch.py --mode batched   # data parallel

Faithful mode starts from the scalar engine's initial weights for the seed, trains on one
document per step in the reference order and prints the reference program's lines.
Batched mode trains on shuffled, padded mini-batches with a held-out validation split.
Exit codes: 0 done, 1 the loss stopped being finite, 2 bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from microgpt_scalar.checkpoint import CheckpointError, check_config, check_save_path
from microgpt_scalar.config import PRESETS, add_config_flags, config_overrides, num_params
from microgpt_scalar.data import DataError, default_data_path, load_docs
from microgpt_torch.checkpoint import checkpoint_of, load_any_checkpoint, restore, save_checkpoint
from microgpt_torch.model import GPT
from microgpt_torch.optim import make_optimizer
from microgpt_torch.train import (NonFiniteLossError, batched_steps, check_finite_params, evaluate, faithful_steps,
                                  generate, reference_start, sample, split_docs)



class UsageError(ValueError):
    """A request this machine or this mode cannot serve; the message is one line."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("faithful", "batched"), default="faithful")
    parser.add_argument("--preset", choices=list(PRESETS), default="microgpt")
    add_config_flags(parser)  # --n-layer ..., and --steps for num_steps
    parser.add_argument("--data", default=None, help="names file (default: input.txt here, else names.txt, downloaded)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="default: float64 in faithful mode, float32 in batched mode")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 in faithful mode, whose tensors are tiny; torch's choice in batched mode)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, batched mode only)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch documents of one length together: less padding, more tokens per second "
                             "(batched; give it again on --resume to continue the same batch order)")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--eval-every", type=int, default=100, help="validation loss every N steps (batched)")
    parser.add_argument("--save", default=None, help="checkpoint file, written at the end")
    parser.add_argument("--save-every", type=int, default=0, help="also write the checkpoint every N steps")
    parser.add_argument("--resume", default=None, help="torch or scalar checkpoint to continue from")
    parser.add_argument("--samples", type=int, default=20, help="names to draw after training")
    parser.add_argument("--temperature", type=float, default=0.5)
    return parser.parse_args(argv)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine (try --device cpu)")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def check_args(args, device: torch.device, world_size: int) -> None:
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    for flag in ("batch_size", "samples", "eval_every", "save_every"):
        if getattr(args, flag) < (1 if flag == "batch_size" else 0):
            raise UsageError(f"--{flag.replace('_', '-')} must not be {getattr(args, flag)}")
    if args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    if args.bf16 and (device.type != "cuda" or args.mode != "batched" or args.dtype == "float64"):
        raise UsageError("--bf16 needs --device cuda, --mode batched and float32 weights")
    if args.group_by_length and args.mode != "batched":
        raise UsageError("--group-by-length needs --mode batched (faithful mode trains one document a step)")
    if world_size > 1 and args.mode != "batched":
        raise UsageError("faithful mode trains one document per step in one process; use --mode batched")
    if args.batch_size < world_size:
        raise UsageError(f"--batch-size {args.batch_size} is smaller than the {world_size} processes")
    if args.save:
        check_save_path(args.save)


def start(args, docs, device, dtype):
    """(docs, tokenizer, rng, model, optimizer, first step), fresh or resumed; rng is where
    the reference program's sampling continues it. The model runs torch's fused kernels."""
    overrides = config_overrides(args)
    docs, tokenizer, config, params, rng = reference_start(docs, args.seed, args.preset, **overrides)
    if args.resume is None:
        model = GPT.from_scalar_params(config, params, dtype=dtype, device=device, fused=True)
        return docs, tokenizer, rng, model, make_optimizer(model, config), 0
    checkpoint = load_any_checkpoint(args.resume, args.preset)
    check_config(checkpoint, **overrides)
    if checkpoint.chars != tokenizer.chars:
        raise CheckpointError(f"checkpoint {args.resume} has another vocabulary than the data file")
    if checkpoint.seed is not None and checkpoint.seed != args.seed:
        raise CheckpointError(f"checkpoint {args.resume} was trained with --seed {checkpoint.seed}, not {args.seed}")
    model, optimizer = restore(checkpoint, dtype=dtype, device=device, fused=True)
    return docs, tokenizer, rng, model, optimizer, checkpoint.step


def save(args, model, tokenizer, optimizer, step) -> None:
    """Stop on a weight at inf or nan (nothing after this point could use it: not a checkpoint,
    not sampling), then write the checkpoint if --save asks for one."""
    check_finite_params(model, step)
    if args.save:
        try:
            save_checkpoint(args.save, checkpoint_of(model, tokenizer.chars, optimizer, step, args.seed))
        except OSError as error:
            raise CheckpointError(f"could not save the checkpoint to {args.save}: {error.strerror}") from None


def run_faithful(args, docs, device, dtype) -> None:
    docs, tokenizer, rng, model, optimizer, first = start(args, docs, device, dtype)
    step_model = torch.compile(model) if args.compile else model
    num_steps = model.config.num_steps
    print(f"num docs: {len(docs)}")  # the scalar program's header and footer, so the two logs diff clean
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {num_params(model.config)}")
    for step, loss in faithful_steps(step_model, optimizer, docs, tokenizer, first):
        print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}", flush=True)
        if args.save_every and (step + 1) % args.save_every == 0:
            save(args, model, tokenizer, optimizer, step + 1)
    save(args, model, tokenizer, optimizer, num_steps)
    if args.samples:
        print("\n--- inference (new, hallucinated names) ---")
    for i in range(args.samples):
        print(f"sample {i + 1:2d}: {sample(model, tokenizer, rng, args.temperature)}")


def run_batched(args, docs, device, dtype, rank: int, world_size: int) -> None:
    docs, tokenizer, _, model, optimizer, first = start(args, docs, device, dtype)
    config = model.config
    train_docs, val_docs = split_docs(docs, args.val_fraction)
    if args.batch_size > len(train_docs):
        raise UsageError(f"--batch-size {args.batch_size} is more than the {len(train_docs)} training documents")
    train_tokens = [tokenizer.encode(doc) for doc in train_docs]
    val_tokens = [tokenizer.encode(doc) for doc in val_docs]
    step_model = model
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if args.compile:
        step_model = torch.compile(step_model)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    if rank == 0:
        print(f"num params: {num_params(config)} | train docs {len(train_docs)} | val docs {len(val_docs)}")
    steps = batched_steps(step_model, optimizer, train_tokens, args.batch_size,
                          torch.Generator().manual_seed(args.seed), first, rank, world_size, autocast_dtype,
                          args.group_by_length)
    progress = tqdm(steps, file=sys.stderr, disable=rank != 0, initial=first, total=config.num_steps, desc="train")
    for step, loss in progress:
        progress.set_postfix(loss=f"{loss:.4f}")
        done = step + 1
        if rank == 0 and args.eval_every and (done % args.eval_every == 0 or done == config.num_steps):
            val_loss = evaluate(model, val_tokens)
            tqdm.write(f"step {done:4d} / {config.num_steps:4d} | loss {loss:.4f} | val loss {val_loss:.4f}",
                       file=sys.stdout)
        if rank == 0 and args.save_every and done % args.save_every == 0:
            save(args, model, tokenizer, optimizer, done)
    if rank == 0:
        save(args, model, tokenizer, optimizer, config.num_steps)
        generator = torch.Generator().manual_seed(args.seed)
        for i, name in enumerate(generate(model, tokenizer, generator, args.temperature, args.samples)):
            print(f"sample {i + 1:2d}: {name}")


def main(argv=None) -> int:
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = pick_device(args.device, local_rank)
        check_args(args, device, world_size)
        docs = load_docs(args.data if args.data else default_data_path())
        dtype = getattr(torch, args.dtype or ("float64" if args.mode == "faithful" else "float32"))
        threads = args.threads or (1 if args.mode == "faithful" else None)
        if threads:
            torch.set_num_threads(threads)
        if world_size > 1:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if args.mode == "faithful":
            run_faithful(args, docs, device, dtype)
        else:
            run_batched(args, docs, device, dtype, rank, world_size)
    except NonFiniteLossError as error:
        if rank == 0:
            kept = f"; the last good checkpoint {args.save} is kept" if args.save and Path(args.save).exists() else ""
            print(f"error: {error}{kept}", file=sys.stderr)
        return 1
    except (DataError, CheckpointError, UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # torch failing mid-run (out of memory, an overflowing step size)
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
