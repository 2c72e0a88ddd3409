"""A right engine whose class body holds only the data: every operator is attached after the
class by a helper that registers (forward, local gradients) pairs, and backward is a
function of the module, attached last.

Expect: exit 0
"""
import math


class Value:
    __slots__ = ("data", "grad", "parents", "locals")

    def __init__(self, data, parents=(), locals_=()):
        self.data, self.grad, self.parents, self.locals = data, 0.0, parents, locals_


def _lift(x):
    return x if isinstance(x, Value) else Value(x)


def unary(name, forward, derivative):
    def method(self):
        return Value(forward(self.data), (self,), (derivative(self.data),))
    method.__name__ = name
    setattr(Value, name, method)


def binary(name, forward, derivatives, reflected=None):
    def method(self, other):
        other = _lift(other)
        da, db = derivatives(self.data, other.data)
        return Value(forward(self.data, other.data), (self, other), (da, db))

    def reflected_method(self, other):
        return method(_lift(other), self)
    setattr(Value, name, method)
    if reflected:
        setattr(Value, reflected, reflected_method)


binary("__add__", lambda a, b: a + b, lambda a, b: (1.0, 1.0), "__radd__")
binary("__sub__", lambda a, b: a - b, lambda a, b: (1.0, -1.0), "__rsub__")
binary("__mul__", lambda a, b: a * b, lambda a, b: (b, a), "__rmul__")
binary("__truediv__", lambda a, b: a / b, lambda a, b: (1.0 / b, -a / b ** 2), "__rtruediv__")
unary("exp", math.exp, math.exp)
unary("log", math.log, lambda a: 1.0 / a)
unary("relu", lambda a: max(a, 0.0), lambda a: 1.0 if a > 0 else 0.0)
unary("__neg__", lambda a: -a, lambda a: -1.0)


def _pow(self, k):
    return Value(self.data ** k, (self,), (k * self.data ** (k - 1),))


def _backward(self):
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for parent in node.parents:
                visit(parent)
            order.append(node)
    visit(self)
    self.grad = 1.0
    for node in reversed(order):
        for parent, local in zip(node.parents, node.locals):
            parent.grad += local * node.grad


Value.__pow__ = _pow
Value.backward = _backward
