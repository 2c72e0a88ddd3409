"""Train microgpt with PyTorch.

    python scripts/train_torch.py                       # faithful: the reference run, float64
    python scripts/train_torch.py --mode batched --batch-size 32 --save out/model.pt
    python scripts/train_torch.py --processes 2 --mode batched          # data parallel, 2 processes
    python scripts/train_torch.py --mode batched --batch-size 2048 --compile-mode reduce-overhead --log-every 100
    python scripts/train_torch.py --mode batched --steps 1000 --save run.pt --device cuda:1
    python scripts/train_torch.py --mode batched --steps 2000 --resume run.pt --save run.pt
    microgpt-train --steps 2 -q                         # installed: the same command (microgpt-train scalar: the scalar one)

Faithful mode starts from the scalar engine's initial weights for the seed, trains on one
document per step in the reference order and prints the reference program's lines.
Batched mode trains on shuffled, padded mini-batches with a held-out validation split; the
documents are moved to the device once and each batch is gathered there.
The documents are the names file shipped with the package unless --data names another.

Exit codes: 0 done; 1 the loss stopped being finite (or torch failed mid-run); 2 bad input
or a checkpoint that cannot be written, with a one-line error (a device this machine does not
have among them); 130 Ctrl-C, which finishes the step and saves the checkpoint --save names
(under --processes N every process stops after the same step, the first saves, and each exits
130, the launcher too, with one line; torchrun --nproc_per_node N runs the same processes, but
its launcher exits 1 with torch's traceback). The --save file is claimed at the start: a
second run aiming at it is refused.

OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE, unless the environment sets it):
a thread spinning while it waits takes a core another process may need, and training on
two threads then slows down many times over whenever the other core is busy. In batched
mode, memory the steps free stays in the process (microgpt_torch/allocator.py), so each
step writes to pages the last one used instead of faulting in fresh ones.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

WAIT_POLICY_CHOSEN = "OMP_WAIT_POLICY" not in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch loads OpenMP

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402

from microgpt_scalar.checkpoint import CheckpointError, check_config  # noqa: E402
from microgpt_scalar.cli import (MAX_BATCH, MAX_STEPS, OneLineParser, StopOnInterrupt, UsageError,  # noqa: E402
                                 add_config_flags, add_data_flag, add_quiet_flag, check_fits_in_memory,
                                 check_same_run, command, config_overrides, data_path, file_sha256, fraction,
                                 inference_header, int_from, print_error, sample_count, seed_number, temperature)
from microgpt_scalar.config import PRESETS, get_config, num_params  # noqa: E402
from microgpt_scalar.data import Corpus, DataError  # noqa: E402
from microgpt_scalar.files import FileError, claim_output  # noqa: E402
from microgpt_torch.allocator import keep_freed_memory  # noqa: E402
from microgpt_torch.checkpoint import checkpoint_of, load_any_checkpoint, restore, save_checkpoint  # noqa: E402
from microgpt_torch.device import (ONE_THREAD_BELOW_ROWS, any_process, cpu_threads,  # noqa: E402
                                   cpu_threads_for_batches, init_distributed, pick_device)
from microgpt_torch.device_names import DEVICE_NAMES  # noqa: E402
from microgpt_torch.launch import launched_by_the_group_launcher, process_count, run_group, without_processes_flag  # noqa: E402,E501
from microgpt_torch.fast import BatchedGPT, FusedGPT  # noqa: E402
from microgpt_torch.optim import make_graph_ready, make_optimizer  # noqa: E402
from microgpt_torch.shared_memory import SharedMemoryGroup, usable_for  # noqa: E402
from microgpt_torch.train import (NonFiniteLossError, PackedDocuments, batched_steps, check_finite_params,  # noqa: E402
                                  evaluate, faithful_steps, generate, loss_value, reference_start, sample,
                                  split_docs)


class Refused(Exception):
    """Another process of the group refused the run and said why; this one says nothing more."""


class Interrupted(Exception):
    """Ctrl-C stopped training after `step` steps; the checkpoint, if any, is saved."""

    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__)
    parser.add_argument("--mode", choices=("faithful", "batched"), default="faithful")
    parser.add_argument("--preset", choices=list(PRESETS), default="microgpt")
    add_config_flags(parser)  # --n-layer ..., and --steps for num_steps
    add_data_flag(parser)
    parser.add_argument("--seed", type=seed_number, default=42)
    parser.add_argument("--device", default="auto",
                        help=f"{DEVICE_NAMES}; auto: CUDA if there is one, except for faithful mode and float64 runs "
                             f"(CPU)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="default: float64 in faithful mode, float32 in batched mode")
    parser.add_argument("--threads", type=cpu_threads, default=None,
                        help="torch CPU threads (default: 1 in faithful mode, whose tensors are tiny; in batched mode one "
                             f"per core idle at the start); a batched step of fewer than "
                             f"{ONE_THREAD_BELOW_ROWS['cpu']:,} rows on the CPU runs on one")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune"), default=None,
                        help="torch.compile mode (implies --compile); reduce-overhead replays each step as CUDA "
                             "graphs: batches padded to block_size, Adam capturable with its rate on the device")
    parser.add_argument("--log-every", type=int_from(1, MAX_STEPS), default=1,
                        help="read the loss back from the device every N steps (batched), and at evaluations, "
                             "checkpoints and the end; the loss is checked finite at these read-backs only, so a "
                             "run may go up to N - 1 steps past a non-finite loss before it stops")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (CUDA, batched mode only)")
    parser.add_argument("--batch-size", type=int_from(1, MAX_BATCH), default=32)
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch documents of one length together: less padding, more tokens per second "
                             "(batched; give it again on --resume to continue the same batch order)")
    parser.add_argument("--val-fraction", type=fraction, default=0.1)
    parser.add_argument("--eval-every", type=int_from(0, MAX_STEPS), default=100,
                        help="validation loss every N steps (batched)")
    parser.add_argument("--save", default=None, help="checkpoint file, written at the end (and on Ctrl-C)")
    parser.add_argument("--save-every", type=int_from(0, MAX_STEPS), default=0, help="also write the checkpoint every N steps")
    parser.add_argument("--overwrite", action="store_true",
                        help="let --save replace an existing file that is not the --resume checkpoint")
    parser.add_argument("--resume", default=None, help="torch or scalar checkpoint to continue from")
    parser.add_argument("--samples", type=sample_count, default=20, help="names to draw after training")
    parser.add_argument("--temperature", type=temperature, default=0.5)
    parser.add_argument("--processes", type=process_count, default=1,
                        help="data parallel: train in N processes on this machine (batched mode; one GPU each "
                             "with CUDA), started through torch's elastic launcher as torchrun would; at most "
                             "4 per CPU core or one per GPU")
    add_quiet_flag(parser, "the log on stdout is unchanged")
    return parser.parse_args(argv)


def check_args(args, device: torch.device, world_size: int) -> None:
    if args.bf16 and (device.type != "cuda" or args.mode != "batched" or args.dtype == "float64"):
        raise UsageError("--bf16 needs --device cuda, --mode batched and float32 weights")
    if args.group_by_length and args.mode != "batched":
        raise UsageError("--group-by-length needs --mode batched (faithful mode trains one document a step)")
    if world_size > 1 and args.mode != "batched":
        raise UsageError("faithful mode trains one document per step in one process; use --mode batched")
    if args.batch_size < world_size:
        raise UsageError(f"--batch-size {args.batch_size} is smaller than the {world_size} processes")
    if world_size == 1:
        claim_save(args)


def claim_save(args) -> None:
    """Claim the --save file for this run (the process that writes it, before any work)."""
    claim_output(args.save, "--save", inputs=[data_path(args.data)], may_replace=[args.resume],
                 overwrite=args.overwrite)


def claim_save_in_group(args, rank: int, device) -> None:
    """Under torchrun: the first process claims the --save file, and every process learns
    whether it could (so all stop together, and only the first says why)."""
    refusal = None
    if rank == 0:
        try:
            claim_save(args)
        except FileError as error:
            refusal = error
    if any_process(refusal is not None, device):
        raise refusal if refusal is not None else Refused()


def check_model_fits(args, config, dtype: torch.dtype) -> None:
    """The run's weights, gradients and Adam moments, and in batched mode one batch's logits
    and residual streams, must fit in memory (a lower bound of what the run takes)."""
    size = torch.finfo(dtype).bits // 8
    needed = 4 * num_params(config) * size
    flags = "--n-layer, --n-embd, --block-size"
    if args.mode == "batched":
        tokens = args.batch_size * config.block_size
        needed += tokens * (config.vocab_size + 2 * config.n_layer * config.n_embd) * size
        flags += ", --batch-size"
    check_fits_in_memory(needed, f"a {args.mode} run of {num_params(config):,} parameters ({flags})")


def run_settings(args, dtype: torch.dtype) -> dict:
    """What a checkpoint records of the run, beyond its config and seed, for --resume to check."""
    settings = {"data_sha256": file_sha256(args.data), "mode": args.mode,
                "dtype": str(dtype).removeprefix("torch.")}
    if args.mode == "batched":
        settings.update(batch_size=args.batch_size, val_fraction=args.val_fraction,
                        group_by_length=args.group_by_length)
    return settings


def start(args, docs, device, dtype):
    """(docs, tokenizer, rng, model, optimizer, first step), fresh or resumed; rng is where
    the reference program's sampling continues it. The model is a FusedGPT, on torch's fused
    kernels (in batched mode a BatchedGPT, on the batched kernels)."""
    overrides = config_overrides(args)
    size_check = get_config(args.preset, **overrides)
    check_model_fits(args, dataclasses.replace(size_check, vocab_size=len(docs.chars) + 1), dtype)
    model_class = BatchedGPT if args.mode == "batched" else FusedGPT
    docs, tokenizer, config, params, rng = reference_start(docs, args.seed, args.preset, **overrides)
    if args.resume is None:
        model = model_class.from_scalar_params(config, params, dtype=dtype, device=device)
        return docs, tokenizer, rng, model, make_optimizer(model, config), 0
    checkpoint = load_any_checkpoint(args.resume, args.preset)
    check_config(checkpoint, **overrides)
    if checkpoint.chars != tokenizer.chars:
        raise CheckpointError(f"checkpoint {args.resume} has another vocabulary than the data file")
    if checkpoint.seed is not None and checkpoint.seed != args.seed:
        raise CheckpointError(f"checkpoint {args.resume} was trained with --seed {checkpoint.seed}, not {args.seed}")
    check_same_run(checkpoint.run, args.run, args.resume)
    model, optimizer = restore(checkpoint, dtype=dtype, device=device, model_class=model_class)
    return docs, tokenizer, rng, model, optimizer, checkpoint.step


def save(args, model, tokenizer, optimizer, step, rank: int = 0) -> None:
    """Stop on a weight at inf or nan (nothing after this point could use it: not a checkpoint,
    not sampling), then write the checkpoint if --save asks for one. Every process calls it,
    so all stop together; the first writes."""
    check_finite_params(model, step)
    if args.save and rank == 0:
        save_checkpoint(args.save, checkpoint_of(model, tokenizer.chars, optimizer, step, args.seed, args.run))


def run_faithful(args, docs, device, dtype) -> None:
    docs, tokenizer, rng, model, optimizer, first = start(args, docs, device, dtype)
    if not args.quiet:
        print(thread_policy(args), file=sys.stderr)
    step_model = torch.compile(model, mode=compile_mode(args)) if args.compile else model
    num_steps = model.config.num_steps
    print(f"num docs: {len(docs)}")  # the scalar program's header and footer, so the two logs diff clean
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {num_params(model.config)}")
    with StopOnInterrupt() as stop:
        for step, loss in faithful_steps(step_model, optimizer, docs, tokenizer, first):
            print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}", flush=True)
            if stop.requested and step + 1 < num_steps:
                save(args, model, tokenizer, optimizer, step + 1)
                raise Interrupted(step + 1)
            if args.save_every and (step + 1) % args.save_every == 0:
                save(args, model, tokenizer, optimizer, step + 1)
    save(args, model, tokenizer, optimizer, num_steps)
    if args.samples:
        print(f"\n{inference_header(model.config.preset)}")
    for i in range(args.samples):
        print(f"sample {i + 1:2d}: {sample(model, tokenizer, rng, args.temperature)}")


def compile_mode(args):
    return None if args.compile_mode in (None, "default") else args.compile_mode


def run_batched(args, docs, device, dtype, rank: int, world_size: int) -> None:
    keep_freed_memory()
    docs, tokenizer, _, model, optimizer, first = start(args, docs, device, dtype)
    config = model.config
    packed = PackedDocuments.of_corpus(docs, config.block_size, device)  # on the device, once
    del docs  # its document order: the packed copy is all training needs
    train, val = split_docs(packed, args.val_fraction)
    if rank == 0 and not args.quiet:
        print(thread_policy(args), file=sys.stderr)
    if args.group_by_length and args.batch_size > len(train):
        raise UsageError(f"--group-by-length needs --batch-size at most the {len(train)} training documents")
    step_model, shared = model, None
    if world_size > 1 and usable_for(device):  # processes on this machine's CPU: gradients in shared memory
        shared = SharedMemoryGroup.for_model(model)
    elif world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    graphs = args.compile_mode == "reduce-overhead"
    if args.compile:
        step_model = torch.compile(step_model, mode=compile_mode(args))
    if graphs:
        make_graph_ready(optimizer)
        optimizer.step = torch.compile(optimizer.step, mode=compile_mode(args))
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    if rank == 0:
        print(f"num params: {num_params(config)} | train docs {len(train)} | val docs {len(val)}")
        if args.batch_size > len(train):
            print(f"batch size {args.batch_size} is more than the {len(train)} training documents: "
                  f"each batch draws its documents at random, with replacement")
    steps = batched_steps(step_model, optimizer, train, args.batch_size, torch.Generator().manual_seed(args.seed),
                          first, rank, world_size, autocast_dtype, args.group_by_length,
                          check_each_step=args.log_every == 1, fixed_width=graphs, shared=shared)
    progress = tqdm(steps, file=sys.stderr, disable=True if rank != 0 or args.quiet else None,  # None: a terminal only
                    initial=first, total=config.num_steps, desc="train")
    with StopOnInterrupt(repeats_interrupt=world_size == 1) as stop:
        if shared:
            shared.vote = lambda: stop.requested  # said at each step's meeting, where the gradients meet
        for step, loss in progress:
            done = step + 1
            evaluating = args.eval_every and (done % args.eval_every == 0 or done == config.num_steps)
            saving = args.save_every and done % args.save_every == 0
            if done % args.log_every == 0 or evaluating or saving or done == config.num_steps:
                loss = loss_value(loss, step)  # the same in every process, so all stop together
                progress.set_postfix(loss=f"{loss:.4f}")
            if rank == 0 and evaluating:
                val_loss = evaluate(model, val)
                tqdm.write(f"step {done:4d} / {config.num_steps:4d} | loss {loss:.4f} | val loss {val_loss:.4f}",
                           file=sys.stdout)
            # The same in every process: the vote of this step's meeting, or one of its own.
            stopping = shared.stop_voted if shared else any_process(stop.requested, device)
            if stopping and done < config.num_steps:  # every process stops after the same step
                progress.close()
                save(args, model, tokenizer, optimizer, done, rank)
                raise Interrupted(done)
            if saving:
                save(args, model, tokenizer, optimizer, done, rank)
    save(args, model, tokenizer, optimizer, config.num_steps, rank)
    if rank == 0:
        generator = torch.Generator().manual_seed(args.seed)
        for i, name in enumerate(generate(model, tokenizer, generator, args.temperature, args.samples)):
            print(f"sample {i + 1:2d}: {name}")


@command
def main(argv=None) -> int:
    args = parse_args(argv)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        args.compile = args.compile or args.compile_mode is not None
        dtype = getattr(torch, args.dtype or ("float64" if args.mode == "faithful" else "float32"))
        if args.processes > 1 and world_size > 1:
            raise UsageError("--processes starts its own processes: leave it out under torchrun")
        last_rank = max(local_rank, args.processes - 1)  # with --processes, the last process's GPU must exist
        device = pick_device(args.device, last_rank, keep_on_cpu=args.mode == "faithful" or dtype == torch.float64)
        check_args(args, device, max(world_size, args.processes))
        docs = Corpus.from_file(args.data)  # compact: ids, not strings
        if args.processes > 1:  # checked here once, then every process checks again for itself
            return run_group(args.processes, without_processes_flag(sys.argv[1:] if argv is None else argv),
                             args.save)
        args.run = run_settings(args, dtype)
        args.threads_why = "--threads" if args.threads else "faithful mode: tiny tensors, one document a step"
        threads = args.threads or (1 if args.mode == "faithful" else None)
        if threads is None and device.type == "cpu":
            threads, args.threads_why = cpu_threads_for_batches()
        if threads:
            torch.set_num_threads(threads)
        if world_size > 1:
            init_distributed(device)
            claim_save_in_group(args, rank, device)
        if args.mode == "faithful":
            run_faithful(args, docs, device, dtype)
        else:
            run_batched(args, docs, device, dtype, rank, world_size)
    except Interrupted as stopped:
        if rank == 0 and not launched_by_the_group_launcher():  # else the launcher says it for the group
            saved = f"checkpoint of step {stopped.step} saved to {args.save}" if args.save else "nothing saved (no --save)"
            print_error(f"interrupted after step {stopped.step}; {saved}")
        return 130
    except KeyboardInterrupt:
        if world_size > 1:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # torchrun passes the same Ctrl-C on once more
        if rank == 0 and not launched_by_the_group_launcher():
            print_error("interrupted; nothing saved")
        return 130
    except Refused:
        return 2
    except NonFiniteLossError as error:
        if rank == 0:
            kept = f"; the last good checkpoint {args.save} is kept" if args.save and Path(args.save).exists() else ""
            print_error(f"{error}{kept}")
        return 1
    except (DataError, CheckpointError, UsageError, ValueError) as error:
        print_error(error)
        return 2
    except RuntimeError as error:  # torch failing mid-run (out of memory, an overflowing step size)
        print_error(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def thread_policy(args) -> str:
    """One line saying how torch uses the CPU's threads in this run, and why."""
    policy = os.environ["OMP_WAIT_POLICY"]
    why = "waiting threads sleep, so a busy core elsewhere does not stall them" if policy.upper() == "PASSIVE" \
        else "as the environment sets it"
    source = "" if WAIT_POLICY_CHOSEN else " (from the environment)"
    count = torch.get_num_threads()
    return (f"threads: {count} torch thread{'s' * (count != 1)} ({getattr(args, 'threads_why', 'torch default')}), "
            f"OMP_WAIT_POLICY={policy}{source}: {why}")


if __name__ == "__main__":
    sys.exit(main())
