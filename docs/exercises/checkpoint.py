"""Step 11: state_dict: save, load and resume.

The scalar engine saves its weights and Adam's m and v as lists of floats (a JSON checkpoint);
a resumed run continues as if it had never stopped. In torch each of the model, the optimizer
and the schedule has a state_dict(), and a load_state_dict() that takes it back.

Write `save_checkpoint` (one file with all three and the step) and `load_checkpoint` (into a
fresh model, optimizer and scheduler; returns the step). The check trains 3 steps, saves, loads
into a new model, trains 2 more, and compares the 5 losses with the scalar engine's:

    python scripts/exercise.py checkpoint
"""
import torch  # noqa: F401


def save_checkpoint(path, model, optimizer, scheduler, step):
    # TODO: torch.save one dictionary.
    raise NotImplementedError("TODO: save_checkpoint")


def load_checkpoint(path, model, optimizer, scheduler):
    """Put the saved state back into model, optimizer and scheduler; return the saved step."""
    # TODO: torch.load, then each object's load_state_dict.
    raise NotImplementedError("TODO: load_checkpoint")
