"""dtypes: a Python float is a float64; float32 and bfloat16 keep fewer bits."""
import torch

print("0.1 as float64 is Python's 0.1:", torch.tensor(0.1, dtype=torch.float64).item() == 0.1)
print("0.1 as float32 comes back as  ", torch.tensor(0.1, dtype=torch.float32).item())
for dtype, bits in ((torch.float64, 53), (torch.float32, 24), (torch.bfloat16, 8)):
    print(f"{str(dtype):15} {bits:2} significant bits, relative spacing eps = {torch.finfo(dtype).eps:.1e}")

x = torch.linspace(-1, 1, 64, dtype=torch.float64)
w = torch.linspace(0.5, -0.5, 64, dtype=torch.float64)
exact = (x * w).sum()
for dtype in (torch.float32, torch.bfloat16):
    error = ((x.to(dtype) * w.to(dtype)).sum().double() - exact).abs().item()
    print(f"a 64-term dot product in {str(dtype):14} is off by {error:.1e} (of {exact.item():.4f})")

layer = torch.nn.Linear(16, 16, bias=False)  # parameters start as float32
layer.to(torch.float64)  # .to() converts a module's parameters in place (and moves them: .to("cuda"))
print("after .to(torch.float64):", layer.weight.dtype, "on", layer.weight.device)
