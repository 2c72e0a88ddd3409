"""Step 13, an answer: the device."""
import torch


def pick_device():
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def logits_on(device, model, idx):
    model.to(device)
    logits, _ = model(idx.to(device))
    return logits.cpu()
