"""Checkpoints: an exact round trip, an atomic write, a one-line CheckpointError for every
checkpoint that cannot be used, and a resumed run that prints what an uninterrupted one does.

    pytest tests/test_checkpoint_scalar.py
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import subprocess
import sys

import pytest
from helpers import assert_one_line_error

from microgpt_scalar.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_of,
    load_checkpoint,
    save_checkpoint,
)
from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.files import FileError
from microgpt_scalar.model import GPT
from microgpt_scalar.train import forward_loss, resume_run, sample, start_run, train_step

DOCS = ["anna", "bob", "cab", "nan"]  # vocab a b c n o + BOS


def make_checkpoint(preset="microgpt", steps=2) -> Checkpoint:
    """The checkpoint of `steps` steps on DOCS: trained once per preset and step count, a copy
    to each caller (tests edit what they get)."""
    return copy.deepcopy(trained_checkpoint(preset, steps))


@functools.cache
def trained_checkpoint(preset: str, steps: int) -> Checkpoint:
    docs, tokenizer, model, optimizer, _ = start_run(DOCS, get_config(preset), seed=42)
    for s in range(steps):
        train_step(model, optimizer, tokenizer.encode(docs[s]), s)
    return checkpoint_of(model, tokenizer.chars, optimizer, step=steps, seed=42)


@dataclasses.dataclass
class StraightRun:
    """A 6-step run on the names file in one go (seed 42): its losses, its checkpoint after
    each step (1 to 6), and the 5 samples it then draws."""

    losses: list
    checkpoints: dict
    samples: list


@functools.cache
def straight_run(names_path, preset: str = "microgpt") -> StraightRun:
    """Made once per preset for the tests that resume against it (none changes it)."""
    docs, tokenizer, model, optimizer, rng = start_run(load_docs(names_path), get_config(preset, num_steps=6), seed=42)
    losses, checkpoints = [], {}
    for s in range(6):
        losses.append(train_step(model, optimizer, tokenizer.encode(docs[s]), s))
        checkpoints[s + 1] = checkpoint_of(model, tokenizer.chars, optimizer, step=s + 1, seed=42)
    return StraightRun(losses, checkpoints, [sample(model, tokenizer, rng) for _ in range(5)])


def saved(tmp_path, checkpoint=None, name="run.json"):
    path = tmp_path / name
    save_checkpoint(path, checkpoint or make_checkpoint())
    return path


def edited(tmp_path, change, name="bad.json"):
    """A good checkpoint's JSON, changed by `change(payload)`, written as `name`."""
    payload = json.loads(saved(tmp_path).read_text())
    change(payload)
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def run_script(repo_root, args, cwd):
    return subprocess.run([sys.executable, str(repo_root / "scripts" / "train_scalar.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# --- round trip ---

def test_save_load_round_trip_is_exact(tmp_path):
    original = make_checkpoint()
    special = [5e-324, -0.0, 1.7976931348623157e308, 0.1, -2.2250738585072014e-308, 1 / 3]
    original.params["wte"][0][:len(special)] = special
    loaded = load_checkpoint(saved(tmp_path, original))
    assert loaded == original
    assert loaded.params["wte"][0][:len(special)] == special
    assert math.copysign(1, loaded.params["wte"][0][1]) == -1  # -0.0 keeps its sign
    assert (loaded.step, loaded.seed, loaded.chars) == (2, 42, ["a", "b", "c", "n", "o"])


def test_loaded_parameters_give_the_same_loss_and_adam_state(tmp_path):
    docs, tokenizer, model, optimizer, _ = start_run(DOCS, get_config("microgpt-v2"), seed=42)
    train_step(model, optimizer, tokenizer.encode(docs[0]), 0)
    loaded = load_checkpoint(saved(tmp_path, checkpoint_of(model, tokenizer.chars, optimizer, 1, 42)))
    copy = GPT(loaded.config, params=loaded.params)
    tokens = tokenizer.encode("cabnano")
    assert forward_loss(copy, tokens).data == forward_loss(model, tokens).data
    _, _, _, resumed_optimizer, _ = resume_run(DOCS, loaded, seed=42)
    assert resumed_optimizer.m == optimizer.m and resumed_optimizer.v == optimizer.v


def test_save_writes_the_documented_json_layout(tmp_path):
    payload = json.loads(saved(tmp_path).read_text())
    assert payload["format"] == "microgpt-checkpoint" and payload["version"] == 1
    assert set(payload) == {"format", "version", "config", "chars", "params", "adam", "step", "seed", "run"}
    assert len(payload["params"]["wte"]) == 6 and len(payload["params"]["wte"][0]) == 16  # [n_out][n_in]
    assert set(payload["adam"]) == {"m", "v"}


# --- atomic write ---

def fail_replace(src, dst):
    raise OSError(28, "No space left on device")


def fail_fsync(fd):
    raise OSError(5, "Input/output error")


def fail_dumps(*args, **kwargs):
    raise ValueError("cannot serialise")


def interrupt_fsync(fd):
    raise KeyboardInterrupt


@pytest.mark.parametrize("target, failure, error", [
    (os, ("replace", fail_replace), FileError),  # the one-line error of microgpt_scalar.files
    (os, ("fsync", fail_fsync), FileError),  # after the bytes are written, before the rename
    (os, ("fsync", interrupt_fsync), KeyboardInterrupt),
    (json, ("dumps", fail_dumps), ValueError),
])
def test_failed_save_leaves_the_previous_checkpoint_intact(target, failure, error, tmp_path, monkeypatch):
    path = saved(tmp_path)
    before = path.read_bytes()
    newer = make_checkpoint(steps=3)
    monkeypatch.setattr(target, *failure)
    with pytest.raises(error):
        save_checkpoint(path, newer)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]  # no temporary file left behind
    assert load_checkpoint(path).step == 2


def test_saved_checkpoint_gets_the_mode_of_any_new_file(tmp_path):
    """The temporary file is private while it is written; the checkpoint is not."""
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert os.stat(saved(tmp_path)).st_mode == os.stat(plain).st_mode


def test_atomic_write_check_would_see_a_torn_write(tmp_path):
    """Written in place (no temporary file), a failure mid-write does leave a torn file."""
    path = saved(tmp_path)
    before = path.read_bytes()
    with open(path, "wb") as file:
        file.write(before[: len(before) // 2])
    assert path.read_bytes() != before
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_save_refuses_non_finite_values_and_keeps_the_previous_file(tmp_path):
    path = saved(tmp_path)
    before = path.read_bytes()
    broken = make_checkpoint()
    broken.params["lm_head"][1][2] = float("nan")
    with pytest.raises(CheckpointError, match="lm_head.*not a finite number"):
        save_checkpoint(path, broken)
    assert path.read_bytes() == before


# --- checkpoints that cannot be used ---

def raw(tmp_path, data: bytes, name="bad.json"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def set_in(*keys, value):
    def change(payload):
        target = payload
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


BAD_CHECKPOINTS = {  # name -> (make the file in tmp_path, words the message must contain)
    "missing_file": (lambda tmp: tmp / "absent.json", ["not found", "absent.json"]),
    "truncated_json": (lambda tmp: raw(tmp, saved(tmp).read_bytes()[:-40]), ["not valid JSON", "bad.json"]),
    "not_utf8": (lambda tmp: raw(tmp, b'{"format": "\xff"}'), ["not valid JSON"]),
    "not_an_object": (lambda tmp: raw(tmp, b"[1, 2]"), ["not a microgpt checkpoint"]),
    "wrong_format": (lambda tmp: edited(tmp, set_in("format", value="something-else")), ["not a microgpt checkpoint"]),
    "wrong_version": (lambda tmp: edited(tmp, set_in("version", value=2)), ["version 2"]),
    "missing_params": (lambda tmp: edited(tmp, lambda p: p.pop("params")), ["malformed", "params"]),
    "number_for_a_matrix": (lambda tmp: edited(tmp, set_in("params", "wte", value=5)), ["malformed"]),
    "number_for_a_row": (lambda tmp: edited(tmp, set_in("params", "wpe", value=[1.0] * 8)), ["malformed"]),
    "object_for_a_matrix": (lambda tmp: edited(tmp, set_in("params", "wte", value={"0": [0.0] * 16})),
                            ["wte", "malformed"]),
    "adam_not_an_object": (lambda tmp: edited(tmp, set_in("adam", value=[1, 2])), ["malformed"]),
    "huge_integer": (lambda tmp: edited(tmp, lambda p: p["params"]["wte"][0].__setitem__(0, 10**400)), ["malformed"]),
    "text_for_a_number": (lambda tmp: edited(tmp, lambda p: p["params"]["wte"][0].__setitem__(0, "0.1")),
                          ["wte", "not a finite number"]),
    "bad_config_value": (lambda tmp: edited(tmp, set_in("config", "n_head", value=3)), ["malformed", "divisible"]),
    "unknown_config_field": (lambda tmp: edited(tmp, set_in("config", "dropout", value=0.1)), ["malformed", "dropout"]),
    "negative_step": (lambda tmp: edited(tmp, set_in("step", value=-1)), ["step", "-1"]),
    "true_for_a_step": (lambda tmp: edited(tmp, set_in("step", value=True)), ["step", "True"]),
    "fractional_seed": (lambda tmp: edited(tmp, set_in("seed", value=4.2)), ["seed", "4.2"]),
    "short_row": (lambda tmp: edited(tmp, lambda p: p["params"]["layer0.attn_wq"][3].pop()),
                  ["layer0.attn_wq", "[16, 16]"]),
    "missing_row": (lambda tmp: edited(tmp, lambda p: p["params"]["wpe"].pop()), ["wpe", "[7, 16]", "[8, 16]"]),
    "missing_matrix": (lambda tmp: edited(tmp, lambda p: p["params"].pop("layer0.mlp_fc2")),
                       ["missing ['layer0.mlp_fc2']"]),
    "extra_matrix": (lambda tmp: edited(tmp, set_in("params", "layer1.attn_wq", value=[[0.0] * 16] * 16)),
                     ["unexpected ['layer1.attn_wq']"]),
    "adam_wrong_shape": (lambda tmp: edited(tmp, lambda p: p["adam"]["v"]["lm_head"].pop()), ["adam v", "lm_head"]),
    "more_layers_than_params": (lambda tmp: edited(tmp, set_in("config", "n_layer", value=2)), ["missing", "layer1"]),
    "nan_value": (lambda tmp: edited(tmp, lambda p: p["params"]["lm_head"][0].__setitem__(3, float("nan"))),
                  ["lm_head", "not a finite number"]),
    "infinite_adam_value": (lambda tmp: edited(tmp, lambda p: p["adam"]["v"]["wte"][1].__setitem__(0, float("inf"))),
                            ["adam v", "wte", "not a finite number"]),
    "vocab_size_mismatch": (lambda tmp: edited(tmp, lambda p: p["chars"].append("z")), ["6 characters", "vocab_size 6"]),
    "repeated_character": (lambda tmp: edited(tmp, set_in("chars", value=["a", "b", "a", "n", "o"])),
                           ["distinct single characters"]),
    "multi_character_token": (lambda tmp: edited(tmp, set_in("chars", value=["ab", "b", "c", "n", "o"])),
                              ["distinct single characters"]),
}


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_unusable_checkpoint_raises_one_line_checkpoint_error(kind, tmp_path):
    make, words = BAD_CHECKPOINTS[kind]
    path = make(tmp_path)
    assert_one_line_error(CheckpointError, lambda: load_checkpoint(path), words)


def test_checkpoint_of_a_different_preset_is_refused(tmp_path):
    path = saved(tmp_path)
    assert load_checkpoint(path, preset="microgpt").config.preset == "microgpt"
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path, preset="microgpt-v2")
    assert "\n" not in str(raised.value)
    assert "'microgpt'" in str(raised.value) and "'microgpt-v2'" in str(raised.value)


@pytest.mark.parametrize("kind", ["truncated_json", "missing_row", "nan_value", "vocab_size_mismatch", "number_for_a_row"])
def test_script_reports_unusable_checkpoint_in_one_line_and_exits_2(kind, repo_root, tmp_path):
    make, words = BAD_CHECKPOINTS[kind]
    path = make(tmp_path)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS))
    result = run_script(repo_root, ["--data", "docs.txt", "--resume", str(path), "--value-class", "per-op"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert words[0] in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--n-layer", "2"], "error: checkpoint has n_layer=1, but n_layer=2 was asked for"),
    (["--learning-rate", "0.5"], "error: checkpoint has learning_rate=0.01, but learning_rate=0.5 was asked for"),
    (["--steps", "1"], "error: --steps 1: checkpoint run.json has already taken 2 steps"),
    (["--stop-after", "1"], "error: --stop-after 1: checkpoint run.json has already taken 2 steps"),
])
def test_script_refuses_flags_that_contradict_the_loaded_checkpoint(args, message, repo_root, tmp_path):
    saved(tmp_path)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS))
    result = run_script(repo_root, ["--data", "docs.txt", "--resume", "run.json", "--value-class", "per-op", *args],
                        cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")


def test_script_accepts_flags_that_repeat_the_loaded_checkpoint(repo_root, tmp_path):
    saved(tmp_path)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS))
    result = run_script(repo_root, ["--data", "docs.txt", "--resume", "run.json", "--value-class", "per-op", "--n-layer", "1",
                                    "--steps", "3", "--samples", "0"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("step    3 /    3 | loss ")


def test_script_refuses_a_checkpoint_of_another_preset(repo_root, tmp_path):
    path = saved(tmp_path)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS))
    result = run_script(repo_root, ["--data", "docs.txt", "--resume", str(path), "--preset", "microgpt-v2",
                                    "--value-class", "per-op"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "made with preset 'microgpt'" in result.stderr


# --- resuming ---

@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_resumed_run_equals_uninterrupted_run(preset, names_path, tmp_path):
    """Stopped after 3 of 6 steps, saved, loaded and resumed: the same losses, parameters and
    samples, bit for bit, as 6 steps in one go."""
    whole = straight_run(names_path, preset)
    path = tmp_path / "half.json"
    save_checkpoint(path, whole.checkpoints[3])
    run_docs, tokenizer, model, optimizer, rng = resume_run(load_docs(names_path), load_checkpoint(path, preset=preset),
                                                           seed=42)
    second_losses = [train_step(model, optimizer, tokenizer.encode(run_docs[s]), s) for s in range(3, 6)]
    second_samples = [sample(model, tokenizer, rng) for _ in range(5)]

    assert second_losses == whole.losses[3:]
    assert model.params_as_floats() == whole.checkpoints[6].params
    assert second_samples == whole.samples


def test_resume_check_sees_a_lost_adam_state(names_path, tmp_path):
    """Resumed without the Adam moments, the next update departs from the uninterrupted one."""
    whole = straight_run(names_path)
    bare = dataclasses.replace(whole.checkpoints[3], adam=None)  # what checkpoint_of saves without an optimizer
    second = resume_run(load_docs(names_path), bare, seed=42)
    train_step(second[2], second[3], second[1].encode(second[0][3]), 3)
    assert second[2].params_as_floats() != whole.checkpoints[4].params


def script_output(repo_root, names_path, cwd, *args):
    result = run_script(repo_root, ["--data", str(names_path), "--value-class", "per-op", *args], cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def whole_script_run(repo_root, names_path, tmp_path_factory):
    """The script's lines for 6 steps and 5 samples in one go (two tests compare with it)."""
    return script_output(repo_root, names_path, tmp_path_factory.mktemp("whole"), "--steps", "6", "--samples", "5")


def test_script_save_then_load_prints_the_uninterrupted_run(repo_root, names_path, tmp_path, whole_script_run):
    """--save after training, --load to sample: the log of the first and the samples of the
    second are the uninterrupted run's, and the saved parameters are the library's."""
    whole = whole_script_run
    first = script_output(repo_root, names_path, tmp_path, "--steps", "6", "--samples", "0", "--save", "run.json")
    second = script_output(repo_root, names_path, tmp_path, "--resume", "run.json", "--samples", "5")
    assert first == whole[:9]  # num docs, vocab size, num params, 6 steps
    assert second[:3] == whole[:3] and second[3:] == whole[9:]
    loaded = load_checkpoint(tmp_path / "run.json")
    assert loaded.params == straight_run(names_path).checkpoints[6].params
    assert (loaded.step, loaded.seed) == (6, 42)


def test_script_resumes_a_checkpoint_taken_mid_run(repo_root, names_path, tmp_path, whole_script_run):
    """A checkpoint after 3 of 6 steps, loaded by the script, prints steps 4 to 6 and the
    samples exactly as the uninterrupted 6-step run does."""
    whole = whole_script_run
    save_checkpoint(tmp_path / "half.json", straight_run(names_path).checkpoints[3])
    resumed = script_output(repo_root, names_path, tmp_path, "--resume", "half.json", "--samples", "5")
    assert resumed[3:6] == whole[6:9] and resumed[3].startswith("step    4 /    6")
    assert resumed[6:] == whole[9:]
