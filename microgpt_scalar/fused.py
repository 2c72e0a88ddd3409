"""A faster engine with the same numbers: one graph node for a whole dot product.

Most of a training step's ~60,000 nodes come from dot products: `sum(a[j] * b[j])` makes a
product node and an addition node per term. `FusedValue` records the whole sum as one
`FusedDot` node instead, and constant operands (the 1e-5 in rmsnorm, the -1 of a negation)
no longer become leaf nodes of their own. The model picks the fused dot up by itself
(`microgpt_scalar.model.dot` asks the element type for `fused_dot`):

    model = GPT(config, random.Random(42), FusedValue)

Every value and every gradient is bit-identical to the per-op engine's, because each fused
node repeats the per-op chain's floating-point operations in the chain's order:

- forward: `total = 0`, then `total = total + a[j].data * b[j].data` for j ascending, which is
  what the built-in `sum` over Values computes (from the integer 0, one rounding per term;
  not `math.fsum` or a float `sum`, which may round differently);
- topological order: the node's children are interleaved, a0, b0, a1, b1, ..., the order in
  which the depth-first search first meets them under the chain, so every other node keeps
  its place in the backward pass;
- backward: the chain hands each product the gradient `0 + 1 * g` (the intermediate nodes'
  `.grad` starts at the integer 0), and the products are reached last term first, so the
  fused node adds `b[j].data * g` to a[j] and `a[j].data * g` to b[j] for j descending.

The last point needs a property that every dot product of the model has: no node that the
search first reaches through a later term feeds an earlier term's a[j] or b[j] (as in
`dot([x, 2 * x], b)`, where the node 2 * x feeds x). The chain would walk such a node
between two of its products, adding its gradient to a[j] before the product's; one fused
node adds all the products' gradients at once, so x.grad may round differently. The model
computes the entries of a vector side by side, never from one another, so this does not
happen; `tests/test_fused.py` checks every gradient of real training steps, bit for bit.
"""
from __future__ import annotations

import math

from .engine import Value, topological_order


class FusedValue(Value):
    """A `Value` whose results are FusedValues, with `fused_dot` and a dispatching backward."""

    __slots__ = ()

    # The primitive operators, as in Value, but building FusedValues. A constant operand is
    # folded into the local gradient instead of being wrapped in a leaf: a leaf passes no
    # gradient on, so dropping it changes no other node's gradient or place in the order.
    def __add__(self, other):
        if isinstance(other, Value):
            return FusedValue(self.data + other.data, (self, other), (1, 1))
        return FusedValue(self.data + other, (self,), (1,))

    def __mul__(self, other):
        if isinstance(other, Value):
            return FusedValue(self.data * other.data, (self, other), (other.data, self.data))
        return FusedValue(self.data * other, (self,), (other,))

    def __pow__(self, other):  # a constant exponent only
        return FusedValue(self.data**other, (self,), (other * self.data ** (other - 1),))

    def log(self):
        return FusedValue(math.log(self.data), (self,), (1 / self.data,))

    def exp(self):
        out = math.exp(self.data)  # the local gradient is the same number
        return FusedValue(out, (self,), (out,))

    def relu(self):
        return FusedValue(max(0, self.data), (self,), (float(self.data > 0),))

    @staticmethod
    def fused_dot(a, b):
        """sum(a[j] * b[j]) for two equally long lists of Values, as one node."""
        total = 0
        for a_j, b_j in zip(a, b):
            total = total + a_j.data * b_j.data
        children = [*a, *b]  # the right length; then interleaved: a0, b0, a1, b1, ...
        children[0::2], children[1::2] = a, b
        return FusedDot(total, children)

    def backward(self):
        """Fill in `.grad` of every node this one depends on (adding to what is there)."""
        self.grad = 1
        for node in reversed(topological_order(self)):
            node._backward()

    def _backward(self):
        """Pass this node's gradient to its children: child.grad += local_grad * grad."""
        grad = self.grad
        for child, local_grad in zip(self._children, self._local_grads):
            child.grad += local_grad * grad


class FusedDot(FusedValue):
    """sum(a[j] * b[j]); `_children` is a0, b0, a1, b1, ...; the local gradients are read
    from the children's `.data`, which nothing changes between forward and backward."""

    __slots__ = ()

    def _backward(self):
        grad = 0 + self.grad  # what the per-op chain's product nodes hold (-0.0 becomes 0.0)
        children = self._children
        for j in range(len(children) - 2, -1, -2):  # the last term first, as the chain does
            a_j, b_j = children[j], children[j + 1]
            a_j.grad += b_j.data * grad
            b_j.grad += a_j.data * grad
