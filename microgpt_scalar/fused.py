"""A faster engine with the same numbers: one graph node for a whole dot product, row or sum.

Most of a training step's ~60,000 per-op nodes come from dot products: `sum(a[j] * b[j])`
makes a product node and an addition node per term. `FusedValue` records the whole sum as
one `FusedDot` node instead, a linear layer as one `LinearRow` per output, softmax as
2n + 1 nodes instead of 5n, relu(x) ** 2 as one node instead of two, and constant operands
(the 1e-5 in rmsnorm, the -1 of a negation) no longer become leaf nodes of their own. A
step is ~4,000 nodes. `FusedGPT` is the model of `microgpt_scalar.model` with its pieces
(`dot`, `linear`, `rmsnorm`, `softmax`, `relu_squared`) swapped for the ones below, which
build these nodes; its parameters are FusedValues:

    model = FusedGPT(config, random.Random(42))

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
happen (the same holds for the logits of a softmax); `tests/test_fused.py` checks every
gradient of real training steps, bit for bit.

The rest is plain speed, with the same order of operations everywhere: each kind of node
has its own `_backward` (no `zip` over one or two children), and the walk (`backward_order`)
leaves out the leaves (the parameters), which pass no gradient on.
"""
from __future__ import annotations

import math

from .engine import Value
from .model import GPT


class FusedValue(Value):
    """A `Value` whose operators make the node kinds below, each with its own `_backward`.

    Made directly (`FusedValue(2.0)`) it is a leaf.
    """

    __slots__ = ()

    # The primitive operators, as in Value, but building fused nodes. A constant operand is
    # folded into the local gradient instead of being wrapped in a leaf: a leaf passes no
    # gradient on, so dropping it changes no other node's gradient or place in the order.
    def __add__(self, other):
        if isinstance(other, Value):
            return Sum2(self.data + other.data, (self, other))
        return Unary(self.data + other, (self,), 1)

    def __mul__(self, other):
        if isinstance(other, Value):
            return Product(self.data * other.data, (self, other))
        return Unary(self.data * other, (self,), other)

    def __pow__(self, other):  # a constant exponent only
        return Unary(self.data**other, (self,), other * self.data ** (other - 1))

    def log(self):
        return Unary(math.log(self.data), (self,), 1 / self.data)

    def exp(self):
        out = math.exp(self.data)  # the local gradient is the same number
        return Unary(out, (self,), out)

    def relu(self):
        return Unary(max(0, self.data), (self,), float(self.data > 0))

    def backward(self):
        """Fill in `.grad` of every node this one depends on (adding to what is there)."""
        self.grad = 1
        for node in reversed(backward_order(self)):
            node._backward()

    def _backward(self):
        """Pass this node's gradient to its children: child.grad += local_grad * grad."""
        grad = self.grad
        for child, local_grad in zip(self._children, self._local_grads):
            child.grad += local_grad * grad


class Unary(FusedValue):
    """f(x) or x (op) constant: one child; `_local_grads` is the one local gradient itself."""

    __slots__ = ()

    def __init__(self, data, children, local_grad):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = local_grad

    def _backward(self):
        self._children[0].grad += self._local_grads * self.grad


class Sum2(FusedValue):
    """x + y of two Values: both local gradients are 1."""

    __slots__ = ()

    def __init__(self, data, children):
        self.data = data
        self.grad = 0
        self._children = children

    def _backward(self):
        x, y = self._children
        grad = self.grad
        x.grad += grad  # Value adds 1 * grad: the same number, -0.0 included
        y.grad += grad


class Product(FusedValue):
    """x * y of two Values: the local gradients are y.data and x.data, read at backward time
    (nothing changes `.data` between the forward pass and the backward pass)."""

    __slots__ = ()

    def __init__(self, data, children):
        self.data = data
        self.grad = 0
        self._children = children

    def _backward(self):
        x, y = self._children
        grad = self.grad
        x.grad += y.data * grad
        y.grad += x.data * grad


class FusedDot(FusedValue):
    """sum(a[j] * b[j]); `_children` is a0, b0, a1, b1, ... (the order of the walk) and
    `_local_grads` is the pair (a, b); the local gradients are read from the children's
    `.data`, which nothing changes between forward and backward."""

    __slots__ = ()

    def __init__(self, data, children, a_and_b):
        self.data = data
        self.grad = 0
        self._children = children
        self._local_grads = a_and_b

    def _backward(self):
        grad = 0 + self.grad  # what the per-op chain's product nodes hold (-0.0 becomes 0.0)
        a, b = self._local_grads
        for a_j, b_j in zip(reversed(a), reversed(b)):  # the last term first, as the chain does
            a_j.grad += b_j.data * grad
            b_j.grad += a_j.data * grad


class LinearRow(FusedDot):
    """A FusedDot of a row of weights (leaves) and x; its only child is the `LinearInput`
    of x. The backward is FusedDot's, from `_local_grads` = (weights, x)."""

    __slots__ = ()


class LinearInput(FusedValue):
    """The input x of a linear layer, as one node for the walk: its children are x, and the
    rows of the layer are its parents.

    The chain's search meets the first row it reaches, walks x under it (the weights are
    leaves, with nothing to walk), and then finds x done for every other row. Here it walks
    x under this node instead, at the same moment, so every other node keeps its place and
    the rows are all done before x, as they must be. The node itself computes nothing and
    passes nothing on: the rows add to x's gradients themselves.
    """

    __slots__ = ()

    def __init__(self, x):
        self.data = 0.0
        self.grad = 0
        self._children = x

    def _backward(self):
        pass


class ShiftedExp(FusedValue):
    """exp(z - max) for a plain float max: the chain z + (-max), then exp, as one node."""

    __slots__ = ()

    def __init__(self, z, max_val):
        self.data = math.exp(z.data + -max_val)
        self.grad = 0
        self._children = (z,)
        self._local_grads = self.data  # exp's local gradient; the shift's is 1

    def _backward(self):
        # The inner node's .grad starts at the integer 0; the shift then passes on 1 * it.
        self._children[0].grad += 0 + self._local_grads * self.grad


class ReluSquared(FusedValue):
    """relu(x) ** 2: the chain r = relu(x), then r ** 2, as one node; `_local_grads` holds
    both steps' local gradients."""

    __slots__ = ()

    def __init__(self, x):
        relu = max(0, x.data)
        self.data = relu**2
        self.grad = 0
        self._children = (x,)
        self._local_grads = (float(x.data > 0), 2 * relu ** (2 - 1))

    def _backward(self):
        relu_grad, square_grad = self._local_grads
        self._children[0].grad += relu_grad * (0 + square_grad * self.grad)  # r.grad starts at 0


class SumOf(FusedValue):
    """The built-in sum of Values: the chain s_1 = v_0 + 0, s_k = s_(k-1) + v_(k-1).

    Backward: the last term gets the sum's gradient g; every earlier term gets it through
    inner nodes whose .grad starts at the integer 0, that is 0 + g (-0.0 becomes 0.0); the
    chain reaches the terms last first.
    """

    __slots__ = ()

    def __init__(self, terms):
        total = 0
        for term in terms:
            total = total + term.data
        self.data = total
        self.grad = 0
        self._children = terms

    def _backward(self):
        terms, grad = self._children, self.grad
        terms[-1].grad += grad
        grad = 0 + grad
        for term in reversed(terms[:-1]):
            term.grad += grad


class Quotient(FusedValue):
    """e / total as the chain computes it: e * inverse, with inverse = total ** -1 an inner
    node; `_local_grads` holds inverse and d(inverse)/d(total)."""

    __slots__ = ()

    def __init__(self, e, total, inverse, inverse_grad):
        self.data = e.data * inverse
        self.grad = 0
        self._children = (e, total)
        self._local_grads = (inverse, inverse_grad)

    def _backward(self):
        e, total = self._children
        inverse, inverse_grad = self._local_grads
        grad = self.grad
        e.grad += inverse * grad
        total.grad += inverse_grad * (0 + e.data * grad)  # through the inverse's .grad


# The model's pieces, each building fused nodes with the per-op chain's numbers.

def dot(a, b):
    """sum(a[j] * b[j]) for two equally long lists of Values, as one node."""
    total = 0
    for a_j, b_j in zip(a, b):
        total = total + a_j.data * b_j.data
    children = [*a, *b]  # the right length; then interleaved: a0, b0, a1, b1, ...
    children[0::2], children[1::2] = a, b
    return FusedDot(total, children, (a, b))


def linear(x, w):
    """[sum_j w[r][j] * x[j] for each row r], one `LinearRow` node per row.

    The weights are leaves (parameters), so the walk needs only x, and it needs x only
    once: every row has the one `LinearInput` node as its child, and that node has x.
    A weight with a graph of its own (never one of the model's) must be walked like x,
    so such a matrix takes the general path, one FusedDot per row.
    """
    for w_row in w:
        for w_j in w_row:
            if w_j._children:  # a weight with a graph of its own: the walk must visit it
                return [dot(w_row, x) for w_row in w]
    x = tuple(x)
    below = (LinearInput(x),)
    rows = []
    for w_row in w:
        total = 0
        for w_j, x_j in zip(w_row, x):
            total = total + w_j.data * x_j.data
        rows.append(LinearRow(total, below, (w_row, x)))
    return rows


def softmax(logits):
    """exp(z - max) / sum(exp(z - max)) as 2n + 1 nodes instead of 5n.

    The per-op chain, for n logits: d_i = z_i + (-max), e_i = exp(d_i), the sum s_1 =
    e_0 + 0, s_k = s_(k-1) + e_(k-1), and for each output its own inverse s_n ** -1 and
    product e_i * inverse. Here: `ShiftedExp` e_i (d_i inside), one `SumOf` for the
    whole sum, and a `Quotient` per output (the inverse inside). Each inner node had a
    single consumer, the node that now holds it, so the walk meets the remaining nodes in
    the chain's order and each fused backward repeats the inner nodes' steps.
    """
    max_val = max(val.data for val in logits)  # a plain float: shifting is for stability only
    exps = [ShiftedExp(val, max_val) for val in logits]
    total = SumOf(exps)
    inverse = total.data**-1  # total ** -1 of the chain, and its local gradient:
    inverse_grad = -1 * total.data ** (-1 - 1)
    return [Quotient(e, total, inverse, inverse_grad) for e in exps]


def relu_squared(x):
    """relu(x_j) ** 2 for each entry, one `ReluSquared` node each instead of two."""
    return [ReluSquared(x_j) for x_j in x]


def rmsnorm(x):
    """The model's rmsnorm, with the sum of squares as one FusedDot."""
    ms = dot(x, x) / len(x)  # mean of squares
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


class FusedGPT(GPT):
    """The GPT of `microgpt_scalar.model` on FusedValue, its pieces building fused nodes."""

    dot = staticmethod(dot)
    linear = staticmethod(linear)
    softmax = staticmethod(softmax)
    relu_squared = staticmethod(relu_squared)
    rmsnorm = staticmethod(rmsnorm)

    def __init__(self, config, rng=None, value_cls=FusedValue, params=None):
        super().__init__(config, rng, value_cls, params)


def backward_order(root: Value) -> list:
    """The nodes under `root` that have children, in `engine.topological_order`'s order.

    The same depth-first search, with the leaves only marked as seen: they have no
    gradient to pass on, so leaving them out changes nothing but the time the walk takes.
    """
    order, seen = [], {root}
    stack = [(root, iter(root._children))]
    see, push, pop = seen.add, stack.append, stack.pop  # bound once: this loop is hot
    while stack:
        node, children = stack[-1]
        for child in children:
            if child not in seen:
                see(child)
                if child._children:
                    push((child, iter(child._children)))
                    break
        else:  # every child is done: the node follows them
            pop()
            order.append(node)
    return order
