"""The device: pick the best one here, move the model and the batch, bring the result back."""
import torch

from microgpt_scalar.config import get_config
from microgpt_torch.model import GPT

if torch.cuda.is_available():
    device = torch.device("cuda")
elif torch.backends.mps.is_available():
    device = torch.device("mps")
else:
    device = torch.device("cpu")

model = GPT(get_config(), torch.Generator().manual_seed(0))  # float32 (MPS has no float64)
idx = torch.tensor([[26, 4, 12, 12, 0]])
cpu_logits, _ = model(idx)
model.to(device)  # every parameter moves; the module is changed in place
logits, _ = model(idx.to(device))  # the batch must be on the model's device too
print("computed on the chosen device:", logits.device.type == device.type)
print("the same numbers as on the CPU:", torch.allclose(logits.cpu(), cpu_logits, atol=1e-5))
