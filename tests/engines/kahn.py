"""A right engine whose backward orders the graph with Kahn's algorithm: count how many
parents use each node, and hand a node on only once every parent has passed its gradient.

Expect: exit 0
"""
import math
from collections import deque


class Value:
    def __init__(self, data, inputs=(), grads=()):
        self.data = data
        self.grad = 0.0
        self.inputs = list(inputs)
        self.grads = list(grads)

    def _other(self, x):
        return x if isinstance(x, Value) else Value(x)

    def __add__(self, x):
        x = self._other(x)
        return Value(self.data + x.data, [self, x], [1.0, 1.0])

    def __mul__(self, x):
        x = self._other(x)
        return Value(self.data * x.data, [self, x], [x.data, self.data])

    def __pow__(self, n):
        return Value(self.data ** n, [self], [n * self.data ** (n - 1)])

    def exp(self):
        e = math.exp(self.data)
        return Value(e, [self], [e])

    def log(self):
        return Value(math.log(self.data), [self], [1.0 / self.data])

    def relu(self):
        return Value(self.data if self.data > 0 else 0.0, [self], [1.0 if self.data > 0 else 0.0])

    def __neg__(self):
        return self * -1.0

    def __radd__(self, x):
        return self + x

    def __sub__(self, x):
        return self + (-self._other(x))

    def __rsub__(self, x):
        return self._other(x) - self

    def __rmul__(self, x):
        return self * x

    def __truediv__(self, x):
        return self * self._other(x) ** -1

    def __rtruediv__(self, x):
        return self._other(x) / self

    def backward(self):
        users = {}  # node -> how many edges lead into it from above
        seen, todo = {id(self)}, [self]
        while todo:
            node = todo.pop()
            for child in node.inputs:
                users[id(child)] = users.get(id(child), 0) + 1
                if id(child) not in seen:
                    seen.add(id(child))
                    todo.append(child)
        self.grad = 1.0
        ready = deque([self])
        while ready:
            node = ready.popleft()
            for child, local in zip(node.inputs, node.grads):
                child.grad += local * node.grad
                users[id(child)] -= 1
                if users[id(child)] == 0:
                    ready.append(child)
