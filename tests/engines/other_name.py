"""A right engine under another name (`--engine other_name.py:Scalar`), in the style of an
autograd Function: each node keeps a grad_fn that takes the gradient arriving at the node
and returns one gradient per input; the walk is an explicit stack.

Expect: exit 0 (as other_name.py:Scalar)
"""
import math


class Scalar:
    def __init__(self, data, inputs=(), grad_fn=None):
        self.data = data
        self.grad = 0.0
        self.inputs = inputs
        self.grad_fn = grad_fn

    @staticmethod
    def cast(x):
        return x if isinstance(x, Scalar) else Scalar(x)

    def __add__(self, other):
        other = Scalar.cast(other)
        return Scalar(self.data + other.data, (self, other), lambda g: (g, g))

    def __mul__(self, other):
        other = Scalar.cast(other)
        a, b = self.data, other.data
        return Scalar(a * b, (self, other), lambda g: (g * b, g * a))

    def __truediv__(self, other):
        other = Scalar.cast(other)
        a, b = self.data, other.data
        return Scalar(a / b, (self, other), lambda g: (g / b, -g * a / (b * b)))

    def __rtruediv__(self, other):
        return Scalar.cast(other) / self

    def __pow__(self, n):
        a = self.data
        return Scalar(a ** n, (self,), lambda g: (g * n * a ** (n - 1),))

    def exp(self):
        e = math.exp(self.data)
        return Scalar(e, (self,), lambda g: (g * e,))

    def log(self):
        a = self.data
        return Scalar(math.log(a), (self,), lambda g: (g / a,))

    def relu(self):
        on = self.data > 0
        return Scalar(self.data if on else 0.0, (self,), lambda g: (g if on else 0.0,))

    def __neg__(self):
        return Scalar(-self.data, (self,), lambda g: (-g,))

    def __sub__(self, other):
        other = Scalar.cast(other)
        return Scalar(self.data - other.data, (self, other), lambda g: (g, -g))

    def __rsub__(self, other):
        return Scalar.cast(other) - self

    __radd__ = __add__
    __rmul__ = __mul__

    def backward(self):
        order, entered, stack = [], {id(self)}, [(self, iter(self.inputs))]
        while stack:
            node, rest = stack[-1]
            child = next((x for x in rest if id(x) not in entered), None)
            if child is None:
                stack.pop()
                order.append(node)
            else:
                entered.add(id(child))
                stack.append((child, iter(child.inputs)))
        self.grad = 1.0
        for node in reversed(order):
            if node.grad_fn is not None:
                for x, g in zip(node.inputs, node.grad_fn(node.grad)):
                    x.grad += g


class Value:  # a different class the file also has: not the engine
    pass
