"""A right engine with more than the model needs, each with its derivative: in-place
operators that make a new node (as torch's do for a graph), reflected forms, 2.0 ** a,
a ** b with a Value exponent, tanh, sigmoid, sqrt, sin, cos and abs; inputs lifted by a
decorator; __slots__.

Expect: exit 0
"""
import functools
import math


def lifted(method):
    @functools.wraps(method)
    def wrapper(self, other):
        return method(self, other if isinstance(other, Value) else Value(other))
    return wrapper


class Value:
    __slots__ = ("data", "grad", "kids", "dkids")

    def __init__(self, data, kids=(), dkids=()):
        self.data, self.grad, self.kids, self.dkids = float(data), 0.0, kids, dkids

    @lifted
    def __add__(self, o):
        return Value(self.data + o.data, (self, o), (1.0, 1.0))

    @lifted
    def __mul__(self, o):
        return Value(self.data * o.data, (self, o), (o.data, self.data))

    @lifted
    def __sub__(self, o):
        return Value(self.data - o.data, (self, o), (1.0, -1.0))

    @lifted
    def __truediv__(self, o):
        return Value(self.data / o.data, (self, o), (1 / o.data, -self.data / o.data ** 2))

    @lifted
    def __radd__(self, o):
        return o + self

    @lifted
    def __rsub__(self, o):
        return o - self

    @lifted
    def __rmul__(self, o):
        return o * self

    @lifted
    def __rtruediv__(self, o):
        return o / self

    def __iadd__(self, o):
        return self + o  # a new node: the graph keeps the old one

    def __isub__(self, o):
        return self - o

    def __imul__(self, o):
        return self * o

    def __itruediv__(self, o):
        return self / o

    def __pow__(self, o):
        if isinstance(o, Value):
            out = self.data ** o.data
            return Value(out, (self, o), (o.data * self.data ** (o.data - 1), math.log(self.data) * out))
        return Value(self.data ** o, (self,), (o * self.data ** (o - 1),))

    def __rpow__(self, base):
        out = base ** self.data
        return Value(out, (self,), (math.log(base) * out,))

    def __neg__(self):
        return Value(-self.data, (self,), (-1.0,))

    def __abs__(self):
        return Value(abs(self.data), (self,), (1.0 if self.data > 0 else -1.0 if self.data < 0 else 0.0,))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(math.log(self.data), (self,), (1 / self.data,))

    def relu(self):
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, (self,), (1 - t * t,))

    def sigmoid(self):
        s = 1 / (1 + math.exp(-self.data))
        return Value(s, (self,), (s * (1 - s),))

    def sqrt(self):
        r = math.sqrt(self.data)
        return Value(r, (self,), (0.5 / r,))

    def sin(self):
        return Value(math.sin(self.data), (self,), (math.cos(self.data),))

    def cos(self):
        return Value(math.cos(self.data), (self,), (-math.sin(self.data),))

    def backward(self):
        order, seen, stack = [], set(), [(self, iter(self.kids))]
        seen.add(self)
        while stack:
            node, rest = stack[-1]
            for kid in rest:
                if kid not in seen:
                    seen.add(kid)
                    stack.append((kid, iter(kid.kids)))
                    break
            else:
                stack.pop()
                order.append(node)
        self.grad = 1.0
        for node in reversed(order):
            for kid, d in zip(node.kids, node.dkids):
                kid.grad += d * node.grad
