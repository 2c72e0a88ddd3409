"""A second backward: Value adds to .grad again; torch refuses unless told to keep the graph."""
import torch

from microgpt_scalar.engine import Value

x = Value(3.0)
y = x * x
y.backward()
print("Value, first backward: ", x.grad)
y.backward()  # the graph is still there and backward adds to .grad
print("Value, second backward:", x.grad)

x = torch.tensor(3.0, requires_grad=True)
y = x * x
y.backward()  # frees the graph's saved tensors as it goes
print("torch, first backward: ", x.grad)
try:
    y.backward()
except RuntimeError as error:
    print("torch, second backward: RuntimeError:", str(error).split(" (")[0])

x.grad = None
y = x * x
y.backward(retain_graph=True)  # keep the saved tensors for another pass
y.backward()
print("torch, retain_graph:    ", x.grad, "(accumulated, as in Value)")

optimizer = torch.optim.SGD([x], lr=0.1)
optimizer.zero_grad()  # what the training loop calls before each backward
print("after zero_grad:        ", x.grad)
