"""The certificate for a learner's engine and its golden trace."""
from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys

import pytest
import reference
from helpers import LEARNER_ENGINE, edited_copy

from compare.certify import (GOLDEN_PATH, GRAD_NORM_TOLERANCE, LOSS_TOLERANCE, GoldenError, certify, check_fit,
                             golden_text, load_golden, record_run)
from microgpt_scalar.config import get_config, param_shapes
from compare.engine.loader import EngineError, load_engine
from microgpt_scalar.data import load_docs
from microgpt_scalar.engine import Value

# docs/reference.md, "Published output": the losses of the first two lines of the original program's log.
PUBLISHED_FIRST_LOSSES = reference.published("microgpt").first_losses


@pytest.fixture(scope="session")
def docs(names_path):
    return load_docs(names_path)


@pytest.fixture(scope="session")
def golden():
    return load_golden(GOLDEN_PATH)


def run_script(repo_root, *args):
    return subprocess.run([sys.executable, str(repo_root / "scripts" / "certify.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=repo_root, timeout=300)


# --- the golden trace ---------------------------------------------------------------------

def test_golden_first_losses_print_as_the_published_log(golden):
    printed = [step["printed"] for step in golden["steps"][:2]]
    assert printed == PUBLISHED_FIRST_LOSSES
    assert [f"{step['loss']:.4f}" for step in golden["steps"][:2]] == PUBLISHED_FIRST_LOSSES


def test_make_golden_reproduces_the_shipped_file_byte_for_byte(repo_root, names_path, tmp_path):
    out = tmp_path / "golden.json"
    done = subprocess.run([sys.executable, str(repo_root / "scripts" / "make_golden.py"), "--data", str(names_path),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == GOLDEN_PATH.read_bytes()


def test_golden_file_is_small_json_with_every_tensor_at_every_step(golden):
    assert GOLDEN_PATH.stat().st_size < 16_000
    assert json.loads(golden_text(golden)) == golden  # the writer's text is the same JSON
    names = [name for name, _ in param_shapes(get_config())]
    assert all(list(step["grad_norms"]) == names for step in golden["steps"])
    assert [step["step"] for step in golden["steps"]] == list(range(1, 21))


def rounding_margin(loss: float) -> float:
    """How far `loss` is from the nearest x.xxxx5, where its 4-decimal print changes."""
    boundary = (math.floor(loss * 1e4 - 0.5) + 0.5) / 1e4  # the nearest below
    return min(loss - boundary, boundary + 1e-4 - loss)


def test_golden_losses_are_further_than_the_tolerance_from_a_rounding_boundary(golden):
    """So a loss within LOSS_TOLERANCE.rtol of the golden one always prints the same 4 decimals."""
    assert rounding_margin(3.12345000001) < 10 * LOSS_TOLERANCE.rtol * 3.12345  # the check can fail
    assert rounding_margin(3.12350000001) > 4.9e-5
    for step in golden["steps"]:
        assert rounding_margin(step["loss"]) > 10 * LOSS_TOLERANCE.rtol * step["loss"], step


def test_load_golden_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(GoldenError, match="not a microgpt-golden"):
        load_golden(bad)
    bad.write_text("{")
    with pytest.raises(GoldenError, match="not valid JSON"):
        load_golden(bad)
    with pytest.raises(GoldenError, match="not found"):
        load_golden(tmp_path / "missing.json")


def broken_golden(tmp_path, golden, edit):
    changed = copy.deepcopy(golden)
    edit(changed)
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(changed))
    return path


MALFORMED_GOLDEN = {  # a golden trace with every key whose insides are wrong: never blamed on the engine
    "unknown preset": (lambda g: g.update(preset="gpt-9"), "unknown preset 'gpt-9'"),
    "no run length": (lambda g: g.update(num_steps=0), "num_steps"),
    "no digest": (lambda g: g["data"].pop("sha256"), "sha256"),
    "no gradient norms": (lambda g: g["steps"][0].pop("grad_norms"), "step 1 is not a record"),
    "a tensor short": (lambda g: g["steps"][3]["grad_norms"].pop("wpe"), "step 4 is not a record"),
    "steps out of order": (lambda g: g["steps"].reverse(), "step 1 is not a record"),
    "text for a loss": (lambda g: g["steps"][1].update(loss="3.29"), "step 2 is not a record"),
    "no sampled names": (lambda g: g["samples"].pop("names"), "samples"),
}


@pytest.mark.parametrize("kind", MALFORMED_GOLDEN)
def test_load_golden_refuses_a_malformed_trace_naming_the_problem(kind, golden, tmp_path):
    edit, words = MALFORMED_GOLDEN[kind]
    with pytest.raises(GoldenError, match="is malformed: .*" + words) as raised:
        load_golden(broken_golden(tmp_path, golden, edit))
    assert "\n" not in str(raised.value)


def test_certify_script_exits_2_for_a_malformed_or_unreadable_golden_trace(repo_root, names_path, golden, tmp_path):
    path = broken_golden(tmp_path, golden, lambda g: g["steps"][0].pop("grad_norms"))
    done = run_script(repo_root, "--engine", LEARNER_ENGINE, "--data", names_path, "--steps", 1, "--golden", path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("error: golden trace") and "step 1 is not a record" in done.stderr
    done = run_script(repo_root, "--engine", LEARNER_ENGINE, "--data", names_path, "--steps", 1, "--golden", tmp_path)
    assert (done.returncode, done.stderr) == (2, f"error: golden trace {tmp_path} is a directory, not a regular file\n")
    fifo = tmp_path / "golden.fifo"
    os.mkfifo(fifo)  # no writer: reading it the usual way waits forever
    done = run_script(repo_root, "--engine", LEARNER_ENGINE, "--data", names_path, "--steps", 1, "--golden", fifo)
    assert (done.returncode, done.stderr) == (2, f"error: golden trace {fifo} is a FIFO, not a regular file\n")


def test_make_golden_refuses_a_directory_before_training(repo_root, tmp_path):
    done = subprocess.run([sys.executable, str(repo_root / "scripts" / "make_golden.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: --out {tmp_path}: is not a regular file (a directory); not replacing it\n")


def test_golden_only_fits_its_own_documents_and_length(golden, docs):
    check_fit(golden, docs, 20)
    with pytest.raises(GoldenError, match="fewer than the 21"):
        check_fit(golden, docs, 21)
    with pytest.raises(GoldenError, match="not the ones"):
        check_fit(golden, docs[:-1], 5)
    with pytest.raises(GoldenError, match="positive"):
        check_fit(golden, docs, 0)


# --- engines that pass ----------------------------------------------------------------------

def test_certify_script_passes_the_project_engine_on_the_full_trace(repo_root, names_path):
    done = run_script(repo_root, "--engine", "microgpt_scalar/engine.py", "--data", names_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("the first 20 of the run's 500 steps (its learning-rate schedule):")
    assert lines[start + 1:start + 3] == [f"step    1 /   20 | loss {PUBLISHED_FIRST_LOSSES[0]}",
                                          f"step    2 /   20 | loss {PUBLISHED_FIRST_LOSSES[1]}"]
    assert lines[0].startswith("  operators, each alone") and start < lines.index(lines[-1])  # probes first
    assert lines[-1].startswith("PASS") and "sampled names" in lines[-1]
    assert "every operator probe agrees with torch" in lines[-1] and "not checked" not in lines[-1]


def test_certify_script_passes_a_correct_engine_written_another_way(repo_root, names_path):
    """micrograd's style: closures, a set of parents, a real division. Same maths, other last bits."""
    done = run_script(repo_root, "--engine", LEARNER_ENGINE, "--data", names_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("PASS")


# --- engines that fail ------------------------------------------------------------------------

def test_certify_script_names_step_and_tensor_for_a_wrong_relu_gradient(repo_root, names_path, tmp_path):
    """relu's local gradient is its output: step 1 cannot see it (mlp_fc2 starts at zero, so
    no gradient reaches the activation); at step 2 every tensor before the MLP's activation
    differs and those after it (lm_head, mlp_fc2) still match."""
    engine = edited_copy(LEARNER_ENGINE, tmp_path / "engine.py", "self.grad += (out.data > 0) * out.grad",
                         "self.grad += out.data * out.grad  # the mistake")
    # three steps: the verdict must name the first that differs (step 2), not the last
    done = run_script(repo_root, "--engine", f"{engine}:Value", "--data", names_path, "--steps", 3)
    assert done.returncode == 1, done.stdout + done.stderr
    verdict = done.stdout.splitlines()[-1]
    assert verdict.startswith("FAIL: step 2: gradient of wte has norm")
    assert "these match: lm_head, layer0.mlp_fc2" in verdict
    assert "layer0.mlp_fc1" in verdict.split("these match")[0]


@pytest.fixture
def engine_copy(repo_root, tmp_path):
    """A fresh copy of the project's Value class, loaded from its own file: patching a method
    on it changes every node of a run (each operation makes a node of that class), and
    leaves the project's Value alone."""
    path = tmp_path / "engine_copy.py"
    path.write_text((repo_root / "microgpt_scalar" / "engine.py").read_text())
    return load_engine(str(path))


def test_certify_catches_a_loss_one_part_in_a_billion_off(docs, golden, engine_copy):
    log = engine_copy.log

    def log_too_big(self):  # the loss is a mean of -log(p): it moves by the same 1e-9
        out = log(self)
        out.data *= 1 + 1e-9
        return out

    engine_copy.log = log_too_big
    certificate = certify(engine_copy, docs, golden, steps=2)
    assert (certificate.difference.step, certificate.difference.what) == (1, "loss")
    assert certificate.difference.message.startswith("step 1: loss 3.363009")


def test_certify_catches_a_gradient_one_part_in_a_million_off(docs, golden, engine_copy):
    log = engine_copy.log

    def log_grad_too_small(self):
        out = log(self)
        out._local_grads = (out._local_grads[0] * (1 - 1e-6),)
        return out

    engine_copy.log = log_grad_too_small
    certificate = certify(engine_copy, docs, golden, steps=2)
    assert (certificate.difference.step, certificate.difference.what) == (1, "gradient of wte")
    assert "tolerance 1e-10" in certificate.difference.message


def test_certify_reports_the_step_where_the_engine_raised(docs, golden, engine_copy):
    shuffled = list(docs)
    random.Random(golden["seed"]).shuffle(shuffled)
    limit = sum(min(8, len(doc) + 1) for doc in shuffled[:2])  # one log per position in steps 1, 2
    log, calls = engine_copy.log, []

    def log_fails_on_step_3(self):
        calls.append(1)
        if len(calls) > limit:
            raise TypeError("log of a Value went wrong")
        return log(self)

    engine_copy.log = log_fails_on_step_3
    certificate = certify(engine_copy, docs, golden, steps=5)
    assert (certificate.steps, certificate.difference.step, certificate.difference.what) == (2, 3, "error")
    assert certificate.difference.message == "step 3: the engine raised TypeError: log of a Value went wrong"


@pytest.fixture(scope="module")
def two_steps(docs):
    """The project engine's first two steps and the names it samples after them."""
    return record_run(docs, 2, 2)


def altered(golden, edit):
    changed = copy.deepcopy(golden)
    edit(changed)
    return changed


def test_each_check_fails_on_a_golden_trace_changed_in_one_place(docs, golden, two_steps):
    records, names = two_steps
    short = altered(golden, lambda g: g["samples"].update(after_step=2, names=names))
    assert certify(Value, docs, short, steps=2).passed  # unchanged, it passes, samples included

    def loss_off(g):
        g["steps"][1]["loss"] *= 1 + 10 * LOSS_TOLERANCE.rtol

    def printed_off(g):
        g["steps"][0]["printed"] = "3.3631"

    def norm_off(g):
        g["steps"][1]["grad_norms"]["layer0.mlp_fc2"] *= 1 + 10 * GRAD_NORM_TOLERANCE.rtol

    def zero_not_zero(g):
        g["steps"][0]["grad_norms"]["layer0.attn_wq"] = 1e-300

    def other_names(g):
        g["samples"]["names"] = names[:1] + ["zzz"]

    expected = {loss_off: (2, "loss"), printed_off: (1, "printed loss"), norm_off: (2, "gradient of layer0.mlp_fc2"),
                zero_not_zero: (1, "gradient of layer0.attn_wq"), other_names: (None, "samples")}
    for edit, (step, what) in expected.items():
        certificate = certify(Value, docs, altered(short, edit), steps=2)
        assert (certificate.difference.step, certificate.difference.what) == (step, what), edit.__name__


def test_certify_refuses_a_class_without_an_operation_before_training(docs, golden):
    class Bare:
        def __init__(self, data):
            self.data, self.grad = data, 0

    with pytest.raises(EngineError, match="lacks what the transformer needs: __add__"):
        certify(Bare, docs, golden, steps=1)


def test_certify_script_exits_2_for_an_engine_without_log(repo_root, names_path, tmp_path):
    engine = edited_copy(LEARNER_ENGINE, tmp_path / "engine.py", "    def log(self):", "    def not_yet_log(self):")
    done = run_script(repo_root, "--engine", engine, "--data", names_path, "--steps", 1)
    assert done.returncode == 2
    assert "lacks what the transformer needs: log" in done.stderr


def test_certify_script_exits_2_for_other_documents(repo_root, tmp_path):
    data = tmp_path / "names.txt"
    data.write_text("emma\nolivia\n")
    done = run_script(repo_root, "--engine", "microgpt_scalar/engine.py", "--data", data, "--steps", 1)
    assert done.returncode == 2
    assert "not the ones the golden trace was made from" in done.stderr
