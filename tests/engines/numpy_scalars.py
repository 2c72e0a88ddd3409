"""A correct engine whose numbers are numpy float64 scalars, with numpy's exp and log.

Expect: exit 0
"""
import numpy as np


class Value:
    def __init__(self, data, _children=(), _grads=()):
        self.data = np.float64(data)
        self.grad = np.float64(0.0)
        self._children = _children
        self._grads = _grads

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k):
        return Value(self.data**k, (self,), (k * self.data ** (k - 1),))

    def exp(self):
        e = np.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(np.log(self.data), (self,), (1.0 / self.data,))

    def relu(self):
        return Value(np.maximum(self.data, 0.0), (self,), (np.float64(self.data > 0),))

    def __neg__(self):
        return self * -1.0

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return self**-1 * other

    def backward(self):
        order, visited, stack = [], {self}, [(self, iter(self._children))]
        while stack:  # depth-first without recursion: a node after all its children
            node, children = stack[-1]
            child = next((c for c in children if c not in visited), None)
            if child is None:
                stack.pop()
                order.append(node)
            else:
                visited.add(child)
                stack.append((child, iter(child._children)))
        self.grad = np.float64(1.0)
        for node in reversed(order):
            for child, g in zip(node._children, node._grads):
                child.grad += g * node.grad
