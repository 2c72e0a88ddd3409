"""Torch checkpoints: round trips in both formats, resuming, and every refusal."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch_checks import assert_float64_close

from microgpt_scalar.checkpoint import CheckpointError, check_config, flatten
from microgpt_scalar.checkpoint import checkpoint_of as scalar_checkpoint_of
from microgpt_scalar.checkpoint import load_checkpoint as load_scalar_checkpoint
from microgpt_scalar.checkpoint import save_checkpoint as save_scalar_checkpoint
from microgpt_scalar.data import default_data_path, load_docs
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam, set_adam_moments
from microgpt_scalar.train import train_step as scalar_train_step
from microgpt_torch.checkpoint import (checkpoint_of, from_scalar_checkpoint, load_any_checkpoint,
                                       load_checkpoint, restore, save_checkpoint, to_scalar_checkpoint)
from microgpt_torch.fast import FusedGPT
from microgpt_torch.model import GPT, torch_name
from microgpt_torch.optim import make_optimizer
from microgpt_torch.train import faithful_steps, reference_start

DATA = default_data_path()  # the names file shipped with the package
# Written by the code before the layers became modules: version 1, "layers.0.attn_wq.weight",
# the published run (microgpt, seed 42) after 2 faithful steps, with Adam's state.
VERSION_1 = Path(__file__).resolve().parent / "fixtures" / "torch_checkpoint_v1.pt"
# One step of the two engines differs by float64 rounding only (measured 1.1e-16, see
# test_torch_optim); a wrongly restored Adam moment or step count moves weights by ~1e-3.
STEP_ATOL = 1e-14


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def start():
    return reference_start(load_docs(DATA), seed=42)


def trained(start, steps=10, dtype=torch.float64):
    """(model, optimizer, losses) after `steps` faithful steps, on the fused kernels as the script runs them."""
    docs, tokenizer, config, params, _ = start
    model = FusedGPT.from_scalar_params(config, params, dtype=dtype)
    optimizer = make_optimizer(model, config)
    losses = [loss for _, loss in zip(range(steps), faithful_steps(model, optimizer, docs, tokenizer))]
    return model, optimizer, losses


def continue_training(start, model, optimizer, first, steps):
    docs, tokenizer = start[0], start[1]
    return [loss for _, loss in zip(range(steps), faithful_steps(model, optimizer, docs, tokenizer, first))]


def test_torch_checkpoint_round_trips_exactly(start, tmp_path):
    model, optimizer, _ = trained(start)
    path = tmp_path / "model.pt"
    save_checkpoint(path, checkpoint_of(model, start[1].chars, optimizer, step=10, seed=42))
    loaded = load_checkpoint(path, preset="microgpt")
    assert (loaded.config, loaded.chars, loaded.step, loaded.seed) == (model.config, start[1].chars, 10, 42)
    for name, p in model.named_parameters():
        assert torch.equal(loaded.model[name], p.detach()), name
        assert torch.equal(loaded.adam["m"][name], optimizer.state[p]["exp_avg"]), name
        assert torch.equal(loaded.adam["v"][name], optimizer.state[p]["exp_avg_sq"]), name


def test_torch_checkpoint_loads_with_weights_only(start, tmp_path):
    model, optimizer, _ = trained(start, steps=1)
    path = tmp_path / "model.pt"
    save_checkpoint(path, checkpoint_of(model, start[1].chars, optimizer, step=1))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "microgpt-torch-checkpoint" and payload["step"] == 1
    assert set(payload["model"]) == {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize("via", ["torch", "scalar-json"])
def test_resumed_run_equals_the_uninterrupted_run(start, tmp_path, via):
    model, optimizer, _ = trained(start, steps=10)
    straight = continue_training(start, model, optimizer, 10, 10)
    model, optimizer, _ = trained(start, steps=10)
    checkpoint = checkpoint_of(model, start[1].chars, optimizer, step=10, seed=42)
    if via == "torch":
        save_checkpoint(tmp_path / "a.pt", checkpoint)
        checkpoint = load_any_checkpoint(tmp_path / "a.pt")
    else:
        save_scalar_checkpoint(tmp_path / "a.json", to_scalar_checkpoint(checkpoint))
        checkpoint = load_any_checkpoint(tmp_path / "a.json")
    resumed = continue_training(start, *restore(checkpoint, model_class=FusedGPT), 10, 10)
    assert resumed == straight  # bit for bit: float64 survives JSON and torch.save exactly


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
])
def test_restored_adam_state_sits_where_a_running_adam_keeps_it(start, device):
    """Fused Adam reads its step count from the parameter's device, as float32."""
    model, optimizer, _ = trained(start, steps=1)
    running = GPT(model.config).to(dtype=torch.float64, device=device)
    running_optimizer = make_optimizer(running, model.config)
    running(torch.zeros(1, 1, dtype=torch.long, device=device), torch.zeros(1, 1, dtype=torch.long, device=device))[1].backward()
    running_optimizer.step()
    model, restored_optimizer = restore(checkpoint_of(model, start[1].chars, optimizer, step=1), device=device)
    for p, q in zip(model.parameters(), running.parameters()):
        for key, expected in running_optimizer.state[q].items():
            got = restored_optimizer.state[p][key]
            assert (got.dtype, got.device, got.shape) == (expected.dtype, expected.device, expected.shape), key


def test_a_resume_that_loses_adam_state_is_caught(start):
    """The oracle above can fail: restarting Adam's moments changes the next losses."""
    model, optimizer, _ = trained(start, steps=10)
    straight = continue_training(start, model, optimizer, 10, 3)
    model, _, _ = trained(start, steps=10)
    checkpoint = checkpoint_of(model, start[1].chars, None, step=10)
    assert continue_training(start, *restore(checkpoint, model_class=FusedGPT), 10, 3) != straight


def test_scalar_engine_checkpoint_continues_in_torch_like_in_the_scalar_engine(start, tmp_path):
    """The scalar engine trains 3 steps and saves; both engines load it and take step 4."""
    docs, tokenizer, config, params, _ = start
    scalar = ScalarGPT(config, params=params)
    adam = Adam(scalar.parameters(), config)
    for step in range(3):
        scalar_train_step(scalar, adam, tokenizer.encode(docs[step]), step)
    save_scalar_checkpoint(tmp_path / "s.json", scalar_checkpoint_of(scalar, tokenizer.chars, adam, 3, 42))
    model, optimizer = restore(load_any_checkpoint(tmp_path / "s.json", preset="microgpt"), model_class=FusedGPT)
    assert model.scalar_params() == scalar.params_as_floats()  # exact transfer
    for name, p in model.named_parameters():
        assert optimizer.state[p]["step"] == 3, name
    m_torch = [x for p in model.parameters() for x in optimizer.state[p]["exp_avg"].flatten().tolist()]
    assert m_torch == adam.m
    scalar_train_step(scalar, adam, tokenizer.encode(docs[3]), 3)
    continue_training(start, model, optimizer, 3, 1)
    expected = scalar.params_as_floats()
    for name, rows in model.scalar_params().items():
        assert_float64_close(f"{name} after step 4", rows, expected[name], STEP_ATOL, 0.0)


def test_torch_checkpoint_continues_in_the_scalar_engine_like_in_torch(start, tmp_path):
    model, optimizer, _ = trained(start, steps=3)
    save_scalar_checkpoint(tmp_path / "t.json", to_scalar_checkpoint(checkpoint_of(model, start[1].chars, optimizer, 3)))
    loaded = load_scalar_checkpoint(tmp_path / "t.json")
    scalar = ScalarGPT(loaded.config, params=loaded.params)
    adam = Adam(scalar.parameters(), loaded.config)
    set_adam_moments(adam, flatten(loaded.adam["m"], loaded.config), flatten(loaded.adam["v"], loaded.config))
    docs, tokenizer = start[0], start[1]
    scalar_train_step(scalar, adam, tokenizer.encode(docs[3]), loaded.step)
    continue_training(start, model, optimizer, 3, 1)
    expected = scalar.params_as_floats()
    for name, rows in model.scalar_params().items():
        assert_float64_close(f"{name} after step 4", rows, expected[name], STEP_ATOL, 0.0)


def test_float32_checkpoint_converts_to_the_scalar_format(start, tmp_path):
    model, optimizer, _ = trained(start, steps=2, dtype=torch.float32)
    scalar = to_scalar_checkpoint(checkpoint_of(model, start[1].chars, optimizer, 2))
    back = from_scalar_checkpoint(scalar)
    for name, p in model.named_parameters():
        assert torch.equal(back.model[name].float(), p.detach()), name  # float32 -> float64 is exact


def save_small(start, path, **changes):
    docs, tokenizer, config, params, _ = start
    checkpoint = checkpoint_of(GPT.from_scalar_params(config, params), tokenizer.chars, None, 0, 42)
    for field, value in changes.items():
        setattr(checkpoint, field, value)
    torch.save({"format": "microgpt-torch-checkpoint", "version": 2, "config": checkpoint.config.to_dict(),
                "chars": checkpoint.chars, "model": checkpoint.model, "adam": None, "step": 0, "seed": 42}, path)


def test_loading_refuses_another_preset(start, tmp_path):
    save_small(start, tmp_path / "a.pt")
    with pytest.raises(CheckpointError, match="was made with preset 'microgpt', not 'microgpt-v2'"):
        load_any_checkpoint(tmp_path / "a.pt", preset="microgpt-v2")
    save_scalar_checkpoint(tmp_path / "a.json", to_scalar_checkpoint(load_checkpoint(tmp_path / "a.pt")))
    with pytest.raises(CheckpointError, match="was made with preset 'microgpt', not 'microgpt-v2'"):
        load_any_checkpoint(tmp_path / "a.json", preset="microgpt-v2")


def test_loading_refuses_a_tensor_of_the_wrong_shape(start, tmp_path):
    model = dict(checkpoint_of(GPT.from_scalar_params(start[2], start[3]), start[1].chars).model)
    model["layers.0.mlp.fc1.weight"] = model["layers.0.mlp.fc1.weight"][:, :8]
    save_small(start, tmp_path / "a.pt", model=model)
    with pytest.raises(CheckpointError, match=r"^checkpoint model layers.0.mlp.fc1.weight has shape \[64, 8\], "
                                              r"the config needs \[64, 16\]$"):
        load_checkpoint(tmp_path / "a.pt")


def test_loading_refuses_missing_tensors_and_wrong_vocabularies(start, tmp_path):
    model = dict(checkpoint_of(GPT.from_scalar_params(start[2], start[3]), start[1].chars).model)
    del model[torch_name("wpe")]
    save_small(start, tmp_path / "a.pt", model=model)
    with pytest.raises(CheckpointError, match=r"missing \['wpe.weight'\]"):
        load_checkpoint(tmp_path / "a.pt")
    save_small(start, tmp_path / "b.pt", chars=start[1].chars[:-1])
    with pytest.raises(CheckpointError, match="25 characters but vocab_size 27"):
        load_checkpoint(tmp_path / "b.pt")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04broken zip", b'{"format": "other"}',
                                     b"emma\nolivia\n"])  # a names file: the unpickler fails with IndexError
def test_loading_refuses_files_that_are_not_checkpoints(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_any_checkpoint(path)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_any_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("chars", [5, "abc", ["a", "a"] + [chr(98 + i) for i in range(24)]])
def test_loading_refuses_a_vocabulary_that_is_not_distinct_characters(start, tmp_path, chars):
    save_small(start, tmp_path / "a.pt", chars=chars)
    with pytest.raises(CheckpointError, match="distinct single characters"):
        load_checkpoint(tmp_path / "a.pt")


def test_check_config_names_the_differing_field(start, tmp_path):
    save_small(start, tmp_path / "a.pt")
    checkpoint = load_checkpoint(tmp_path / "a.pt")
    check_config(checkpoint, n_layer=1, n_embd=None)
    with pytest.raises(CheckpointError, match="checkpoint has n_layer=1, but n_layer=2 was asked for"):
        check_config(checkpoint, n_layer=2)


def test_a_failed_save_keeps_the_existing_checkpoint(start, tmp_path):
    path = tmp_path / "model.pt"
    save_small(start, path)
    before = path.read_bytes()
    model = GPT.from_scalar_params(start[2], start[3])
    with torch.no_grad():
        model.wte.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="wte.weight holds a value that is not a finite number"):
        save_checkpoint(path, checkpoint_of(model, start[1].chars))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left


def test_checkpoint_of_refuses_a_step_that_disagrees_with_adam(start):
    model, optimizer, _ = trained(start, steps=2)
    with pytest.raises(ValueError, match="Adam has taken 2 steps"):
        checkpoint_of(model, start[1].chars, optimizer, step=5)


def test_a_version_1_checkpoint_resumes_exactly_like_the_run_that_wrote_it(start):
    """A file written before the layers became modules (old names, its own Adam state) loads,
    and two more steps from it give the losses of an uninterrupted four-step run."""
    model, optimizer, losses = trained(start, steps=4)
    checkpoint = load_any_checkpoint(VERSION_1, preset="microgpt")
    assert checkpoint.step == 2 and "layers.0.attn.wq.weight" in checkpoint.model
    assert torch.equal(checkpoint.model["layers.0.attn.wq.weight"],
                       torch.load(VERSION_1, weights_only=True)["model"]["layers.0.attn_wq.weight"])
    assert continue_training(start, *restore(checkpoint, model_class=FusedGPT), 2, 2) == losses[2:]
    without_adam = dataclasses.replace(checkpoint, adam=None)  # the check can fail: Adam's state matters
    assert continue_training(start, *restore(without_adam, model_class=FusedGPT), 2, 2) != losses[2:]


def test_a_checkpoint_of_a_later_version_is_refused_in_one_line(start, tmp_path):
    payload = torch.load(VERSION_1, weights_only=True)
    payload["version"] = 3
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"^checkpoint version 3 is not 1 or 2: .*future.pt$"):
        load_any_checkpoint(tmp_path / "future.pt")
