"""What compare runs: the training scripts' own step on both engines, traced from outside the models.

Oracles: the scripts' modules (the step they import is the one compare calls), a deliberate
change to that step (compare's verdict must move with it), and the models' own stage order.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import REPO, load_script

import microgpt_scalar.train
import microgpt_torch.train
from compare import compare_step
from compare.step.documents import ALPHABET, given_documents
from microgpt_scalar.data import Corpus
from compare.engine.faults import faulty_engine
from compare.step.scalar import ScalarSide
from compare.step.torch_side import TorchSide
from compare.step.trace import trace_stage_names
from compare.step.weights import dense_weights
from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import GPT

DOCS = ["emma", "olivia"]


def test_trace_stage_names_cover_every_layer_in_forward_order():
    names = trace_stage_names(get_config(n_layer=2))
    per_layer = ["attn_norm", "q", "k", "v", "attn_logits", "attn_weights", "attn_out", "attn_residual",
                 "mlp_norm", "mlp_hidden", "mlp_act", "mlp_residual"]
    expected = ["embed", "embed_norm"] + [f"layer{i}.{s}" for i in range(2) for s in per_layer] + ["logits", "probs", "loss"]
    assert names == expected


def test_the_scripts_step_is_the_one_compare_runs():
    assert load_script("train_scalar").train_step is microgpt_scalar.train.train_step
    assert load_script("train_torch").faithful_steps is microgpt_torch.train.faithful_steps  # which calls train_step


def test_the_torch_side_runs_the_fused_model_the_script_builds():
    script = load_script("train_torch")
    args = script.parse_args(["--steps", "2"])
    docs = given_documents(["emma", "olivia", "ava"]).docs
    assert type(script.start(args, Corpus.from_docs(list(docs)), torch.device("cpu"), torch.float64)[3]) is FusedGPT
    side = TorchSide(dense_weights(get_config(), ALPHABET, seed=1), torch.float64, "cpu")
    assert type(side.model) is FusedGPT and type(side.readable) is GPT  # the step fused, the trace readable


def scalar_numbers(report) -> tuple:
    """What the scalar engine computed in a report: every step's loss and the focus step's gradients."""
    return ([step.scalar for step in report.losses],
            {name: values["scalar"] for name, values in report.gradient_values.items()})


def test_the_engines_process_computes_what_this_process_computes():
    """The project's engine in a process of its own (the default) and handed in as a class (run
    here) give the same numbers, bit for bit; a wrong engine handed in does not."""
    in_child = scalar_numbers(compare_step(docs=DOCS, steps=2))
    assert scalar_numbers(compare_step(docs=DOCS, steps=2, engine=Value)) == in_child
    wrong = faulty_engine("grad-assign").value_cls
    assert scalar_numbers(compare_step(docs=DOCS, steps=2, engine=wrong))[1] != in_child[1]


def test_a_change_to_the_scalar_train_step_changes_compares_result(monkeypatch):
    # The class handed in runs in this process, where the change is seen (a file's engine runs
    # the same ScalarSide in a process of its own).
    assert compare_step(docs=DOCS, engine=Value).agrees
    original = microgpt_scalar.train.learning_rate_at
    monkeypatch.setattr(microgpt_scalar.train, "learning_rate_at", lambda step, config: 1.001 * original(step, config))
    report = compare_step(docs=DOCS, engine=Value)
    assert not report.agrees
    assert report.focus.loss.agrees and all(d.agrees for d in report.focus.gradients)  # the update alone moved
    assert not any(d.agrees for d in report.focus.parameters)


def test_a_change_to_the_torch_train_step_changes_compares_result(monkeypatch):
    original = microgpt_torch.train.set_learning_rate

    def doubled_rate(optimizer, step, config):
        rate = original(optimizer, step, config)
        for group in optimizer.param_groups:
            group["lr"] = 2 * rate
        return rate

    monkeypatch.setattr(microgpt_torch.train, "set_learning_rate", doubled_rate)
    report = compare_step(docs=DOCS)
    assert not report.agrees and not any(d.agrees for d in report.focus.parameters)


def test_both_sides_read_gradients_from_before_the_update_and_moments_after_it():
    weights = dense_weights(get_config(), ALPHABET, seed=2)
    batch = given_documents(DOCS).batch(0)
    scalar = ScalarSide(weights, Value, Adam).step(batch, 0)
    torch_result = TorchSide(weights, torch.float64, "cpu").step(batch, 0)
    for result in (scalar, torch_result):
        grad = result.grads["lm_head"][0][0]
        assert grad != 0 and result.adam_m["lm_head"][0][0] == pytest.approx(0.1 * grad, rel=1e-12)  # m = (1 - beta1) g
        assert result.params["lm_head"][0][0] != weights.params["lm_head"][0][0]
        assert [len(trace["loss"]) for trace in result.traces] == [5, 7]  # "emma", "olivia": a target per letter, and BOS


def test_importing_compare_and_certify_leaves_torch_unimported():
    """In one fresh process, whether torch is loaded: after the imports, after naming the check,
    after running it."""
    code = ("import sys, compare, compare.certify; print('torch' in sys.modules)\n"
            "compare.compare_step; print('torch' in sys.modules)\n"
            "compare.compare_step(docs=['emma']); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    imported, named, ran = out.split()
    assert imported == "False"
    assert named == "False"  # not even the check: it starts the engine's process training before torch loads
    assert ran == "True"  # the torch side: imported when used
