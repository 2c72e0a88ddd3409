"""A witness that needs no torch: central finite differences of the scalar engine's own loss.

    d loss / d p  ~  (loss(p + h) - loss(p - h)) / 2h

The error of that estimate is about h ** 2 / 6 * (third derivative), from the truncated
Taylor series, plus about |loss| * 1e-16 / h from rounding the two losses. Measured on the
built-in documents with dense weights, 36 gradients (4 per tensor, magnitudes 2e-8 .. 0.04)
against torch's float64 autograd, the worst absolute error of the estimate was
    h = 1e-3: 2.3e-6   h = 1e-4: 2.4e-8   h = 1e-5: 2.3e-10   h = 1e-6: 5.3e-10   h = 1e-7: 5e-9
so h = 1e-5 sits at the bottom of the U. Its error is absolute, not relative (2.3e-10 on a
gradient of 0.04, and up to 0.1% on gradients near 1e-7): compare.tolerances.FD_TOLERANCE.

Only the estimates are made here, in the engine's process; they are judged against the
engine's gradients by the checker (compare.fd_check).
"""
from __future__ import annotations

import itertools
import random

from .protocol import FiniteDiffs

STEP_SIZE = 1e-5


def sample_entries(shapes: dict, k: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """k entries, from one tensor after another in turn (so every tensor is checked once k
    reaches the number of tensors), each chosen at random within its tensor. The engine's
    own gradients play no part in the choice: a gradient it wrongly leaves at 0 can be drawn."""
    pools = []
    for name, (n_out, n_in) in shapes.items():
        pool = [(name, r, c) for r in range(n_out) for c in range(n_in)]
        rng.shuffle(pool)
        pools.append(pool)
    in_turn = [entry for group in itertools.zip_longest(*pools) for entry in group if entry is not None]
    return in_turn[:k]


def finite_differences(side, batch, k: int, seed: int) -> FiniteDiffs:
    """Central differences of the side's loss on `batch` at its current parameters, for k
    entries drawn with `seed`: the estimates alone, each {"name", "index", "estimate"}."""
    entries = []
    shapes = {name: (len(rows), len(rows[0])) for name, rows in side.model.state_dict.items()}
    for name, r, c in sample_entries(shapes, k, random.Random(seed)):
        p = side.model.state_dict[name][r][c]
        original = p.data
        p.data = original + STEP_SIZE
        loss_up = side.loss(batch)
        p.data = original - STEP_SIZE
        loss_down = side.loss(batch)
        p.data = original
        entries.append({"name": name, "index": [r, c], "estimate": (loss_up - loss_down) / (2 * STEP_SIZE)})
    return FiniteDiffs(STEP_SIZE, entries)
