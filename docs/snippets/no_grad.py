"""torch.no_grad: arithmetic that builds no graph, as arithmetic on Value.data does."""
import torch

from microgpt_scalar.engine import Value

p = Value(1.0)
p.grad = 0.5
p.data -= 0.1 * p.grad  # a plain float: the update is not part of any graph
print("Value after the update:", p)

w = torch.tensor([1.0, 2.0], requires_grad=True)
w.grad = torch.tensor([0.5, 0.5])
with torch.no_grad():
    scaled = w * 2  # computed, but not recorded
    w -= 0.1 * w.grad  # the optimizer's update, in place on the leaf
print("inside no_grad: scaled.requires_grad", scaled.requires_grad, "| grad_fn", scaled.grad_fn)
print("w after the update:", w, "| still a leaf:", w.is_leaf)
