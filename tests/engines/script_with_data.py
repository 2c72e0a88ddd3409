"""A whole training script in the shape of the original microgpt.py, with its data present:
it reads input.txt, builds its vocabulary and parameters, opens a log file, trains for 1,000
steps and samples names, all at import. Only the log file and the training and sampling
loops should be skipped (the loops for running past their time budget); the rest is
harmless and runs.

Expect: exit 0
"""
import math
import os
import random

random.seed(1337)
docs = [line.strip() for line in open("input.txt") if line.strip()] if os.path.exists("input.txt") else ["ada", "bo"]
random.shuffle(docs)
chars = sorted(set("".join(docs)))
BOS = len(chars)
vocab_size = len(chars) + 1
n_embd = 8


class Value:
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):
        return Value(self.data**other, (self,), (other * self.data**(other - 1),))

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other**-1
    def __rtruediv__(self, other): return other * self**-1

    def backward(self):
        topo, visited, stack = [], set(), [(self, False)]
        while stack:
            v, expanded = stack.pop()
            if expanded:
                topo.append(v)
            elif v not in visited:
                visited.add(v)
                stack.append((v, True))
                stack.extend((child, False) for child in v._children)
        self.grad = 1
        for v in reversed(topo):
            for child, local_grad in zip(v._children, v._local_grads):
                child.grad += local_grad * v.grad


wte = [[Value(random.gauss(0, 0.08)) for _ in range(n_embd)] for _ in range(vocab_size)]
lm_head = [[Value(random.gauss(0, 0.08)) for _ in range(n_embd)] for _ in range(vocab_size)]
params = [p for matrix in (wte, lm_head) for row in matrix for p in row]
log_file = open("losses.csv", "w")


def softmax(logits):
    top = max(v.data for v in logits)
    exps = [(v - top).exp() for v in logits]
    total = sum(exps)
    return [e / total for e in exps]


def forward(token):
    return softmax([sum(w * x for w, x in zip(row, wte[token])) for row in lm_head])


num_steps = 1000
for step in range(num_steps):
    doc = docs[step % len(docs)]
    tokens = [BOS] + [chars.index(ch) for ch in doc] + [BOS]
    losses = [-forward(a)[b].log() for a, b in zip(tokens, tokens[1:])]
    loss = (1 / len(losses)) * sum(losses)
    loss.backward()
    for p in params:
        p.data -= 0.01 * p.grad
        p.grad = 0
    print(f"step {step + 1:4d} / {num_steps:4d} | loss {loss.data:.4f}")

print("--- inference ---")
for sample in range(20):
    token, name = BOS, ""
    while len(name) < 16:
        probs = forward(token)
        token = random.choices(range(vocab_size), weights=[p.data for p in probs])[0]
        if token == BOS:
            break
        name += chars[token]
    print(f"sample {sample + 1:2d}: {name}")
