"""Freed memory kept in the process, so that batched training writes to pages it already has.

    keep_freed_memory()   # once, before training; True where it took effect (glibc)

A batched step allocates and frees the same tensors of a few MB every step (torch.compile's
buffers, autograd's saved tensors, the gradients). glibc's malloc serves blocks that large
with mmap and hands them back to the kernel when they are freed, or trims them off the top
of its heap, so the next step's tensors land on fresh pages, and the first write to each
4 KiB page traps into the kernel, which maps a zeroed page. Measured at batch 2,048 on one
thread of an AMD EPYC virtual machine: some 650 such page faults a step, and a compiled
elementwise kernel writing a new 4 MB tensor took 3.2 ms where, on pages already mapped, it
took 0.27 ms; the whole step ran 5% faster with the setting below.

The setting: blocks of up to 32 MiB (glibc's largest mmap threshold on 64-bit) come from
the heap, and the heap is trimmed only when more than 1 GiB is free at its top. The
process's peak memory is the same; what it frees stays mapped until it exits. Other C
libraries (macOS, musl, Windows) have no `mallopt`, and nothing changes there.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's limit on 64-bit (4 * 1024 * 1024 * sizeof(long))
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Make malloc keep freed blocks of up to 32 MiB mapped (see the module docstring); True
    if the C library took both settings, False where it has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
