"""One expression in the scalar engine and in PyTorch: the same value, the same gradients."""
import torch

from microgpt_scalar.engine import Value

a, b = Value(2.0), Value(-3.0)
f = (a * b + a.exp()).relu() ** 2 / 4
f.backward()
print("Value:", f.data, a.grad, b.grad)

a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
f = (a * b + a.exp()).relu() ** 2 / 4
f.backward()
print("torch:", f.item(), a.grad.item(), b.grad.item())
