"""A right engine that names every node with a uuid and keeps the graph's bookkeeping in
dicts keyed by those names (the nodes themselves are never hashed), with the children
added to a node after it is made.

Expect: exit 0
"""
import math
import uuid


class Value:
    def __init__(self, data):
        self.data = data
        self.grad = 0.0
        self.key = uuid.uuid4().hex
        self.children = []  # a new list per node
        self.local = []

    def _link(self, *pairs):
        for child, local in pairs:
            self.children.append(child)
            self.local.append(local)
        return self

    @staticmethod
    def _v(x):
        return x if isinstance(x, Value) else Value(x)

    def __add__(self, other):
        other = Value._v(other)
        return Value(self.data + other.data)._link((self, 1.0), (other, 1.0))

    def __mul__(self, other):
        other = Value._v(other)
        return Value(self.data * other.data)._link((self, other.data), (other, self.data))

    def __pow__(self, p):
        return Value(self.data ** p)._link((self, p * self.data ** (p - 1)))

    def exp(self):
        out = Value(math.exp(self.data))
        return out._link((self, out.data))

    def log(self):
        return Value(math.log(self.data))._link((self, 1.0 / self.data))

    def relu(self):
        return Value(max(self.data, 0.0))._link((self, 1.0 if self.data > 0 else 0.0))

    def __neg__(self):
        return Value(-self.data)._link((self, -1.0))

    def __radd__(self, other):
        return self + other

    def __sub__(self, other):
        return self + (-Value._v(other))

    def __rsub__(self, other):
        return (-self) + other

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        return self * Value._v(other) ** -1

    def __rtruediv__(self, other):
        return Value._v(other) * self ** -1

    def backward(self):
        nodes, order, state = {self.key: self}, [], {}
        stack = [self.key]
        while stack:
            key = stack[-1]
            if state.get(key) is None:
                state[key] = "open"
                for child in nodes[key].children:
                    nodes[child.key] = child
                    if child.key not in state:
                        stack.append(child.key)
            else:
                stack.pop()
                if state[key] == "open":
                    state[key] = "done"
                    order.append(nodes[key])
        self.grad = 1.0
        for node in reversed(order):
            for child, local in zip(node.children, node.local):
                child.grad += local * node.grad
