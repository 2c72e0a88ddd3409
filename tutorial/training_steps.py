"""Checks of steps 8-13, training: the loss, the loop, the data, checkpoints, sampling and the
device, each against what the scalar engine computes or prints on the same weights."""
from __future__ import annotations

import contextlib
import functools
import io
import random
import tempfile
from pathlib import Path

import torch

from microgpt_scalar.config import get_config
from microgpt_scalar.data import Tokenizer, load_docs, default_data_path
from microgpt_scalar.optim import learning_rate_at
from microgpt_torch.model import GPT, IGNORE_INDEX
from microgpt_torch.train import make_batch, reference_start

from . import scalar_side
from .scalar_side import SEED, dense_config, draw_params, log_line
from .verdict import Learner, Wrong, expect_close

LOG_STEPS = 10  # step 9 reproduces the first 10 lines of the scalar engine's log
DOCS = ["emma", "olivia", "al", "christopher", "mia", "jo"]  # "christopher" is longer than block_size


def tokens_of(docs: list[str]) -> tuple[Tokenizer, list[list[int]]]:
    tokenizer = Tokenizer([chr(c) for c in range(ord("a"), ord("z") + 1)])
    return tokenizer, [tokenizer.encode(doc) for doc in docs]


# Step 8 -----------------------------------------------------------------------------------------

def check_loss(learner: Learner) -> list[str]:
    config = dense_config()
    _, token_lists = tokens_of(DOCS[:2])  # emma and olivia: different lengths, so one is padded
    idx, targets = make_batch(token_lists, config.block_size)
    with torch.no_grad():
        logits_values = GPT.from_scalar_params(config, draw_params(config))(idx)[0]
    loss, logits_grad = scalar_side.mean_cross_entropy(logits_values.tolist(), targets.tolist())
    logits = logits_values.clone().requires_grad_()
    got = learner.call("loss_fn(logits, targets)", learner.get("loss_fn"), logits, targets, hints=[
        ("Expected target size", "F.cross_entropy wants the classes in dimension 1: logits.transpose(1, 2) is "
                                 "(B, V, T) for targets (B, T) (or flatten both: (B * T, V) and (B * T,))"),
        ("out of bounds", "the padded targets are -1 (IGNORE_INDEX): pass ignore_index=-1 so the loss skips them"),
        ("ignore_index", "pass ignore_index=-1 so the loss skips the padded targets")])
    valid = targets != IGNORE_INDEX
    mistakes = [("the padded targets (-1) are counted in the mean: pass ignore_index=-1",
                 lambda: torch.nn.functional.cross_entropy(logits_values.transpose(1, 2), targets.clamp(min=0))),
                ("the mean of each document's mean, not of every valid target: one mean over the batch's targets",
                 lambda: torch.stack([torch.nn.functional.cross_entropy(logits_values[b][valid[b]], targets[b][valid[b]])
                                      for b in range(len(targets))]).mean())]
    lines = [expect_close("loss", got, loss, ("value",), mistakes)]
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        raise Wrong("the loss does not record its gradient", "compute it from logits with tensor operations")
    got.backward()
    lines.append(expect_close("logits.grad", logits.grad, logits_grad, ("document", "position", "token")))
    return lines


# Step 9 -----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def reference_docs():
    """The names file, read once per process."""
    return load_docs(default_data_path())


def reference_model():
    """The original program's start (names shuffled by seed 42), as a float64 torch model: (config,
    model, the token ids of the first documents)."""
    docs, tokenizer, config, params, _ = reference_start(reference_docs(), seed=42)
    return config, GPT.from_scalar_params(config, params), [tokenizer.encode(doc) for doc in docs[:LOG_STEPS]]


def faithful_losses(model, optimizer, scheduler, token_lists, steps, zero_grad=True, schedule=True):
    """The loop done right, or with one mistake (no zero_grad, no scheduler.step)."""
    losses = []
    for step in range(steps):
        tokens = token_lists[step % len(token_lists)]
        n = min(model.config.block_size, len(tokens) - 1)
        if zero_grad:
            optimizer.zero_grad()
        _, loss = model(torch.tensor([tokens[:n]]), torch.tensor([tokens[1:n + 1]]))
        loss.backward()
        optimizer.step()
        if schedule:
            scheduler.step()
        losses.append(loss.item())
    return losses


def reference_optimizer(model, config, lr_lambda=None):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(config.beta1, config.beta2),
                                 eps=config.eps_adam)
    lr_lambda = lr_lambda or (lambda step: learning_rate_at(step, config) / config.learning_rate)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def loop_mistakes(steps: int):
    """(description, losses) of the typical loop mistakes, each run from the same start."""
    def run(**mistake):
        config, model, token_lists = reference_model()
        optimizer, scheduler = reference_optimizer(model, config, mistake.pop("lr_lambda", None))
        return faithful_losses(model, optimizer, scheduler, token_lists, steps, **mistake)

    return [("optimizer.zero_grad() is missing: each backward adds to the gradients of the steps before",
             lambda: run(zero_grad=False)),
            ("scheduler.step() is missing: the learning rate stays at its first value", lambda: run(schedule=False)),
            ("the LambdaLR factor is the learning rate itself, not learning_rate_at(step) / config.learning_rate",
             lambda: run(lr_lambda=lambda step, c=get_config(): learning_rate_at(step, c)))]


def check_train(learner: Learner) -> list[str]:
    config, model, token_lists = reference_model()
    made = learner.call("make_optimizer(model, config)", learner.get("make_optimizer"), model, config)
    if not isinstance(made, tuple) or len(made) != 2:
        raise Wrong(f"make_optimizer returned {type(made).__name__}, expected (optimizer, scheduler)")
    optimizer, scheduler = made
    if not isinstance(optimizer, torch.optim.Adam):
        raise Wrong(f"the optimizer is a {type(optimizer).__name__}, expected torch.optim.Adam",
                    "torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=(config.beta1, config.beta2), "
                    "eps=config.eps_adam)")
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        raise Wrong(f"the schedule is a {type(scheduler).__name__}, expected torch.optim.lr_scheduler.LambdaLR")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        losses = learner.call("train(...)", learner.get("train"), model, optimizer, scheduler, token_lists, config,
                              LOG_STEPS)
    expected = scalar_side.training_losses(LOG_STEPS)
    expected_lines = [log_line(step, config.num_steps, loss) for step, loss in enumerate(expected)]
    got_lines = printed.getvalue().splitlines()
    if not isinstance(losses, list) or len(losses) != LOG_STEPS:
        raise Wrong(f"train returned {type(losses).__name__} of length {len(losses) if hasattr(losses, '__len__') else '?'}, "
                    f"expected a list of the {LOG_STEPS} losses (Python floats)")
    first_wrong = next((step for step, (got, want) in enumerate(zip(losses, expected))
                        if not abs(float(got) - want) <= 1e-9 * abs(want)), None)
    if first_wrong is not None:
        details = [f"step {first_wrong + 1}: scalar engine {expected[first_wrong]:.12f}, yours {float(losses[first_wrong]):.12f}"
                   + (f"; steps 1 to {first_wrong} agree" if first_wrong else "")]
        for description, run in loop_mistakes(LOG_STEPS):
            if all(abs(float(g) - w) <= 1e-9 * abs(w) for g, w in zip(losses, run())):
                details.append(f"these are the losses of a known mistake: {description}")
                break
        raise Wrong(f"the loss of step {first_wrong + 1} differs from the scalar engine's", *details)
    if got_lines[:LOG_STEPS] != expected_lines:
        wrong = next(i for i, (g, e) in enumerate(zip(got_lines + [""] * LOG_STEPS, expected_lines)) if g != e)
        raise Wrong(f"line {wrong + 1} of the printed log differs from the scalar engine's",
                    f"expected: {expected_lines[wrong]}",
                    f"printed:  {(got_lines + ['(nothing)'] * LOG_STEPS)[wrong]}")
    return [f"  {line}   = the scalar engine's line" for line in got_lines[:LOG_STEPS]]


# Step 10 ----------------------------------------------------------------------------------------

def check_data(learner: Learner) -> list[str]:
    config = dense_config()
    tokenizer, token_lists = tokens_of(DOCS)
    dataset = learner.call("NamesDataset(docs, tokenizer, block_size)", learner.get("NamesDataset"), DOCS, tokenizer,
                           config.block_size)
    if not isinstance(dataset, torch.utils.data.Dataset):
        raise Wrong("NamesDataset is not a torch.utils.data.Dataset", "subclass torch.utils.data.Dataset")
    length = learner.call("len(dataset)", len, dataset)
    if length != len(DOCS):
        raise Wrong(f"len(dataset) is {length}, expected {len(DOCS)}, one item per name")
    loader = learner.call("make_loader(dataset, batch_size=4)", learner.get("make_loader"), dataset, 4)
    if not isinstance(loader, torch.utils.data.DataLoader):
        raise Wrong(f"make_loader returned a {type(loader).__name__}, expected a torch.utils.data.DataLoader")
    batches = learner.call("list(make_loader(...))", list, loader)
    if len(batches) != 2:
        raise Wrong(f"the loader gave {len(batches)} batches, expected 2 (6 names in batches of 4, in order: "
                    "shuffle=False)")
    params = draw_params(config)
    model = GPT.from_scalar_params(config, params)
    per_document = scalar_side.document_losses(config, params, token_lists)
    lines = []
    for number, (batch, first) in enumerate(zip(batches, (0, 4))):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise Wrong(f"batch {number} is a {type(batch).__name__}, expected (idx, targets)")
        idx, targets = make_batch(token_lists[first:first + 4], config.block_size)
        names = ", ".join(DOCS[first:first + 4])
        for what, got, want in (("idx", batch[0], idx), ("targets", batch[1], targets)):
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                raise Wrong(f"batch {number} ({names}): {what} has shape {shape}, expected {tuple(want.shape)} "
                            "(documents x the longest document's positions, at most block_size)")
            if not torch.equal(got.long(), want):
                b, t = (got.long() != want).nonzero()[0].tolist()
                detail = ""
                if what == "targets" and want[b, t] == IGNORE_INDEX:
                    detail = "padding targets are -1 (IGNORE_INDEX), so the loss skips them"
                elif what == "idx" and want[b, t] == 0 and t >= len(token_lists[first + b]) - 1:
                    detail = "padding inputs are token 0 (any valid id: causality keeps them from earlier positions)"
                raise Wrong(f"batch {number} ({names}): {what}[{b}, {t}] is {int(got[b, t])}, expected {int(want[b, t])}",
                            f"{what}[{b}] should be {want[b].tolist()}", detail)
        with torch.no_grad():
            _, loss = model(batch[0].long(), batch[1].long())
        losses = [x for doc in per_document[first:first + 4] for x in doc]
        lines.append(f"  batch {number}: {names}: idx {tuple(idx.shape)} and targets as make_batch pads them")
        lines.append(expect_close(f"batch {number} loss", loss, sum(losses) / len(losses), ("value",)))
    return lines


# Step 11 ----------------------------------------------------------------------------------------

def check_checkpoint(learner: Learner) -> list[str]:
    config, model, token_lists = reference_model()
    optimizer, scheduler = reference_optimizer(model, config)
    first = faithful_losses(model, optimizer, scheduler, token_lists[:3], 3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "run.pt"
        learner.call("save_checkpoint(path, model, optimizer, scheduler, step=3)", learner.get("save_checkpoint"), path,
                     model, optimizer, scheduler, 3)
        if not path.is_file():
            raise Wrong("save_checkpoint wrote no file at the path it was given", "torch.save(checkpoint, path)")
        fresh = GPT(config).double()  # other weights: what was saved has to come back
        fresh_optimizer, fresh_scheduler = reference_optimizer(fresh, config)
        step = learner.call("load_checkpoint(path, model, optimizer, scheduler)", learner.get("load_checkpoint"), path,
                            fresh, fresh_optimizer, fresh_scheduler)
    if step != 3:
        raise Wrong(f"load_checkpoint returned step {step!r}, expected 3, the step saved")
    for name, param in model.named_parameters():
        if not torch.equal(param, dict(fresh.named_parameters())[name]):
            raise Wrong(f"after loading, {name} is not the saved weight",
                        "save model.state_dict() and give it to model.load_state_dict()")
    saved_state, loaded_state = optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]
    if not loaded_state or any(not torch.equal(saved_state[i]["exp_avg"], loaded_state[i]["exp_avg"]) for i in saved_state):
        raise Wrong("after loading, Adam's moments (exp_avg, exp_avg_sq) are not the saved ones",
                    "save optimizer.state_dict() too and load it with optimizer.load_state_dict(): without them the "
                    "next steps differ from an uninterrupted run")
    if fresh_scheduler.last_epoch != scheduler.last_epoch:
        raise Wrong(f"after loading, the schedule is at step {fresh_scheduler.last_epoch}, expected {scheduler.last_epoch}",
                    "save scheduler.state_dict() too and load it with scheduler.load_state_dict()")
    rest = faithful_losses(fresh, fresh_optimizer, fresh_scheduler, token_lists[3:5], 2)
    expected = scalar_side.training_losses(LOG_STEPS)[:5]
    for step, (got, want) in enumerate(zip(first + rest, expected)):
        if not abs(got - want) <= 1e-9 * abs(want):
            raise Wrong(f"after resuming, the loss of step {step + 1} is {got:.12f}, the scalar engine's {want:.12f}")
    return ["  weights, Adam's moments and the schedule come back as saved",
            "  steps 1-3, saved, loaded into a fresh model, steps 4-5: the scalar engine's losses "
            + ", ".join(f"{loss:.4f}" for loss in first + rest)]


# Step 12 ----------------------------------------------------------------------------------------

SAMPLES = 5


def check_sample(learner: Learner) -> list[str]:
    docs, tokenizer, config, params, rng = reference_start(reference_docs(), seed=42)
    expected = scalar_side.sample_names(config, params, tokenizer.chars, clone(rng), SAMPLES)
    model = GPT.from_scalar_params(config, params)
    model.train()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, torch.is_grad_enabled())))
    learner_rng = clone(rng)
    sample = learner.get("sample")
    got = [learner.call("sample(model, tokenizer, rng)", sample, model, tokenizer, learner_rng) for _ in range(SAMPLES)]
    if not seen:
        raise Wrong("sample never called the model")
    if any(training for training, _ in seen):
        raise Wrong("the model ran in training mode: call model.eval() before sampling",
                    "eval() changes nothing in this model's numbers (it has no dropout), but it is what a layer "
                    "like dropout reads, and the habit that keeps them right")
    if any(grad for _, grad in seen):
        raise Wrong("the model ran with gradients recorded: sample inside `with torch.no_grad():`",
                    "without it every forward builds a graph for a backward that never comes")
    for number, (name, want) in enumerate(zip(got, expected)):
        if name != want:
            raise Wrong(f"sample {number + 1} is {name!r}, the scalar engine draws {want!r} from the same rng",
                        "start from BOS, run the whole prefix, take the last position's logits divided by "
                        "temperature, softmax in float64, rng.choices(range(vocab_size), weights=probs.tolist())")
    return [f"  {SAMPLES} names, as the scalar engine draws them: {', '.join(got)}",
            "  model.eval() and torch.no_grad() in force at every forward"]


def clone(rng: random.Random) -> random.Random:
    copy = random.Random()
    copy.setstate(rng.getstate())
    return copy


# Step 13 ----------------------------------------------------------------------------------------

def best_device_here() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(learner: Learner) -> list[str]:
    device = learner.call("pick_device()", learner.get("pick_device"))
    expected = best_device_here()
    if torch.device(device).type != expected.type:
        raise Wrong(f"pick_device() returned {device}, but the best device here is {expected}",
                    f"torch.cuda.is_available() is {torch.cuda.is_available()} on this machine: ask it, then "
                    "torch.backends.mps.is_available(), and fall back to the CPU")
    config = dense_config()
    params = draw_params(config)
    rng = random.Random(SEED + 13)
    idx = torch.tensor([[rng.randrange(config.vocab_size) for _ in range(config.block_size)]])
    coef = scalar_side.random_rows(rng, 1, config.block_size, config.vocab_size)
    logits, _ = scalar_side.gpt_logits(config, params, idx.tolist(), coef)
    model = GPT.from_scalar_params(config, params)
    got = learner.call("logits_on(device, model, idx)", learner.get("logits_on"), expected, model, idx, hints=[
        ("Expected all tensors to be on the same device", "move the model and the batch to the device: "
                                                          "model.to(device), idx.to(device)")])
    if not isinstance(got, torch.Tensor) or got.device.type != "cpu":
        raise Wrong("logits_on should return the logits on the CPU (.cpu()), to be printed or compared")
    if next(model.parameters()).device.type != expected.type:
        raise Wrong(f"the model's weights are on {next(model.parameters()).device}, not on {expected}",
                    "model.to(device) moves every parameter (it changes the module in place)")
    return [f"  pick_device() -> {device} (the best device here)",
            expect_close(f"logits computed on {expected}", got.double(), logits, ("document", "position", "token"))]
