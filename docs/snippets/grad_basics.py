"""requires_grad, a .grad that is None until backward, leaves and non-leaves, .item(), .detach()."""
import torch

from microgpt_scalar.engine import Value

x = Value(3.0)
print("Value: every node is tracked; grad starts at", x.grad)

w = torch.tensor([1.0, 2.0], requires_grad=True)  # a leaf: you made it, autograd tracks it
c = torch.tensor([4.0, 5.0])  # requires_grad=False: a constant, not tracked
print("w.requires_grad", w.requires_grad, "| c.requires_grad", c.requires_grad)
print("w.grad before backward:", w.grad)

h = w * c  # made by an operation: not a leaf, and it remembers how it was made
print("h.is_leaf", h.is_leaf, "| h.grad_fn", type(h.grad_fn).__name__)
h.retain_grad()  # without this, a non-leaf's .grad stays None after backward
loss = h.sum()
loss.backward()
print("w.grad", w.grad, "| h.grad", h.grad, "| c.grad", c.grad)

print("loss.item():", loss.item(), type(loss.item()).__name__)  # a Python float, like Value.data
d = h.detach()  # the same numbers, cut off from the graph
print("d.requires_grad", d.requires_grad, "| same memory as h:", d.data_ptr() == h.data_ptr())
