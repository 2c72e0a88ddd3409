"""The benchmark's baseline: the seeds' `Value`, exactly as the reference program has it, and
the reference program's job on it as a process of its own.

    python -m bench.plain --data names.txt --steps 100     # prints what train_scalar.py prints

`PlainValue` is the seeds' class line for line: the recursive topological sort, and
nothing done about memory or the garbage collector (the nested `build_topo` refers to
itself, a cycle that keeps the walk's list of every node alive until the collector comes
across it). `PlainLoop` is the reference program's loop body. The model is the project's
(`microgpt_scalar.model`), which builds the reference graph from any class with this
interface, so the benchmark measures the engines and nothing else.
"""
from __future__ import annotations

import argparse
import math
import sys

from microgpt_scalar.cli import inference_header

from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.model import softmax
from microgpt_scalar.optim import learning_rate_at
from microgpt_scalar.train import forward_loss, start_run

from .common import SEED, log_line


class PlainValue:
    __slots__ = ('data', 'grad', '_children', '_local_grads')

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        return PlainValue(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return PlainValue(self.data**other, (self,), (other * self.data**(other-1),))

    def log(self):
        return PlainValue(math.log(self.data), (self,), (1/self.data,))

    def exp(self):
        return PlainValue(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return PlainValue(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other**-1
    def __rtruediv__(self, other): return other * self**-1

    def backward(self):
        topo = []
        visited = set()
        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._children:
                    build_topo(child)
                topo.append(v)
        build_topo(self)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


class PlainLoop:
    """The reference program's loop body: forward, backward, Adam; no `graph_scope`.

    The reference runs its loop at module level, so `loss` is a global: each step's graph
    stays alive until the next step's forward pass is done and `loss` is rebound.
    """

    def __init__(self):
        self.loss = None

    def __call__(self, model, optimizer, tokens, step):
        loss = forward_loss(model, tokens)
        self.loss = loss  # only now does the previous step's graph go
        loss.backward()
        optimizer.step(learning_rate_at(step, model.config), step)
        return loss.data


def plain_sample(model, tokenizer, rng, temperature: float) -> str:
    """The reference program's sampling loop, on the plain engine."""
    keys, values = model.empty_cache()
    token_id, out = tokenizer.BOS, []
    for pos_id in range(model.config.block_size):
        logits = model.forward(token_id, pos_id, keys, values)
        probs = softmax([logit / temperature for logit in logits])
        token_id = rng.choices(range(tokenizer.vocab_size), weights=[p.data for p in probs])[0]
        if token_id == tokenizer.BOS:
            break
        out.append(token_id)
    return tokenizer.decode(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="the reference program's job on the plain engine")
    parser.add_argument("--data", required=True, help="one document per line")
    parser.add_argument("--preset", default="microgpt")
    parser.add_argument("--steps", type=int, required=True, help="the run's length (num_steps)")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args(argv)
    docs = load_docs(args.data)
    config = get_config(args.preset, num_steps=args.steps)
    docs, tokenizer, model, optimizer, rng = start_run(docs, config, SEED, PlainValue)
    print(f"num docs: {len(docs)}")
    print(f"vocab size: {tokenizer.vocab_size}")
    print(f"num params: {len(model.parameters())}")
    step_fn = PlainLoop()
    for step in range(args.steps):
        loss = step_fn(model, optimizer, tokenizer.encode(docs[step % len(docs)]), step)
        print(log_line(step, args.steps, loss))
    if args.samples:
        print(f"\n{inference_header(args.preset)}")
    for i in range(args.samples):
        print(f"sample {i + 1:2d}: {plain_sample(model, tokenizer, rng, 0.5)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
