"""A right engine driven by a table of operations: each row gives the forward function and
its local gradients, and a factory makes each method from its row (so every method keeps
its own row).

Expect: exit 0
"""
import math

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: (1.0, 1.0)),
    "sub": (lambda a, b: a - b, lambda a, b: (1.0, -1.0)),
    "mul": (lambda a, b: a * b, lambda a, b: (b, a)),
    "div": (lambda a, b: a / b, lambda a, b: (1.0 / b, -a / (b * b))),
}
UNARY = {
    "exp": (math.exp, math.exp),
    "log": (math.log, lambda a: 1.0 / a),
    "relu": (lambda a: a if a > 0 else 0.0, lambda a: 1.0 if a > 0 else 0.0),
    "tanh": (math.tanh, lambda a: 1.0 - math.tanh(a) ** 2),
}


class Value:
    def __init__(self, data, edges=()):
        self.data = data
        self.grad = 0
        self.edges = edges  # ((child, local gradient), ...)

    def backward(self):
        order, visited, stack = [], set(), [iter([self])]
        path = []
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                if path:
                    order.append(path.pop())
                continue
            if node in visited:
                continue
            visited.add(node)
            path.append(node)
            stack.append(iter([child for child, _ in node.edges]))
        self.grad = 1
        for node in reversed(order):
            for child, local in node.edges:
                child.grad += local * node.grad

    def __pow__(self, k):
        return Value(self.data ** k, ((self, k * self.data ** (k - 1)),))

    def __neg__(self):
        return self * -1


def _as_value(x):
    return x if isinstance(x, Value) else Value(x)


def _make_binary(forward, local):
    def method(a, b):
        a, b = _as_value(a), _as_value(b)
        da, db = local(a.data, b.data)
        return Value(forward(a.data, b.data), ((a, da), (b, db)))
    return method


def _make_unary(forward, local):
    def method(a):
        return Value(forward(a.data), ((a, local(a.data)),))
    return method


for _name, (_forward, _local) in BINARY.items():
    _method = _make_binary(_forward, _local)
    setattr(Value, f"__{_name if _name != 'div' else 'truediv'}__", _method)
    setattr(Value, f"__r{_name if _name != 'div' else 'truediv'}__", lambda a, b, m=_method: m(b, a))
for _name, (_forward, _local) in UNARY.items():
    setattr(Value, _name, _make_unary(_forward, _local))
