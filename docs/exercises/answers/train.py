"""Step 9, an answer: the training loop, with torch.optim.Adam and a LambdaLR schedule."""
import torch

from microgpt_scalar.optim import learning_rate_at


def make_optimizer(model, config):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 betas=(config.beta1, config.beta2), eps=config.eps_adam)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_at(step, config) / config.learning_rate)
    return optimizer, scheduler


def train(model, optimizer, scheduler, documents, config, num_steps):
    losses = []
    for step in range(num_steps):
        tokens = documents[step % len(documents)]
        n = min(config.block_size, len(tokens) - 1)
        idx = torch.tensor([tokens[:n]])  # (1, n)
        targets = torch.tensor([tokens[1:n + 1]])  # (1, n)
        optimizer.zero_grad()
        _, loss = model(idx, targets)
        loss.backward()
        optimizer.step()
        scheduler.step()  # the next step's learning rate
        losses.append(loss.item())
        print(f"step {step + 1:4d} / {config.num_steps:4d} | loss {loss.item():.4f}")
    return losses
