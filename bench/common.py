"""What every section uses: clocks, subprocess timing, the machine's description, the JSON file."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from microgpt_scalar.data import default_data_path, load_docs
from microgpt_scalar.files import FileError, claim_output, read_input, write_atomically

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SEED = 42  # the reference program's
MIB = 2**20


class CheckFailed(Exception):
    """A benchmark's correctness check failed; the message says where."""


@dataclass(frozen=True)
class Section:
    """One named part of the benchmark: its own flags, its run and its table."""

    name: str
    add_arguments: Callable  # (argparse parser) -> None
    run: Callable  # (args) -> dict of JSON-ready figures; raises CheckFailed, or ValueError on bad flags
    table: Callable  # (figures) -> str for stdout
    targets_missed: Callable = lambda figures: []  # (figures) -> the speed targets missed, named


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors too: one line, exit 2
        self.exit(2, f"error: {message}\n")


class Clock:
    """Wall-clock and CPU seconds since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def child_env(**extra) -> dict:
    """The environment for a child process: this one's, with the repository first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Finished:
    """A child process run to its end (or stopped), with what it cost."""

    command: list
    returncode: int
    wall_s: float
    max_rss_mib: float  # the child's own peak resident memory (its VmHWM, as last read)
    lines: list  # (seconds since the start, line) of stdout, as each line arrived
    stderr: str
    stopped: str | None = None  # why the child was killed: "timed out", "over N MiB"; None if it ended

    @property
    def stdout(self) -> str:
        return "".join(line for _, line in self.lines)

    def check(self) -> "Finished":
        """self, or CheckFailed naming the command and its last line of output."""
        if self.stopped or self.returncode != 0:
            said = (self.stderr.strip() or self.stdout.strip() or "(no output)").splitlines()[-1]
            how = self.stopped or f"exited with {self.returncode}"
            raise CheckFailed(f"`{' '.join(str(part) for part in self.command[1:])}` {how}: {said}")
        return self


def run_process(command: list, timeout: float | None = None, env: dict | None = None,
                rss_limit_mib: float | None = None) -> Finished:
    """Run `command` in the repository to its end and return what it printed and cost.

    The peak resident memory is read from /proc/PID/status (VmHWM) every millisecond while
    the child runs: os.wait4's ru_maxrss cannot be used, as Linux carries the parent's peak
    over a fork and an exec into the child's. Each stdout line keeps the moment it arrived.
    The child is killed after `timeout` seconds, or when its resident memory passes
    `rss_limit_mib` (read from /proc while it runs), so a runaway cannot take the machine.
    """
    clock = Clock()
    process = subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=REPO, env=env or child_env())
    lines, errors = [], []
    readers = [threading.Thread(target=lambda: lines.extend((clock.read()[0], line.decode(errors="replace"))
                                                            for line in process.stdout)),
               threading.Thread(target=lambda: errors.append(process.stderr.read().decode(errors="replace")))]
    for reader in readers:
        reader.start()
    stopped, peak_mib = None, 0.0
    while True:
        pid, status = os.waitpid(process.pid, os.WNOHANG)
        if pid:
            break
        rss_mib, hwm_mib = memory_mib(process.pid)
        peak_mib = max(peak_mib, hwm_mib)
        if timeout is not None and clock.read()[0] > timeout:
            stopped = f"timed out after {timeout:g} s"
        elif rss_limit_mib is not None and rss_mib > rss_limit_mib:
            stopped = f"stopped above {rss_limit_mib:g} MiB"
        if stopped:
            process.kill()
            _, status = os.waitpid(process.pid, 0)
            break
        time.sleep(0.001)
    wall = clock.read()[0]
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    process.stdout.close()
    process.stderr.close()
    return Finished(command, process.returncode, wall, peak_mib, lines, "".join(errors), stopped)


def memory_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a running process (Linux; zeros where /proc is not there)."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                fields[line[:5]] = int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def max_rss_mib() -> float:
    """This process's peak resident memory so far."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / MIB if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def read_docs(data: str | None) -> list[str]:
    """The documents of `data`, or of the file the scripts read when no --data is given."""
    return load_docs(data if data else default_data_path())


def default_data() -> str:
    """The path the scripts read when no --data is given."""
    return str(default_data_path())


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


def torch_start(docs: list[str], preset: str, seed: int, val_fraction: float = 0.1, **overrides):
    """The reference start on the torch side, and the held-out split of the shuffled
    documents: (config, params, train tokens, validation tokens, shuffled docs, tokenizer).
    (torch is imported here, not above: the compare section times `import torch` in fresh
    processes, and the scalar section needs none of it.)"""
    from microgpt_torch.train import reference_start, split_docs

    docs, tokenizer, config, params, _ = reference_start(docs, seed, preset, **overrides)
    train_docs, val_docs = split_docs(docs, val_fraction)
    train_tokens = [tokenizer.encode(doc) for doc in train_docs]
    val_tokens = [tokenizer.encode(doc) for doc in val_docs]
    return config, params, train_tokens, val_tokens, docs, tokenizer


def log_line(step: int, num_steps: int, loss: float) -> str:
    """The reference program's line for 0-based `step`."""
    return f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}"


def check_logs_identical(logs: dict) -> None:
    """Raise CheckFailed unless every log (name -> list of lines) has the first one's lines."""
    (first, reference), *others = logs.items()
    for name, log in others:
        if len(log) != len(reference):
            raise CheckFailed(f"{name} logged {len(log)} lines, {first} {len(reference)}")
        for i, (line, expected) in enumerate(zip(log, reference)):
            if line != expected:
                raise CheckFailed(f"{name}'s log differs from {first}'s at line {i + 1}: {line!r} != {expected!r}")


def machine(load_before: tuple) -> dict:
    """The machine a section ran on, and how busy it was (1, 5 and 15-minute load averages
    before and after the section: other processes slow the wall-clock figures down), and
    OMP_WAIT_POLICY as the environment set it (None: OpenMP's own default; how torch's
    threads wait between operations changes the timings of trainers that take turns)."""
    torch = sys.modules.get("torch")
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__ if torch else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(m: dict) -> str:
    before, after = (" ".join(f"{x:.2f}" for x in m[key]) for key in ("load_average_before", "load_average_after"))
    torch = f", torch {m['torch']}" if m["torch"] else ""
    torch += f", OMP_WAIT_POLICY={m['omp_wait_policy']}" if m.get("omp_wait_policy") else ""
    return (f"  (machine: {m['cpu_model']}, {m['cpu_count']} CPUs, Python {m['python']}{torch}; "
            f"load average {before} before, {after} after)")


def cpu_model() -> str | None:
    """The model name /proc/cpuinfo gives (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` through the project's one writer (microgpt_scalar.files): all or
    nothing, never over a link, device or directory, nor over another run's file."""
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"), "--out")


def claim_out(path) -> None:
    """Claim the --out file at the start, so a bad path fails before the benchmark runs."""
    claim_output(path, "--out", overwrite=True)  # the figures of sections not run are kept, merged in


def write_results(path: Path, new_sections: dict) -> None:
    """Merge the sections just run into the JSON file, keeping the others' figures (each
    section records the machine and date of its own run)."""
    try:
        sections = json.loads(read_input(path, "--out"))["sections"] if Path(path).exists() else {}
    except (FileError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, RecursionError):
        sections = {}  # not a file of this benchmark's: start afresh
    sections.update(new_sections)
    write_json(path, {"sections": sections})
