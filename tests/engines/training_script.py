"""A whole training script in one file, as learners have it: no main guard. At import it
fetches its data, trains, writes a file and prints its log. The checker must run none of that.

Expect: exit 0
"""
import math
import os
import random
import urllib.request

random.seed(42)
if not os.path.exists("input.txt"):
    urllib.request.urlretrieve("https://example.invalid/names.txt", "input.txt")
docs = [line.strip() for line in open("input.txt") if line.strip()]
n_embd = 16
n_head = 4
head_dim = n_embd // n_head


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
        topo, visited = [], set()

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


params = [Value(random.gauss(0, 0.08)) for _ in range(100)]
for step in range(500):
    loss = sum(p * p for p in params)
    loss.backward()
    for p in params:
        p.data -= 0.01 * p.grad
        p.grad = 0
    print(f"step {step + 1:4d} / 500 | loss {loss.data:.4f}")
with open("trained.txt", "w") as f:
    f.write("done\n")
