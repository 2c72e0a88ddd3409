"""Step 13: the device: CPU, CUDA or MPS.

The scalar engine runs wherever Python does. A tensor lives on a device, and an operation needs
all its tensors on one. Write `pick_device` (CUDA if there is a CUDA GPU, else MPS on a Mac with
one, else the CPU) and `logits_on` (run the model on that device and bring the logits back to
the CPU). The numbers do not change with the device in float64. Check it:

    python scripts/exercise.py device
"""
import torch  # noqa: F401


def pick_device():
    """A torch.device."""
    # TODO: ask torch what this machine has.
    raise NotImplementedError("TODO: pick_device")


def logits_on(device, model, idx):
    """model(idx)'s logits, computed on `device`, returned on the CPU."""
    # TODO: move the model and the batch, run, move the logits back.
    raise NotImplementedError("TODO: logits_on")
