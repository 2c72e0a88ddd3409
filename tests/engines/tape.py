"""A right engine with a tape (a Wengert list): every node is recorded on a module-level list
as it is made, so the list is already in topological order; backward walks it from the end
and then clears it.

Expect: exit 0
"""
import math

TAPE = []


class Value:
    def __init__(self, data, parents=()):
        self.data = data
        self.grad = 0.0
        self.parents = parents  # ((node, local gradient), ...)
        TAPE.append(self)

    def _op(self, data, *parents):
        return Value(data, parents)

    def __add__(self, other):
        if not isinstance(other, Value):
            return self._op(self.data + other, (self, 1.0))
        return self._op(self.data + other.data, (self, 1.0), (other, 1.0))

    def __mul__(self, other):
        if not isinstance(other, Value):
            return self._op(self.data * other, (self, other))
        return self._op(self.data * other.data, (self, other.data), (other, self.data))

    def __pow__(self, k):
        return self._op(self.data ** k, (self, k * self.data ** (k - 1)))

    def exp(self):
        e = math.exp(self.data)
        return self._op(e, (self, e))

    def log(self):
        return self._op(math.log(self.data), (self, 1.0 / self.data))

    def relu(self):
        return self._op(max(self.data, 0.0), (self, 1.0 if self.data > 0 else 0.0))

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
        return self * other ** -1

    def __rtruediv__(self, other):
        return self ** -1 * other

    def backward(self):
        self.grad = 1.0
        end = len(TAPE) - 1 - TAPE[::-1].index(self) if self in TAPE else -1
        for node in reversed(TAPE[:end + 1]):
            for parent, local in node.parents:
                parent.grad += local * node.grad
        TAPE.clear()
