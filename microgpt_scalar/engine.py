"""A scalar autograd engine: every number is a `Value` that remembers how it was made.

Each operation records its children and the local gradient with respect to each child;
`backward` walks the graph from the output and applies the chain rule,
`child.grad += local_grad * node.grad`.

    a, b = Value(2.0), Value(-3.0)
    f = (a * b + 10.0).relu()
    f.backward()  # a.grad == -3.0, b.grad == 2.0
"""
from __future__ import annotations

import math


class Value:
    __slots__ = ("data", "grad", "_children", "_local_grads")

    def __init__(self, data, children=(), local_grads=()):
        self.data = data  # the scalar this node holds
        self.grad = 0  # d(output) / d(this node), filled in by backward()
        self._children = children  # the Values this one was computed from
        self._local_grads = local_grads  # d(this node) / d(child), one per child

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1, 1))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, other):  # a constant exponent only
        return Value(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        return Value(math.exp(self.data), (self,), (math.exp(self.data),))

    def relu(self):
        return Value(max(0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self):
        return self * -1

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return other + (-self)

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * other**-1

    def __rtruediv__(self, other):
        return other * self**-1

    def __repr__(self):
        return f"Value(data={self.data}, grad={self.grad})"

    def backward(self):
        """Fill in `.grad` of every node this one depends on (adding to what is there)."""
        self.grad = 1
        for node in reversed(topological_order(self)):
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * node.grad


def topological_order(root: Value) -> list:
    """Every node under `root`, children before parents, in the order of the recursive
    depth-first search `build_topo` (visit each child in turn, then append the node).

    Written with an explicit stack so that a deep graph cannot overflow Python's recursion
    limit; the order is the recursive one exactly, which keeps gradients bit-identical
    (floating-point sums depend on the order of their terms).
    """
    topo, visited = [], {root}
    stack = [(root, iter(root._children))]
    while stack:
        node, children = stack[-1]
        for child in children:
            if child not in visited:
                visited.add(child)
                stack.append((child, iter(child._children)))
                break
        else:  # every child is done: the node follows them
            stack.pop()
            topo.append(node)
    return topo
