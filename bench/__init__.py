"""Benchmarks of microgpt-bridge, one module per section; `scripts/bench.py` runs them.

    python scripts/bench.py                       # every section, figures into docs/bench.json
    python scripts/bench.py --only compare scalar # some of them
    python -m bench.gpu_check                     # the one-command check for a CUDA machine

Sections:
  scalar      the scalar engines against the plain engine (`bench.plain`, the seeds' `Value`):
              one step in this process, and the whole 100-step job as separate processes
  torch       microgpt_torch on the CPU: the faithful run, batched throughput, a time-budgeted run
  race        the batched step against a nanoGPT-style trainer and the previous batched step, in turns
  compare     `scripts/compare_step.py` against a process that only imports torch
  contention  batched training with a busy process on the other core against a quiet machine
  memory      peak memory and time to the first step of each trainer and the checker on a large file
  kernels     torch operations dispatched and host time per batched step (for the GPU estimate)
  classroom   a class of 20 engines checked at once (certify --engines --jobs 2) against each alone

Timed figures are never asserted in tests: the targets are checked here, and recorded.
"""
