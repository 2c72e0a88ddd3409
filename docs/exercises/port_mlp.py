"""Exercise: port the MLP to torch and check it against the scalar code, with the same weights.

    python -m docs.exercises.port_mlp

`scalar_mlp` is the scalar model's MLP for one position. Write your own `torch_mlp` before
reading ours, then run this file: it gives both the same input and the same weights,
backpropagates the same weighted sum of the outputs through each, and compares the output
and the gradient of the input and of both weight matrices. Exit status 0 when they agree.
"""
import random
import sys

import torch
import torch.nn.functional as F

from microgpt_scalar.engine import Value
from microgpt_scalar.model import linear

N_EMBD = 16
TOLERANCE = 1e-12  # float64 on both sides: only the order of the sums differs (about 1e-16)


def scalar_mlp(x, fc1, fc2):
    """x: n_embd Values; fc1: [4 * n_embd][n_embd], fc2: [n_embd][4 * n_embd] rows of Values."""
    h = linear(x, fc1)  # (4 * n_embd,)
    h = [hi.relu() ** 2 for hi in h]
    return linear(h, fc2)  # (n_embd,)


def torch_mlp(x, fc1, fc2):
    """x: (n_embd,); fc1: (4 * n_embd, n_embd), fc2: (n_embd, 4 * n_embd), as nn.Linear stores them."""
    h = x @ fc1.T  # (4 * n_embd,)
    h = F.relu(h) ** 2
    return h @ fc2.T  # (n_embd,)


def random_rows(rng, n_out, n_in, std):
    return [[rng.gauss(0, std) for _ in range(n_in)] for _ in range(n_out)]


def compare(port, seed: int = 0) -> tuple[bool, list[str]]:
    """(agree, report lines) for `port` against scalar_mlp on weights drawn from `seed`."""
    rng = random.Random(seed)
    x_rows, fc1_rows, fc2_rows = random_rows(rng, 1, N_EMBD, 1.0)[0], \
        random_rows(rng, 4 * N_EMBD, N_EMBD, 0.3), random_rows(rng, N_EMBD, 4 * N_EMBD, 0.3)
    out_weights = [rng.gauss(0, 1) for _ in range(N_EMBD)]  # every output gets its own gradient

    x, fc1, fc2 = [Value(v) for v in x_rows], [[Value(v) for v in row] for row in fc1_rows], \
        [[Value(v) for v in row] for row in fc2_rows]
    out = scalar_mlp(x, fc1, fc2)
    sum(o * w for o, w in zip(out, out_weights)).backward()

    def leaf(rows):
        return torch.tensor(rows, dtype=torch.float64, requires_grad=True)

    tx, tfc1, tfc2 = leaf(x_rows), leaf(fc1_rows), leaf(fc2_rows)
    tout = port(tx, tfc1, tfc2)
    if tuple(tout.shape) != (N_EMBD,):
        return False, [f"DISAGREE: torch_mlp returned shape {tuple(tout.shape)}, expected ({N_EMBD},)"]
    (tout * torch.tensor(out_weights, dtype=torch.float64)).sum().backward()

    pairs = [("output", [o.data for o in out], tout.detach()), ("x.grad", [v.grad for v in x], tx.grad),
             ("fc1.grad", [[v.grad for v in row] for row in fc1], tfc1.grad),
             ("fc2.grad", [[v.grad for v in row] for row in fc2], tfc2.grad)]
    lines, agree = [], True
    for name, scalar, got in pairs:
        if got is None:
            lines.append(f"  {name:9} missing: no gradient reached it")
            agree = False
            continue
        diff = (torch.tensor(scalar, dtype=torch.float64) - got).abs().max().item()
        ok = diff <= TOLERANCE
        agree &= ok
        lines.append(f"  {name:9} {tuple(got.shape)!s:9} " + (f"max |diff| below {TOLERANCE:.0e}  ok" if ok
                                                            else f"max |diff| {diff:.2e}  DIFFERS"))
    verdict = "AGREE: torch_mlp matches the scalar MLP" if agree else "DISAGREE: torch_mlp does not match the scalar MLP"
    return agree, [verdict] + lines


def main() -> int:
    agree, lines = compare(torch_mlp)
    print("\n".join(lines))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
