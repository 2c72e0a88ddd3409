"""Batched training on the device-resident documents against the loop it replaced (kept here
as the oracle: batches padded in Python, a float learning rate, the loss read every step)."""
from __future__ import annotations

import math
import os

import pytest
import torch

from microgpt_scalar.data import Corpus, DataError, default_data_path, load_docs, shuffle_docs
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import IGNORE_INDEX
from microgpt_torch.optim import make_graph_ready, make_optimizer
from microgpt_torch.train import (NonFiniteLossError, PackedDocuments, batched_steps, loss_value, reference_start,
                                  split_docs)

DATA = default_data_path()  # the names file shipped with the package


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


def padded_batch(token_lists, block_size):
    """The oracle's batch: document b's first n_b positions, padded with 0 and IGNORE_INDEX."""
    lengths = [min(block_size, len(tokens) - 1) for tokens in token_lists]
    width = max(lengths)
    idx = [tokens[:n] + [0] * (width - n) for tokens, n in zip(token_lists, lengths)]
    targets = [tokens[1:n + 1] + [IGNORE_INDEX] * (width - n) for tokens, n in zip(token_lists, lengths)]
    return torch.tensor(idx), torch.tensor(targets), sum(lengths)


def oracle_batches(num_docs, batch_size, generator):
    """The batch order as drawn before: a fresh permutation each epoch, a short last batch dropped."""
    while True:
        order = torch.randperm(num_docs, generator=generator)[:num_docs // batch_size * batch_size]
        yield from (order[start:start + batch_size].tolist() for start in range(0, len(order), batch_size))


def oracle_losses(model, config, train_tokens, batch_size, seed, steps):
    """The loop the device-resident path replaced, written out from first principles."""
    optimizer = make_optimizer(model, config)
    order, losses = oracle_batches(len(train_tokens), batch_size, torch.Generator().manual_seed(seed)), []
    for step in range(steps):
        idx, targets, num_targets = padded_batch([train_tokens[i] for i in next(order)], config.block_size)
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        loss_sum = loss * (targets != IGNORE_INDEX).sum()
        (loss_sum / num_targets).backward()
        losses.append(loss_sum.item() / num_targets)
        for group in optimizer.param_groups:  # cosine schedule (the microgpt preset)
            group["lr"] = config.learning_rate * (0.5 * (1 + math.cos(math.pi * step / config.num_steps)))
        optimizer.step()
    return losses


@pytest.fixture(scope="module")
def run_start():
    corpus = Corpus.from_file(DATA)
    docs, tokenizer, config, params, _ = reference_start(corpus, seed=42, num_steps=50)
    train_docs, _ = split_docs(docs, 0.1)
    return train_docs, tokenizer, config, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_resident_graph_ready_steps_equal_the_old_loop_for_50_steps(run_start, dtype):
    train_docs, tokenizer, config, params = run_start
    oracle_model = FusedGPT.from_scalar_params(config, params, dtype=dtype)
    train_tokens = [tokenizer.encode(doc) for doc in train_docs]
    expected = oracle_losses(oracle_model, config, train_tokens, 64, 3, 50)

    model = FusedGPT.from_scalar_params(config, params, dtype=dtype)
    optimizer = make_graph_ready(make_optimizer(model, config))
    assert isinstance(optimizer.param_groups[0]["lr"], torch.Tensor) and optimizer.param_groups[0]["capturable"]
    train = PackedDocuments.of_corpus(train_docs, config.block_size)
    steps = batched_steps(model, optimizer, train, 64, torch.Generator().manual_seed(3), check_each_step=False)
    losses = [loss for _, loss in steps]
    assert all(isinstance(loss, torch.Tensor) for loss in losses)  # nothing read back in the loop
    assert [loss_value(loss, s) for s, loss in enumerate(losses)] == expected
    for name, p in model.named_parameters():  # and the weights after 50 updates, bit for bit
        assert torch.equal(p, dict(oracle_model.named_parameters())[name]), name
    # Not vacuous: another batch order gives other losses.
    other = FusedGPT.from_scalar_params(config, params, dtype=dtype)
    assert oracle_losses(other, config, train_tokens, 64, 4, 3) != expected[:3]


def test_packed_corpus_batches_equal_batches_padded_by_hand(run_start):
    train_docs, tokenizer, config, _ = run_start
    packed = PackedDocuments.of_corpus(train_docs, config.block_size)
    rows = [0, 5, 17, 3, 28000, len(train_docs) - 1]
    expected = padded_batch([tokenizer.encode(train_docs[r]) for r in rows], config.block_size)
    idx, targets, num_targets = packed.batch(rows)
    assert torch.equal(idx, expected[0]) and torch.equal(targets, expected[1]) and num_targets == expected[2]
    long_doc = max(range(len(train_docs)), key=lambda r: len(train_docs[r]))  # longer than block_size
    assert len(train_docs[long_doc]) > config.block_size
    wide, wide_targets, n = packed.batch([long_doc, 0], width=config.block_size)
    by_hand = padded_batch([tokenizer.encode(train_docs[r]) for r in (long_doc, 0)], config.block_size)
    assert wide.shape == (2, config.block_size) and n == by_hand[2]
    assert torch.equal(wide[:, :by_hand[0].size(1)], by_hand[0]) and torch.equal(wide_targets, by_hand[1])


def test_a_non_finite_loss_is_found_at_the_read_back(run_start):
    train_docs, _, config, params = run_start
    params = {name: rows for name, rows in params.items()}
    params["lm_head"] = [[float("nan")] * len(row) for row in params["lm_head"]]
    model = FusedGPT.from_scalar_params(config, params, dtype=torch.float32)
    optimizer = make_optimizer(model, config)
    steps = batched_steps(model, optimizer, PackedDocuments.of_corpus(train_docs, config.block_size), 8,
                          torch.Generator().manual_seed(0), check_each_step=False)
    step, loss = next(steps)  # no error yet: nothing was read
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1"):
        loss_value(loss, step)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 1"):
        next(batched_steps(model, make_optimizer(model, config), PackedDocuments.of_corpus(train_docs, 8), 8,
                           torch.Generator().manual_seed(0)))


def test_corpus_reads_the_documents_load_docs_reads(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("  ab \r\n\nłódź\n \nzoë x\nab\n", encoding="utf-8")
    for chunk_bytes in (1, 3, 7, 1 << 20):  # pieces that cut lines and characters in two
        corpus = Corpus.from_file(path, chunk_bytes)
        assert list(corpus) == load_docs(path) == ["ab", "łódź", "zoë x", "ab"]
        assert corpus.chars == sorted(set("".join(load_docs(path))))
    names = Corpus.from_file(DATA)
    assert list(names) == load_docs(DATA) and names.ids.typecode == "B"
    assert names.ids.itemsize * len(names.ids) == sum(len(doc) for doc in load_docs(DATA))


def test_shuffled_corpus_is_in_the_order_shuffling_the_list_gives():
    docs = load_docs(DATA)
    shuffled, rng = shuffle_docs(docs, 42)
    view, view_rng = shuffle_docs(Corpus.from_file(DATA), 42)
    assert list(view) == shuffled and rng.getstate() == view_rng.getstate()  # the same draws
    assert list(view[:-3]) == shuffled[:-3] and view[-1] == shuffled[-1]
    assert list(view) != list(shuffle_docs(Corpus.from_file(DATA), 43)[0])


def test_corpus_names_the_first_byte_that_is_not_utf8(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes("ab\nçé\n".encode() + b"\xff\nxx\n")
    for chunk_bytes in (1, 2, 5, 1 << 20):
        with pytest.raises(DataError, match=r"is not UTF-8 text: .*bad.txt \(byte 8\)$"):
            Corpus.from_file(path, chunk_bytes)
    (tmp_path / "empty.txt").write_text(" \n\n")
    with pytest.raises(DataError, match="no documents"):
        Corpus.from_file(tmp_path / "empty.txt")


def run_script(capsys, *argv):
    from helpers import load_script

    code = load_script("train_torch").main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_reading_the_loss_every_few_steps_prints_what_reading_it_every_step_prints(capsys):
    common = ["--mode", "batched", "--data", DATA, "--steps", 12, "--batch-size", 16, "--eval-every", 4,
              "--samples", 3]
    code, every_step, _ = run_script(capsys, *common)
    code_5, every_5, _ = run_script(capsys, *common, "--log-every", 5)
    assert (code, code_5) == (0, 0) and every_5 == every_step
    assert len([line for line in every_step.splitlines() if " | val loss " in line]) == 3


def test_a_non_finite_loss_stops_the_run_at_the_next_read_back(capsys, tmp_path):
    """A step size of 1e307 sends the weights to inf; with the loss read every 4 steps and at
    every checkpoint (every 2), the run stops at the first read-back after it, step 2, with the
    one line a run that reads every step prints."""
    path = tmp_path / "run.pt"
    common = ["--mode", "batched", "--data", DATA, "--steps", 12, "--batch-size", 16, "--eval-every", 0,
              "--save", path, "--save-every", 2]
    code, out, err = run_script(capsys, *common, "--learning-rate", 1e307, "--log-every", 4)
    assert (code, out.count("\n")) == (1, 1)  # the header only
    assert err.splitlines()[-1].startswith("error: ") and "step 2" in err.splitlines()[-1]
    code, _, err_each = run_script(capsys, *common, "--learning-rate", 1e307)
    assert code == 1 and err_each.splitlines()[-1] == err.splitlines()[-1]


FAULTS_PER_STEP = """
import resource, sys
import torch
torch.set_num_threads(1)
from microgpt_torch.allocator import keep_freed_memory
from microgpt_torch.fast import BatchedGPT
from microgpt_torch.optim import make_optimizer
from microgpt_torch.train import PackedDocuments, batch_order, batched_train_step, reference_start
from microgpt_scalar.data import default_data_path, load_docs
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
docs, tokenizer, config, params, _ = reference_start(load_docs(default_data_path()), seed=42)
packed = PackedDocuments.of([tokenizer.encode(doc) for doc in docs[:2048]], config.block_size)
model = BatchedGPT.from_scalar_params(config, params, dtype=torch.float32)
optimizer = make_optimizer(model, config)
order = batch_order(len(packed), 512, torch.Generator().manual_seed(0))
for step in range(28):
    if step == 8:  # past the first steps, which map the pages the later ones reuse
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batched_train_step(model, optimizer, *packed.batch(next(order)), step)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 20)
"""


def test_kept_memory_spares_batched_steps_the_page_faults_of_fresh_memory():
    """A batched step (512 documents, eager) writes to pages the process already has: at most
    a few dozen page faults a step (0 to 17 measured), where glibc's own settings give
    hundreds (390 to 520)."""
    import subprocess
    import sys

    from helpers import REPO

    run = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, "keep"], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    kept, faults_per_step = run.stdout.split()
    if kept == "False":
        pytest.skip("this C library has no mallopt")
    assert kept == "True" and float(faults_per_step) < 50, run.stdout + run.stderr
