"""Faithful training and sampling against the scalar engine and the published output;
the batched-training utilities against plain sums."""
from __future__ import annotations

import functools
import random

import pytest
import reference
import torch
from torch_checks import assert_float64_close

from microgpt_scalar.config import get_config, param_shapes
from microgpt_scalar.data import Tokenizer, default_data_path, load_docs
from microgpt_scalar.fused import FusedGPT as FusedScalarGPT
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam
from microgpt_scalar.train import sample as scalar_sample
from microgpt_scalar.train import train_step as scalar_train_step
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import GPT, IGNORE_INDEX
from microgpt_torch.optim import make_optimizer
from microgpt_torch.train import (NonFiniteLossError, batch_order, batched_train_step, evaluate, faithful_steps,
                                  generate, make_batch, reference_start, sample, split_docs, train_step)

DATA = default_data_path()  # the names file shipped with the package
PRESETS = ["microgpt", "microgpt-v2"]
# Per-step losses of the two engines differ by float64 rounding only: measured worst 4.4e-16
# over the first 5 steps, 2.7e-15 over 100, 3.3e-13 over the whole 500-step microgpt run.
# Weights after 5 steps differ by at most 1.6e-14: Adam's first updates, about lr * g / |g|,
# carry the rounding of the smallest gradients at full size (the readable forward, whose
# gradients round differently, measured 3.2e-15). A real error (a wrong beta, a missed bias
# correction, a wrong gradient) moves a weight by 1e-4 or more.
LOSS_ATOL, PARAM_ATOL = 1e-13, 1e-13


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def docs():
    return load_docs(DATA)


def line(step: int, num_steps: int, loss: float) -> str:
    return f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}"


def faithful_torch_run(docs, preset, steps=None):
    docs, tokenizer, config, params, rng = reference_start(docs, seed=42, preset=preset)
    model = FusedGPT.from_scalar_params(config, params)  # as scripts/train_torch.py builds it
    optimizer = make_optimizer(model, config)
    losses = []
    for step, loss in faithful_steps(model, optimizer, docs, tokenizer):
        losses.append(loss)
        if steps is not None and step + 1 == steps:
            break
    return model, tokenizer, config, rng, losses


def test_initial_weights_equal_the_scalar_engines_for_the_seed(docs):
    _, _, config, params, _ = reference_start(docs, seed=42)
    rng = random.Random(42)
    shuffled = list(docs)
    rng.shuffle(shuffled)
    assert params == ScalarGPT(config, rng).params_as_floats()


def scalar_run(docs, config, steps: int, model_class=ScalarGPT):
    """The oracle: the scalar engine's model and losses after the reference program's first
    `steps` steps, started from its own random.Random(42). `model_class` may be the scalar
    engine's fused model, whose every value and gradient is the per-op model's, bit for bit
    (tests/test_fused.py), in a seventh of the time."""
    rng = random.Random(42)
    shuffled = list(docs)
    rng.shuffle(shuffled)
    tokenizer = Tokenizer.from_docs(shuffled)
    scalar = model_class(config, rng)
    adam = Adam(scalar.parameters(), config)
    return scalar, [scalar_train_step(scalar, adam, tokenizer.encode(shuffled[s]), s) for s in range(steps)]


@pytest.mark.parametrize("preset", PRESETS)
def test_faithful_first_steps_equal_the_scalar_engines_printed_log(docs, preset):
    model, _, config, _, losses = faithful_torch_run(docs, preset, steps=5)
    scalar, scalar_losses = scalar_run(docs, config, 5)
    assert [line(s, config.num_steps, x) for s, x in enumerate(losses)] == \
           [line(s, config.num_steps, x) for s, x in enumerate(scalar_losses)]
    assert_float64_close("losses", losses, scalar_losses, LOSS_ATOL, 0.0)
    expected = scalar.params_as_floats()
    for name, rows in model.scalar_params().items():
        assert_float64_close(f"{name} after 5 steps", rows, expected[name], PARAM_ATOL, 0.0)


@functools.cache
def whole_faithful_run(preset):
    """The whole faithful run of a preset (a second or two in torch), made once for the tests
    of this file that read it (none changes it)."""
    return faithful_torch_run(load_docs(DATA), preset)


@pytest.fixture(scope="module", params=PRESETS)
def full_run(request):
    return request.param, whole_faithful_run(request.param)


def test_faithful_run_prints_the_published_output(full_run):
    preset, (model, tokenizer, config, run_rng, losses) = full_run
    published = reference.published(preset)  # the original program's output, names.txt, seed 42
    assert f"num params: {sum(p.numel() for p in model.parameters())}" in published.lines
    assert config.num_steps == len(losses) == published.num_steps
    printed = [line(step - 1, config.num_steps, losses[step - 1]) for step in published.steps]
    assert printed == [text for text in published.lines if text.startswith("step ")]
    rng = random.Random()
    rng.setstate(run_rng.getstate())  # a copy: the fixture is shared
    names = [sample(model, tokenizer, rng, 0.5) for _ in published.samples]
    assert names == published.samples


def test_published_figure_check_fails_for_a_wrong_seed(docs):
    docs, tokenizer, config, params, rng = reference_start(docs, seed=43)
    model = FusedGPT.from_scalar_params(config, params)
    optimizer = make_optimizer(model, config)
    loss = train_step(model, optimizer, tokenizer.encode(docs[0]), 0)
    assert line(0, 500, loss) not in reference.published("microgpt").lines


@pytest.mark.parametrize("temperature", [0.5, 1.0, 0.7])
def test_samples_are_identical_in_both_engines(full_run, temperature):
    """Trained weights (varied names) in both engines, the same seed for both samplers. The
    scalar engine samples with its fused model, which draws the per-op model's names bit for
    bit (tests/test_fused.py) in a sixth of the time; the per-op model's samples are compared
    with torch's in tests/test_torch_scripts.py."""
    _, (model, tokenizer, config, _, _) = full_run
    scalar = FusedScalarGPT(config, params=model.scalar_params())
    torch_rng, scalar_rng = random.Random(7), random.Random(7)
    names = [sample(model, tokenizer, torch_rng, temperature) for _ in range(25)]
    assert names == [scalar_sample(scalar, tokenizer, scalar_rng, temperature) for _ in range(25)]
    assert torch_rng.getstate() == scalar_rng.getstate()  # the same number of draws
    assert len(set(names)) > 10  # varied names, so equal lists are not an accident
    other = [sample(model, tokenizer, random.Random(8), temperature) for _ in range(25)]
    assert other != names  # the comparison can fail


def trained_like_params(config, seed=5):
    rng = random.Random(seed)
    return {name: [[rng.gauss(0, 0.5) for _ in range(n_in)] for _ in range(n_out)]
            for name, (n_out, n_in) in param_shapes(config)}


def test_generate_returns_names_from_the_generator(docs):
    tokenizer = Tokenizer.from_docs(docs)
    config = get_config("microgpt", vocab_size=tokenizer.vocab_size)
    model = GPT.from_scalar_params(config, trained_like_params(config))
    names = generate(model, tokenizer, torch.Generator().manual_seed(3), 0.5, 30)
    assert names == generate(model, tokenizer, torch.Generator().manual_seed(3), 0.5, 30)
    assert len(names) == 30 and all(len(name) <= config.block_size for name in names)
    assert set("".join(names)) <= set(tokenizer.chars)


def test_train_step_refuses_a_non_finite_loss_and_leaves_the_weights(docs):
    docs, tokenizer, config, params, _ = reference_start(docs, seed=42)
    params["lm_head"][0][0] = float("nan")
    model = FusedGPT.from_scalar_params(config, params)
    optimizer = make_optimizer(model, config)
    before = model.scalar_params()
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1"):
        train_step(model, optimizer, tokenizer.encode(docs[0]), 0)
    after = model.scalar_params()
    assert str(after) == str(before) and not optimizer.state  # no update: Adam has taken no step


def test_batched_step_on_one_document_equals_the_faithful_step(docs):
    docs, tokenizer, config, params, _ = reference_start(docs, seed=42)
    models = [FusedGPT.from_scalar_params(config, params) for _ in range(2)]
    optimizers = [make_optimizer(m, config) for m in models]
    for step in range(3):
        tokens = tokenizer.encode(docs[step])
        loss = train_step(models[0], optimizers[0], tokens, step)
        idx, targets = make_batch([tokens], config.block_size)
        batched_loss = batched_train_step(models[1], optimizers[1], idx, targets, idx.size(1), step)
        # One document, one forward: rounding only (measured 4e-16).
        assert_float64_close(f"step {step} loss", batched_loss, loss, 1e-12, 0.0)
    expected = models[0].scalar_params()
    for name, rows in models[1].scalar_params().items():
        assert_float64_close(f"{name} after 3 steps", rows, expected[name], 1e-12, 0.0)


def test_make_batch_pads_inputs_and_ignores_padded_targets():
    idx, targets = make_batch([[5, 1, 2, 5], [5, 3, 5], [5, 0, 1, 2, 3, 4, 5]], block_size=4)
    assert idx.tolist() == [[5, 1, 2, 0], [5, 3, 0, 0], [5, 0, 1, 2]]
    assert targets.tolist() == [[1, 2, 5, IGNORE_INDEX], [3, 5, IGNORE_INDEX, IGNORE_INDEX], [0, 1, 2, 3]]


def test_split_docs_holds_out_the_last_fraction():
    docs = [f"d{i}" for i in range(20)]
    train, val = split_docs(docs, 0.1)
    assert train == docs[:18] and val == docs[18:]
    with pytest.raises(ValueError, match="cannot be split"):
        split_docs(["only"], 0.5)


def test_batch_order_visits_every_document_once_per_epoch():
    order = batch_order(10, 3, torch.Generator().manual_seed(0))
    epoch = [next(order) for _ in range(3)]  # 3 full batches; the 10th document waits
    assert all(len(batch) == 3 for batch in epoch)
    assert len({i for batch in epoch for i in batch}) == 9
    again = batch_order(10, 3, torch.Generator().manual_seed(0))
    assert [next(again) for _ in range(3)] == epoch
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        next(batch_order(10, 0, torch.Generator()))


def test_batches_larger_than_the_documents_draw_with_replacement():
    """The oracle: torch.randint with the same generator, batch after batch."""
    order = batch_order(5, 12, torch.Generator().manual_seed(1))
    expected = torch.Generator().manual_seed(1)
    for _ in range(3):
        assert next(order) == torch.randint(5, (12,), generator=expected).tolist()
    batch = next(batch_order(5, 12, torch.Generator().manual_seed(1)))
    assert len(batch) == 12 and len(set(batch)) < 12 and set(batch) <= set(range(5))
    with pytest.raises(ValueError, match="grouping by length needs a batch size of at most the 5"):
        next(batch_order(5, 12, torch.Generator(), torch.ones(5)))


def test_grouped_batches_hold_one_length_and_visit_every_document_once_per_epoch():
    lengths = torch.tensor([1 + (7 * i) % 5 for i in range(60)])  # 12 documents of each length 1 .. 5
    order = batch_order(60, 6, torch.Generator().manual_seed(0), lengths)
    epoch = [next(order) for _ in range(10)]
    assert sorted(i for batch in epoch for i in batch) == list(range(60))
    assert all(len({int(lengths[i]) for i in batch}) == 1 for batch in epoch)  # 12 = 2 batches of 6 per length
    batch_lengths = [int(lengths[batch[0]]) for batch in epoch]
    assert batch_lengths != sorted(batch_lengths)  # the batches themselves are shuffled
    again = batch_order(60, 6, torch.Generator().manual_seed(0), lengths)
    assert [next(again) for _ in range(10)] == epoch


def test_grouped_batches_leave_out_random_documents_not_the_longest():
    """63 documents in batches of 6: 3 wait each epoch; sorting must not always leave the longest."""
    lengths = torch.tensor([1 + i % 5 for i in range(60)] + [9, 9, 9])
    order = batch_order(63, 6, torch.Generator().manual_seed(0), lengths)
    epochs = [[next(order) for _ in range(10)] for _ in range(20)]
    longest_seen = [any(int(lengths[i]) == 9 for batch in epoch for i in batch) for epoch in epochs]
    assert sum(longest_seen) >= 15  # each long document waits in about 1 epoch of 21


def test_grouping_by_length_cuts_the_padding_of_real_batches(docs):
    """Padding counted from the documents' lengths, batches of 256 over 20 steps."""
    _, tokenizer, config, _, _ = reference_start(docs, seed=42)
    lengths = torch.tensor([min(config.block_size, len(tokenizer.encode(doc)) - 1) for doc in docs])

    def padding(order):
        batches = [lengths[next(order)] for _ in range(20)]
        return 1 - sum(int(b.sum()) for b in batches) / sum(len(b) * int(b.max()) for b in batches)

    shuffled = padding(batch_order(len(docs), 256, torch.Generator().manual_seed(0)))
    grouped = padding(batch_order(len(docs), 256, torch.Generator().manual_seed(0), lengths))
    assert shuffled > 0.1 and grouped < 0.01


def test_evaluate_is_the_mean_loss_per_target(docs):
    tokenizer = Tokenizer.from_docs(docs)
    config = get_config("microgpt", vocab_size=tokenizer.vocab_size)
    model = GPT.from_scalar_params(config, trained_like_params(config))
    token_lists = [tokenizer.encode(doc) for doc in docs[:23]]
    idx, targets = make_batch(token_lists, config.block_size)
    _, loss = model(idx, targets)
    assert_float64_close("validation loss in batches of 5", evaluate(model, token_lists, batch_size=5), loss, 1e-12, 0.0)


@pytest.mark.slow
def test_faithful_log_follows_the_scalar_engine_for_100_steps(docs):
    """Every printed line of the first 100 steps of the 500-step run (the whole run agrees
    too, line for line; it takes the scalar engine a minute). The torch run is the whole
    run the published output is checked on; the scalar engine's is its fused model (the
    per-op one is checked step by step above)."""
    _, _, config, _, losses = whole_faithful_run("microgpt")
    _, scalar_losses = scalar_run(docs, config, 100, FusedScalarGPT)
    assert [line(s, 500, x) for s, x in enumerate(losses[:100])] == [line(s, 500, x) for s, x in enumerate(scalar_losses)]
    assert_float64_close("losses of 100 steps", losses[:100], scalar_losses, LOSS_ATOL, 0.0)
