"""Peak memory and time of a training script on a large generated names file.

    python scripts/peak_memory.py                    # 50 MB file, batched torch trainer, one step
    python scripts/peak_memory.py --size-mb 50 -- scripts/train_scalar.py --steps 1 --samples 0

Prints the file size, the script's peak resident memory (its own, read from the kernel
when it ends), the same for a tiny file (what torch and Python take whatever the data), and
the wall time to the end of the first step.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCHED = ["scripts/train_torch.py", "--mode", "batched", "--steps", "1", "--eval-every", "0", "--samples", "0",
           "--device", "cpu"]


def write_names_file(path, size_bytes: int, seed: int = 0) -> int:
    """A names file of about `size_bytes`: lowercase names of 2 to 12 letters, one a line,
    written a piece at a time; returns its size."""
    rng, letters = random.Random(seed), "abcdefghijklmnopqrstuvwxyz"
    with open(path, "w", encoding="utf-8") as file:
        written = 0
        while written < size_bytes:
            piece = "".join("".join(rng.choices(letters, k=rng.randint(2, 12))) + "\n" for _ in range(10_000))
            file.write(piece)
            written += len(piece)
    return Path(path).stat().st_size


def peak_rss(argv: list[str], data) -> tuple[float, float]:
    """(peak resident MiB, seconds) of `python argv... --data data`, run alone in a child;
    the peak is the child's own, as the kernel reports it when the child ends."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, *argv, "--data", str(data)], cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            err.seek(0)
            lines = err.read().strip().splitlines()
            raise RuntimeError(f"{argv[0]} failed: {lines[-1] if lines else child.returncode}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss in KiB on Linux


def measure(size_mb: float, argv: list[str], workdir) -> dict:
    """The figures for one script on a generated file of `size_mb` MB, against the same
    script on a tiny file (what Python, torch and the model take whatever the data)."""
    workdir = Path(workdir)
    tiny, big = workdir / "tiny.txt", workdir / "big.txt"
    tiny.write_text("emma\nolivia\nava\nisabella\n" * 10)
    size = write_names_file(big, int(size_mb * 1e6))
    base_mib, base_seconds = peak_rss(argv, tiny)
    peak_mib, seconds = peak_rss(argv, big)
    return {"file_mib": size / 2**20, "peak_rss_mib": peak_mib, "tiny_file_peak_rss_mib": base_mib,
            "data_mib": peak_mib - base_mib, "ratio_to_file": (peak_mib - base_mib) / (size / 2**20),
            "seconds": seconds, "tiny_file_seconds": base_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("script", nargs="*", help="the script and its flags (default: the batched trainer)")
    args = parser.parse_args(argv)
    figures = measure(args.size_mb, args.script or BATCHED, args.workdir)
    for key, value in figures.items():
        print(f"{key}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
