"""A right engine written as a dataclass (eq=False, so nodes keep identity and stay
hashable), with its children and local gradients as fields made per node.

Expect: exit 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(eq=False)
class Value:
    data: float
    children: tuple = ()
    local_grads: tuple = ()
    grad: float = field(default=0.0)

    @classmethod
    def of(cls, x) -> Value:
        return x if isinstance(x, Value) else cls(x)

    def __add__(self, other) -> Value:
        other = Value.of(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other) -> Value:
        other = Value.of(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, k: float) -> Value:
        return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))

    def exp(self) -> Value:
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self) -> Value:
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def relu(self) -> Value:
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other) -> Value:
        return self + other

    def __sub__(self, other) -> Value:
        return self + -Value.of(other)

    def __rsub__(self, other) -> Value:
        return Value.of(other) + -self

    def __rmul__(self, other) -> Value:
        return self * other

    def __truediv__(self, other) -> Value:
        return self * Value.of(other) ** -1

    def __rtruediv__(self, other) -> Value:
        return Value.of(other) * self ** -1

    def backward(self) -> None:
        topo: list[Value] = []
        seen: set[int] = set()
        stack = [(self, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0 and id(node) in seen:
                continue
            seen.add(id(node))
            if i < len(node.children):
                stack.append((node, i + 1))
                stack.append((node.children[i], 0))
            else:
                topo.append(node)
        self.grad = 1.0
        for node in reversed(topo):
            for child, local in zip(node.children, node.local_grads):
                child.grad += local * node.grad
