"""In-place operations: torch checks them, Value cannot notice them."""
import torch

from microgpt_scalar.engine import Value

w = torch.tensor([1.0, 2.0], requires_grad=True)
try:
    w -= 0.1  # outside no_grad: autograd would lose track of the leaf
except RuntimeError as error:
    print("in place on a leaf:", error)

h = w.exp()  # exp keeps its output for backward (d e^x / dx = e^x)
h += 1  # ... and this changes it in place
try:
    h.sum().backward()
except RuntimeError as error:
    print("backward after changing a saved tensor:", str(error).split(":")[0])

x = Value(2.0)
y = x.exp()  # the local gradient e^2 is stored now, as a number
x.data = 5.0  # too late to matter: backward uses the stored number
y.backward()
print("Value after changing data:", x.grad, "(e^2, not e^5)")
