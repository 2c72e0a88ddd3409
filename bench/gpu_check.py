"""The one command to run on the first machine with a CUDA GPU:

    python -m bench.gpu_check                 # or scripts/gpu_check.sh
    python -m bench.gpu_check --out my.json   # where the figures go (default docs/gpu_check.json)

Within about five minutes it runs, each as a process of its own with a time limit: the
CUDA-marked tests; `compare_step.py --device cuda`; the precision table (its CUDA rows:
TF32 off and on, bf16 autocast); a short data-parallel run on every GPU present (torchrun);
and batched-training throughput (tokens/s) in eager mode, compiled (`--compile-mode
default`) and with CUDA graphs (`--compile-mode reduce-overhead`) at a few batch sizes. It
writes one JSON file and prints a readable summary. A check that fails is reported and the
others still run; once the time budget is spent the rest are skipped, and say so.

Without CUDA it says so in one line and exits 0. Exit status otherwise: 0 when every check
passed, 1 when any failed or was skipped.
"""
from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

from microgpt_scalar.config import get_config

from .common import (REPO, SCRIPTS, Clock, OneLineParser, child_env, compare_step_command, default_data, read_docs,
                     run_process, write_json)

DEFAULT_OUT = REPO / "docs" / "gpu_check.json"
BUDGET_S = 300.0
THROUGHPUT_MODES = {  # mode -> the trainer's flags for it
    "eager": [],
    "compiled": ["--compile-mode", "default"],
    "cuda graphs": ["--compile-mode", "reduce-overhead"],
}
THROUGHPUT_BATCH_SIZES = (4096, 65536)
THROUGHPUT_STEPS, LOG_EVERY = 300, 50
STEP_LINE = re.compile(r"step\s+(\d+)\s*/")


def cuda_devices() -> list[str]:
    """Names of the CUDA devices torch sees (none on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def checks(data: str, num_gpus: int) -> list[tuple[str, list, float]]:
    """(name, command, time limit in seconds) of every check, in the order they run."""
    python = sys.executable
    torchrun = shutil.which("torchrun")
    ddp = [torchrun] if torchrun else [python, "-m", "torch.distributed.run"]
    found = [
        ("CUDA tests", [python, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider"], 90.0),
        ("compare_step --device cuda", compare_step_command("--device", "cuda"), 30.0),
        ("precision table", [python, SCRIPTS / "precision_table.py"], 45.0),
        (f"data parallel on {num_gpus} GPU(s)",
         [*ddp, "--nproc_per_node", str(num_gpus), SCRIPTS / "train_torch.py", "--mode", "batched",
          "--device", "cuda", "--data", data, "--batch-size", "256", "--steps", "50", "--eval-every", "50",
          "--samples", "0"], 60.0),
    ]
    for batch_size in THROUGHPUT_BATCH_SIZES:
        for mode, flags in THROUGHPUT_MODES.items():
            found.append((f"throughput, {mode}, batch {batch_size}", throughput_command(data, batch_size, flags), 45.0))
    return found


def throughput_command(data: str, batch_size: int, mode_flags: list) -> list:
    return [sys.executable, SCRIPTS / "train_torch.py", "--mode", "batched", "--device", "cuda", "--data", data,
            "--batch-size", str(batch_size), "--steps", str(THROUGHPUT_STEPS), "--log-every", str(LOG_EVERY),
            "--eval-every", "0", "--samples", "0", *mode_flags]


def steps_per_second(lines: list) -> float | None:
    """Steps per second between the first and the last progress line (compiling and
    capturing happen before the first), or None with fewer than two."""
    stamped = [(t, int(m.group(1))) for t, line in lines if (m := STEP_LINE.match(line))]
    if len(stamped) < 2 or stamped[-1][0] <= stamped[0][0]:
        return None
    (t0, first), (t1, last) = stamped[0], stamped[-1]
    return (last - first) / (t1 - t0)


def mean_targets_per_document(data: str, preset: str = "microgpt") -> float:
    """The mean non-padding targets of a training document: tokens per step = this x batch size."""
    config = get_config(preset)
    docs = read_docs(data)
    return sum(min(config.block_size, len(doc) + 1) for doc in docs) / len(docs)


def run_checks(data: str, num_gpus: int, budget_s: float) -> list[dict]:
    """Run every check within the budget; one result per check."""
    targets_per_doc, clock, results = mean_targets_per_document(data), Clock(), []
    for name, command, limit in checks(data, num_gpus):
        left = budget_s - clock.read()[0]
        if left < 5:
            results.append({"check": name, "status": "skipped", "why": "out of time"})
            continue
        done = run_process(command, timeout=min(limit, left), env=child_env(PYTHONUNBUFFERED="1"))
        result = {"check": name, "command": " ".join(str(part) for part in command), "wall_s": done.wall_s,
                  "status": "passed" if done.returncode == 0 and not done.stopped else "failed",
                  "output_tail": (done.stdout.strip().splitlines() or [""])[-12:],
                  "error": (done.stopped or (done.stderr.strip().splitlines() or [""])[-1]) if done.returncode else None}
        if name.startswith("throughput"):
            rate = steps_per_second(done.lines)
            batch_size = int(name.rsplit(" ", 1)[1])
            result["steps_per_s"] = rate
            result["tokens_per_s"] = rate * batch_size * targets_per_doc if rate else None
        results.append(result)
    return results


def summary(devices: list[str], results: list[dict], seconds: float) -> str:
    lines = [f"gpu_check: {len(devices)} CUDA device(s): {', '.join(devices)}; {seconds:.0f} s"]
    for r in results:
        figure = f"  {r['tokens_per_s']:,.0f} tokens/s" if r.get("tokens_per_s") else ""
        why = f"  ({r.get('error') or r.get('why')})" if r["status"] != "passed" else ""
        wall = f"{r['wall_s']:6.1f} s" if "wall_s" in r else "       -"
        lines.append(f"  {r['status']:<7} {wall}  {r['check']}{figure}{why}")
    failed = [r["check"] for r in results if r["status"] != "passed"]
    lines.append("every check passed" if not failed else f"{len(failed)} check(s) did not pass: {', '.join(failed)}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = OneLineParser(description="Check the CUDA paths and measure GPU throughput (about 5 minutes).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON figures (default docs/gpu_check.json)")
    parser.add_argument("--data", help="one document per line (default: the scripts' names file)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for every check together")
    args = parser.parse_args(argv)
    devices = cuda_devices()
    if not devices:
        import torch

        print(f"gpu_check: no CUDA device (torch {torch.__version__}): nothing to check")
        return 0
    data = args.data or default_data()
    clock = Clock()
    results = run_checks(data, len(devices), args.budget)
    seconds = clock.read()[0]
    write_json(args.out, {"devices": devices, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "seconds": seconds, "results": results})
    print(summary(devices, results, seconds))
    print(f"figures written to {args.out}")
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
