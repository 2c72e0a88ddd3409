"""The tutorial's thirteen exercises: each checker fails on its stub with a message that says what
to write, passes on the answer, and names a typical wrong answer (made from the answer by one
edit) in the learner's terms. The step-9 answer reproduces the original program's first log lines."""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
import torch
from helpers import replace_once

from tutorial.exercises import STEPS, run
from tutorial.training_steps import best_device_here

NAMES = [step.name for step in STEPS]

# name -> (the edit that makes the answer wrong, words the report must contain)
WRONG = {
    "gradient": ([("a = torch.tensor(a, dtype=torch.float64, requires_grad=True)", "a = torch.tensor(a, requires_grad=True)"),
                  ("b = torch.tensor(b, dtype=torch.float64, requires_grad=True)", "b = torch.tensor(b, requires_grad=True)")],
                 ["a.grad differs", "float32", "float64"]),
    "rmsnorm": ([("(x * x).mean(dim=-1, keepdim=True)", "(x * x).mean()")],
                ["rmsnorm(x) differs", "known mistake", "mean over every number", "dim=-1, keepdim=True"]),
    "linear": ([("return x @ self.weight.T", "return x @ self.weight")],
               ["Linear(16, 64)(x) raised RuntimeError", "line 12: return x @ self.weight", "weight.T"]),
    "mlp": ([("x = F.relu(x) ** 2", "x = F.relu(x)")], ["MLP(x) differs", "relu without the square"]),
    "attention": ([('    scores = scores.masked_fill(~causal, float("-inf"))\n', "")],
                  ["attention_head(q, k, v) differs", "no causal mask"]),
    "block": ([("x = x + self.attn(rmsnorm(x))", "x = self.attn(rmsnorm(x))")],
              ["Block(x) differs", "no residual around attention"]),
    "gpt": ([("self.layers = nn.ModuleList", "self.blocks = nn.ModuleList"), ("in self.layers:", "in self.blocks:")],
            ["parameter names are not the project's", "missing: layers.0.attn.", "unexpected: blocks.0.attn."]),
    "loss": ([("F.cross_entropy(logits.transpose(1, 2), targets", "F.cross_entropy(logits, targets")],
             ["raised", "Expected target size", "classes in dimension 1", "line 7"]),
    "train": ([("        optimizer.zero_grad()\n", "")],
              ["loss of step 3 differs", "steps 1 to 2 agree", "optimizer.zero_grad() is missing"]),
    "data": ([("padding_value=-1", "padding_value=0")], ["targets[", "is 0, expected -1", "IGNORE_INDEX"]),
    "checkpoint": ([('    optimizer.load_state_dict(checkpoint["optimizer"])\n', "")], ["Adam's moments", "optimizer.state_dict()"]),
    "sample": ([("with torch.no_grad():", "with torch.enable_grad():")], ["gradients recorded", "torch.no_grad()"]),
    "device": ([("def pick_device():\n", "def pick_device():\n    return torch.device(WRONG_DEVICE)\n")],
               ["pick_device() returned", "the best device here is"]),
}
MORE_WRONG = [  # the attention mistakes a learner makes most, each named
    ("attention", [("t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)", "t.view(B, self.n_head, T, C // self.n_head)")],
     ["Attention(x) differs", "view(B, nh, T, hd)", "transpose(1, 2)"]),
    ("attention", [("x = x.transpose(1, 2).reshape(B, T, C)", "x = x.reshape(B, T, C)")],
     ["Attention(x) differs", "without transpose(1, 2) first"]),
    ("linear", [("x @ self.weight.T", "x @ self.weight"), ("torch.randn(n_out, n_in)", "torch.randn(n_in, n_out)")],
     ["Linear(16, 64)'s weight has shape (16, 64), the project's has (64, 16)", "(n_out, n_in)"]),
    ("loss", [("ignore_index=-1", "ignore_index=-100")], ["raised", "ignore_index=-1"]),
]


@pytest.mark.parametrize("name", NAMES)
def test_the_stub_fails_and_says_what_to_write(name, repo_root):
    step = next(s for s in STEPS if s.name == name)
    passed, lines = run(name)
    report = "\n".join(lines)
    assert not passed
    assert lines[0] == f"step {step.number}, {step.title}: docs/exercises/{name}.py"
    assert lines[1].startswith("WRONG: ")
    assert "not written yet" in report or "has no parameters yet" in report, report
    assert "TODO" in report, report


@pytest.mark.parametrize("name", NAMES)
def test_the_stub_holds_no_answer(name, repo_root):
    """Every function of a stub ends in NotImplementedError or only sets up the module (super().__init__)."""
    tree = ast.parse((repo_root / "docs" / "exercises" / f"{name}.py").read_text())
    assert "TODO" in ast.unparse(tree) or "TODO" in (repo_root / "docs" / "exercises" / f"{name}.py").read_text()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            kinds = {type(s).__name__ for s in body}
            assert kinds <= {"Raise", "Pass", "Expr"}, (name, node.name, kinds)
            for statement in body:
                if isinstance(statement, ast.Expr):
                    assert ast.unparse(statement) == "super().__init__()", (name, node.name)


@pytest.mark.parametrize("name", NAMES)
def test_the_answer_passes(name, repo_root):
    passed, lines = run(name, repo_root / "docs" / "exercises" / "answers" / f"{name}.py")
    assert passed, "\n".join(lines)
    assert lines[1] == "OK: it agrees with the scalar engine"


def wrong_answer(repo_root, tmp_path, name, edits):
    text = (repo_root / "docs" / "exercises" / "answers" / f"{name}.py").read_text()
    for old, new in edits:
        text = replace_once(text, old, new)
    wrong_device = "cpu" if best_device_here().type != "cpu" else "cuda"
    path = tmp_path / f"{name}.py"
    path.write_text(text.replace("WRONG_DEVICE", repr(wrong_device)))
    return path


@pytest.mark.parametrize("name, edits, words", [(name, *WRONG[name]) for name in NAMES] + MORE_WRONG,
                         ids=[*NAMES, "attention-split", "attention-merge", "linear-layout", "loss-ignore-index"])
def test_a_typical_wrong_answer_is_named(name, edits, words, repo_root, tmp_path):
    passed, lines = run(name, wrong_answer(repo_root, tmp_path, name, edits))
    report = "\n".join(lines)
    assert not passed and lines[1].startswith("WRONG: "), report
    for word in words:
        assert word in report, f"{word!r} not in:\n{report}"


def test_the_loop_answer_prints_the_original_programs_first_ten_lines(repo_root):
    """Against the golden trace of the original program (its printed lines), not the checker's own run."""
    golden = json.loads((repo_root / "compare" / "golden" / "microgpt.json").read_text())
    passed, lines = run("train", repo_root / "docs" / "exercises" / "answers" / "train.py")
    assert passed, "\n".join(lines)
    printed = [line.split("   = ")[0].strip() for line in lines[2:]]
    assert len(printed) == 10
    assert printed == [f"step {step['step']:4d} / {golden['num_steps']:4d} | loss {step['printed']}"
                       for step in golden["steps"][:10]]


def test_the_command_checks_a_file_and_exits_by_the_verdict(repo_root, capsys, monkeypatch):
    from tutorial.exercises import main

    monkeypatch.chdir(repo_root)
    assert main(["rmsnorm", "--file", "docs/exercises/answers/rmsnorm.py"]) == 0
    assert "OK: it agrees with the scalar engine" in capsys.readouterr().out
    assert main(["rmsnorm"]) == 1
    assert "WRONG: rmsnorm(x) is not written yet" in capsys.readouterr().out
    assert main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 13


def test_the_script_runs_as_a_program_from_the_repository_root(repo_root):
    stub = subprocess.run([sys.executable, "scripts/exercise.py", "rmsnorm"], cwd=repo_root, capture_output=True,
                          text=True)
    assert stub.returncode == 1, stub.stderr
    assert "WRONG: rmsnorm(x) is not written yet" in stub.stdout
    assert "docs/exercises/rmsnorm.py, line" in stub.stdout


def test_no_torch_state_leaks_between_checks():
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
