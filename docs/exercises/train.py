"""Step 9: the training loop, with torch.optim.Adam and a LambdaLR schedule.

The scalar trainer, at each step:

    loss = forward_loss(model, tokens)      # one document
    loss.backward()
    lr = learning_rate_at(step, config)     # the cosine schedule
    optimizer.step(lr, step)                # Adam by hand, then p.grad = 0

Write `make_optimizer` (torch.optim.Adam with the config's betas and eps, and a
torch.optim.lr_scheduler.LambdaLR giving step s the rate learning_rate_at(s, config)) and
`train`, the loop. The check runs it for 10 steps on the project's model from the original
program's start, and compares what it prints with the scalar engine's log:

    python scripts/exercise.py train
"""
import torch  # noqa: F401

from microgpt_scalar.optim import learning_rate_at  # noqa: F401


def make_optimizer(model, config):
    """Return (optimizer, scheduler)."""
    # TODO: Adam over model.parameters(); LambdaLR multiplies the optimizer's lr by a factor.
    raise NotImplementedError("TODO: make_optimizer")


def train(model, optimizer, scheduler, documents, config, num_steps):
    """Train on documents[step % len(documents)] (token ids, [BOS] + ids + [BOS]) at each step;
    print each step's line as the scalar trainer does and return the losses (Python floats):

        print(f"step {step + 1:4d} / {config.num_steps:4d} | loss {loss:.4f}")

    model(idx, targets) returns (logits, loss) for idx and targets of shape (1, n), where
    n = min(config.block_size, len(tokens) - 1): the inputs are tokens[:n], the targets
    tokens[1:n + 1].
    """
    # TODO: for each step: reset the gradients, forward, backward, update, advance the schedule.
    raise NotImplementedError("TODO: train")
