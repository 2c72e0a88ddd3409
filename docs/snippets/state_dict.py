"""state_dict: the weights (and Adam's moments) by name, saved with torch.save and loaded back."""
import io

import torch

from microgpt_scalar.config import get_config
from microgpt_torch.model import GPT

model = GPT(get_config(), torch.Generator().manual_seed(0)).double()
state = model.state_dict()  # name -> tensor: the scalar model's state_dict, one tensor a matrix
for name, tensor in list(state.items())[:4]:
    print(f"{name:24} {tuple(tensor.shape)}")
print("...", len(state), "tensors")

optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
idx = torch.tensor([[26, 4, 12, 12, 0]])
_, loss = model(idx, torch.tensor([[4, 12, 12, 0, 26]]))
loss.backward()
optimizer.step()
print("Adam's state of the first tensor:", sorted(optimizer.state_dict()["state"][0]))

file = io.BytesIO()  # a file on disk works the same: torch.save(..., "run.pt")
torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 1}, file)
file.seek(0)
checkpoint = torch.load(file)
fresh = GPT(get_config(), torch.Generator().manual_seed(1)).double()  # other weights
print("before loading, same logits:", torch.equal(fresh(idx)[0], model(idx)[0]))
fresh.load_state_dict(checkpoint["model"])
print("after loading, same logits: ", torch.equal(fresh(idx)[0], model(idx)[0]))
