"""Data-parallel training on this machine: `--processes N` starts N copies of the trainer
through torch's elastic launcher (what `torchrun --standalone --nproc-per-node N` runs), in
this process, and speaks for the group.

    python scripts/train_torch.py --processes 2 --mode batched --save run.pt

Every process runs the same command without --processes. Ctrl-C reaches this launcher, which
passes it on to each process once: every process stops after the same step, the first saves
it, and each exits 130, this launcher too, with one line saying what was saved. A process
that fails says why in its own line (exit 1 or 2, which this launcher repeats); one that dies
without a word (a signal) gets a line from here, and exit 1.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from microgpt_scalar.cli import int_from, print_error

# The processes leave their interrupt line to the launcher: one line for the group.
LAUNCHER_REPORTS = "MICROGPT_LAUNCHER_REPORTS"


def launched_by_the_group_launcher() -> bool:
    return os.environ.get(LAUNCHER_REPORTS) == "1"


def process_count(text: str) -> int:
    """--processes: from 1 to 4 per CPU core this process may use, or one per GPU."""
    import torch

    from microgpt_torch.device import available_cores

    return int_from(1, max(4 * available_cores(), torch.cuda.device_count()))(text)


def without_processes_flag(argv: list[str]) -> list[str]:
    """`argv` without `--processes N` (or `--processes=N`, or a prefix argparse accepted)."""
    kept, skip = [], False
    for arg in map(str, argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if len(name) > 3 and "--processes".startswith(name):
            skip = "=" not in arg
            continue
        kept.append(arg)
    return kept


def entry_point() -> list[str]:
    """How each process starts the trainer: the program this one runs (scripts/train_torch.py,
    or the installed microgpt-train), else the trainer's module."""
    program = getattr(sys.modules.get("__main__"), "__file__", None)
    if program and Path(program).is_file():
        return [str(Path(program).resolve())]
    return ["--module", "microgpt_torch.train_command"]


def run_group(processes: int, argv: list[str], save: str | None) -> int:
    """Train in `processes` processes on this machine, each on `argv` (no --processes);
    the exit code of the group: 0, 130 after Ctrl-C, or a failing process's."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    started = time.time()
    launcher_args = get_args_parser().parse_args(
        ["--standalone", "--nnodes", "1", "--nproc-per-node", str(processes), *entry_point(), *argv])
    environment = dict(os.environ)  # the processes inherit it; restored after, for a caller in this process
    os.environ[LAUNCHER_REPORTS] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for several processes, without its warning
    logging.disable(logging.CRITICAL)  # the elastic launcher's warnings and tracebacks: the one line is ours
    try:
        run(launcher_args)
    except (SignalException, KeyboardInterrupt):
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the processes have ended: the line below is all that is left
        print_error(f"interrupted; {what_was_saved(save, started)}")
        return 130
    except ChildFailedError as failed:
        return group_failure(failed.failures, processes, save, started)
    except Exception as error:  # the launcher's own failure (its rendezvous, starting a process)
        print_error(f"the launcher of {processes} processes failed: {first_line(error)}")
        return 1
    finally:
        logging.disable(logging.NOTSET)
        os.environ.clear()
        os.environ.update(environment)
    return 0


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def group_failure(failures: dict, processes: int, save: str | None, started: float) -> int:
    """The exit code for processes that failed, and a line unless a process gave its own."""
    codes = {rank: failure.exitcode for rank, failure in sorted(failures.items())}
    said = [code for code in codes.values() if code in (1, 2)]  # the trainer's exits: it printed why
    if said:
        return said[0]
    if all(code == 130 for code in codes.values()):
        print_error(f"interrupted; {what_was_saved(save, started)}")
        return 130
    # The first to fail, leaving out those the launcher itself stopped (SIGTERM) once one had
    rank = min(failures, key=lambda r: (codes[r] == -signal.SIGTERM, failures[r].timestamp, r))
    code = codes[rank]
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    print_error(f"process {rank} of {processes} ended with {how}; {what_was_saved(save, started)}")
    return 1


def what_was_saved(save: str | None, started: float) -> str:
    """What the group left in --save: the checkpoint written since `started`, with its step."""
    if not save:
        return "nothing saved (no --save)"
    try:
        if os.stat(save).st_mtime < started:
            return "nothing saved"
        from microgpt_torch.checkpoint import load_any_checkpoint

        step = load_any_checkpoint(save).step
    except OSError:
        return "nothing saved"
    except (ValueError, RuntimeError) as error:  # CheckpointError and what torch.load raises
        return f"{save} does not load: {error}"
    return f"checkpoint of step {step} saved to {save}"
