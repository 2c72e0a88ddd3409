"""A correct engine that keeps each node's local gradients in a dict keyed by child, adding
up the entries of a child that appears twice (x * x), and walks the graph iteratively with
an explicit stack. Subtraction and division are nodes of their own (the quotient rule).

Expect: exit 0
"""
import math


class Value:
    def __init__(self, data, parents=None):
        self.data = float(data)
        self.grad = 0.0
        self.parents = {}  # child -> d(self)/d(child)
        for child, local in (parents or []):
            self.parents[child] = self.parents.get(child, 0.0) + local

    @staticmethod
    def lift(x):
        return x if isinstance(x, Value) else Value(x)

    def __add__(self, other):
        other = Value.lift(other)
        return Value(self.data + other.data, [(self, 1.0), (other, 1.0)])

    def __sub__(self, other):
        other = Value.lift(other)
        return Value(self.data - other.data, [(self, 1.0), (other, -1.0)])

    def __mul__(self, other):
        other = Value.lift(other)
        return Value(self.data * other.data, [(self, other.data), (other, self.data)])

    def __truediv__(self, other):
        other = Value.lift(other)
        return Value(self.data / other.data, [(self, 1 / other.data), (other, -self.data / other.data**2)])

    def __pow__(self, n):
        return Value(self.data**n, [(self, n * self.data**(n - 1))])

    def __neg__(self):
        return Value(-self.data, [(self, -1.0)])

    def __radd__(self, other):
        return Value.lift(other) + self

    def __rsub__(self, other):
        return Value.lift(other) - self

    def __rmul__(self, other):
        return Value.lift(other) * self

    def __rtruediv__(self, other):
        return Value.lift(other) / self

    def exp(self):
        e = math.exp(self.data)
        return Value(e, [(self, e)])

    def log(self):
        return Value(math.log(self.data), [(self, 1 / self.data)])

    def relu(self):
        return Value(self.data if self.data > 0 else 0.0, [(self, 1.0 if self.data > 0 else 0.0)])

    def backward(self):
        order, seen, stack = [], set(), [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((child, False) for child in node.parents)
        self.grad = 1.0
        for node in reversed(order):
            for child, local in node.parents.items():
                child.grad += local * node.grad
