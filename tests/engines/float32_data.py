"""A tuple-style engine whose numbers are numpy float32 scalars, as a learner gets by
writing np.float32 to save memory: every operation rounds to about 7 significant digits.

Expect: exit 1, cause precision
"""
import numpy as np


class Value:
    def __init__(self, data, children=(), local_grads=()):
        self.data = np.float32(data)
        self.grad = np.float32(0.0)
        self._children = children
        self._local_grads = local_grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (np.float32(1), np.float32(1)))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k):
        k = np.float32(k)
        return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))

    def exp(self):
        e = np.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(np.log(self.data), (self,), (np.float32(1) / self.data,))

    def relu(self):
        return Value(max(self.data, np.float32(0)), (self,), (np.float32(self.data > 0),))

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1

    def backward(self):
        topo, visited, stack = [], set(), [(self, False)]
        while stack:
            v, done = stack.pop()
            if done:
                topo.append(v)
            elif v not in visited:
                visited.add(v)
                stack.append((v, True))
                stack.extend((c, False) for c in v._children)
        self.grad = np.float32(1)
        for v in reversed(topo):
            for child, local in zip(v._children, v._local_grads):
                child.grad += local * v.grad
