"""Where a comparison starts: reference, dense and checkpoint weights, and their passage to torch.

Oracles: the scalar package's own start of a run (`start_run`), torch's copy of the weights,
and checkpoints written by each engine's own save functions.
"""
from __future__ import annotations

import pytest
import torch

from compare import compare_step
from compare.step.documents import ALPHABET, BUILTIN_DOCS, file_documents, given_documents
from compare.step.weights import dense_weights, load_weights, reference_weights
from microgpt_scalar.checkpoint import CheckpointError, checkpoint_of, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.data import DataError, shuffle_docs
from microgpt_scalar.train import start_run, train_step
from microgpt_torch import checkpoint as torch_checkpoint
from microgpt_torch.checkpoint import from_scalar_checkpoint, to_scalar_checkpoint
from microgpt_torch.model import GPT as TorchGPT


def test_reference_weights_are_the_ones_the_reference_run_draws():
    config = get_config()
    _, tokenizer, model, _, _ = start_run(list(BUILTIN_DOCS), config, seed=42)
    weights = reference_weights(config, ALPHABET, 42, shuffle_docs(BUILTIN_DOCS, 42)[1])
    assert tokenizer.chars == list(ALPHABET)  # the built-in names use every letter
    assert weights.params == model.params_as_floats()
    assert not any(x for row in weights.params["layer0.attn_wo"] for x in row)  # std 0 in microgpt


def test_reference_weights_need_the_generator_that_shuffled_the_documents():
    with pytest.raises(ValueError, match="continue the generator that shuffled the documents"):
        load_weights("reference", get_config(), ALPHABET, seed=42)


def test_dense_weights_have_no_zero_anywhere():
    weights = dense_weights(get_config(), ALPHABET, seed=42)
    assert all(x != 0 for rows in weights.params.values() for row in rows for x in row)
    assert weights.config.proj_init_std == 0.0  # the run's config is unchanged; only the draw differs


def test_weights_cross_to_torch_and_back_exactly():
    weights = dense_weights(get_config(), ALPHABET, seed=3)
    assert to_scalar_checkpoint(from_scalar_checkpoint(weights)).params == weights.params
    model = TorchGPT.from_scalar_params(weights.config, weights.params)
    assert model.scalar_params() == weights.params
    assert model.state_dict()["layers.0.mlp.fc1.weight"].shape == (64, 16)  # [n_out][n_in], no transpose


@pytest.mark.parametrize("engine", ["scalar", "torch"])
def test_a_checkpoint_of_either_engine_resumes_both_sides_in_agreement(engine, tmp_path):
    config = get_config()
    docs, tokenizer, model, optimizer, _ = start_run(list(BUILTIN_DOCS), config, seed=5)
    for step in range(2):
        train_step(model, optimizer, tokenizer.encode(docs[step]), step)
    scalar = checkpoint_of(model, tokenizer.chars, optimizer, step=2, seed=5)
    path = tmp_path / ("run.json" if engine == "scalar" else "run.pt")
    if engine == "scalar":
        save_checkpoint(path, scalar)
    else:
        torch_checkpoint.save_checkpoint(path, from_scalar_checkpoint(scalar))
    assert load_weights(str(path), config).params == scalar.params
    report = compare_step(weights=str(path), docs=["emma", "olivia"])
    assert report.agrees and report.settings.start_step == 2
    assert report.losses[0].step == 2  # the schedule and Adam's bias correction go on from step 2
    assert all(d.nonzero == d.checked for d in report.focus.adam_v if d.name == "lm_head")  # moments carried over


def test_a_checkpoint_of_another_preset_is_refused(tmp_path):
    weights = dense_weights(get_config("microgpt-v2"), ALPHABET, seed=1)
    save_checkpoint(tmp_path / "v2.json", weights)
    with pytest.raises(CheckpointError, match="preset 'microgpt-v2'"):
        load_weights(str(tmp_path / "v2.json"), get_config())


def test_documents_outside_the_vocabulary_are_refused():
    with pytest.raises(DataError, match="outside the vocabulary"):
        given_documents(["anna", "zoë"])


def test_batches_wrap_around_the_documents():
    documents = given_documents(["ab", "cd", "ef"])
    assert [len(documents.batch(s)) for s in range(3)] == [3, 3, 3]
    one_per_step = file_documents(["ab", "cd", "ef"])
    assert [one_per_step.batch(s) for s in range(4)][3] == one_per_step.batch(0)


def test_a_torch_state_dict_loads_into_a_torch_model_from_the_scalar_weights():
    weights = dense_weights(get_config(), ALPHABET, seed=9)
    torch_side = from_scalar_checkpoint(weights).model
    model = TorchGPT(weights.config).double()
    model.load_state_dict(torch_side)
    assert torch.equal(model.wte.weight, torch.tensor(weights.params["wte"], dtype=torch.float64))
