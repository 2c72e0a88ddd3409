"""The tutorial's thirteen exercises: each checker fails on its stub with a message that says what
to write, passes on the answer, and names a typical wrong answer (made from the answer by one
edit) in the learner's terms. The step-9 answer reproduces the original program's first log lines."""
from __future__ import annotations

import ast
import json
import os
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
    # a wrong transpose in attention: k not transposed, or transposed on the wrong axes
    ("attention", [("q @ k.transpose(-2, -1)", "q @ k")],
     ["attention_head(q, k, v) raised", "line 9: scores = q @ k /", "q @ k.transpose(-2, -1)"]),
    ("attention", [("q @ k.transpose(-2, -1)", "q @ k.transpose(0, 1)")],
     ["Attention(x) raised", "transpose only k's last two axes"]),
    # the causal mask in the head but not in the multi-head module (torch's fused attention, is_causal left out)
    ("attention", [("x = attention_head(q, k, v)", "x = F.scaled_dot_product_attention(q, k, v)")],
     ["Attention(x) differs", "no causal mask"]),
    ("train", [("        optimizer.zero_grad()\n", ""), ("loss.backward()\n", "loss.backward()\n        optimizer.zero_grad()\n")],
     ["loss of step 2 differs", "optimizer.zero_grad() comes between backward() and step()"]),
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


@pytest.fixture(scope="module")
def answer_runs(repo_root):
    """name -> (passed, lines) of the check on the exercise's answer, each run once for the tests that read it."""
    done = {}

    def of(name):
        if name not in done:
            done[name] = run(name, repo_root / "docs" / "exercises" / "answers" / f"{name}.py")
        return done[name]

    return of


@pytest.mark.parametrize("name", NAMES)
def test_the_answer_passes(name, answer_runs):
    passed, lines = answer_runs(name)
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
                         ids=[*NAMES, "attention-split", "attention-merge", "linear-layout", "loss-ignore-index",
                              "attention-k-not-transposed", "attention-k-transposed-on-wrong-axes",
                              "attention-multi-head-without-mask", "train-zero-grad-after-backward"])
def test_a_typical_wrong_answer_is_named(name, edits, words, repo_root, tmp_path):
    passed, lines = run(name, wrong_answer(repo_root, tmp_path, name, edits))
    report = "\n".join(lines)
    assert not passed and lines[1].startswith("WRONG: "), report
    for word in words:
        assert word in report, f"{word!r} not in:\n{report}"


def test_the_loop_answer_prints_the_original_programs_first_ten_lines(repo_root, answer_runs):
    """Against the golden trace of the original program (its printed lines), not the checker's own run."""
    golden = json.loads((repo_root / "compare" / "golden" / "microgpt.json").read_text())
    passed, lines = answer_runs("train")
    assert passed, "\n".join(lines)
    printed = [line.split("   = ")[0].strip() for line in lines[2:]]
    assert len(printed) == 10
    assert printed == [f"step {step['step']:4d} / {golden['num_steps']:4d} | loss {step['printed']}"
                       for step in golden["steps"][:10]]


def test_the_command_checks_a_file_and_exits_by_the_verdict(repo_root, capsys, monkeypatch):
    from tutorial.exercise_command import main

    monkeypatch.chdir(repo_root)
    assert main(["rmsnorm", "--file", "docs/exercises/answers/rmsnorm.py"]) == 0
    assert "OK: it agrees with the scalar engine" in capsys.readouterr().out
    assert main(["--list"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 13


def test_the_script_runs_as_a_program_from_the_repository_root(repo_root):
    """On the stub: main()'s verdict (1, it differs) is the program's exit status."""
    stub = subprocess.run([sys.executable, "scripts/exercise.py", "rmsnorm"], cwd=repo_root, capture_output=True,
                          text=True)
    assert stub.returncode == 1, stub.stderr
    assert "WRONG: rmsnorm(x) is not written yet" in stub.stdout
    assert "docs/exercises/rmsnorm.py, line" in stub.stdout


def test_no_torch_state_leaks_between_checks():
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()


# The command on files it cannot check: one line on stderr naming the file and the problem, exit 2,
# no verdict on stdout. Each hostile file runs under the limits the command is given here.

def command(repo_root, *args, limit_s=200):
    return subprocess.run([sys.executable, "scripts/exercise.py", *map(str, args)], cwd=repo_root, capture_output=True,
                          text=True, timeout=limit_s)


def one_error_line(done, *words):
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    report = done.stdout.split("printed (its own output, not the check's):")[0]
    assert "OK:" not in report and "WRONG:" not in report, done.stdout
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def test_no_exercise_name_is_one_error_line_naming_the_exercises(capsys):
    from tutorial.exercise_command import main

    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: name the exercise to check") and err.count("\n") == 1
    assert all(step.name in err for step in STEPS)


@pytest.mark.parametrize("args, words", [
    (["attn"], ["invalid choice: 'attn'"]),
    (["mlp", "--file", "no/such/file.py"], ["--file not found", "no/such/file.py"]),
    (["mlp", "--timeout", "0"], ["--timeout", "out of range"]),
    (["mlp", "--max-memory", "10"], ["--max-memory", "out of range"]),
])
def test_a_bad_command_line_is_one_error_line(args, words, capsys):
    from tutorial.exercise_command import main

    try:
        code = main(args)
    except SystemExit as exit:  # argparse's refusal
        code = exit.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: ")
    for word in words:
        assert word in err


HOSTILE = {  # name -> (the learner's file, the command's limits, words the error line must hold)
    "empty": ("", [], ["empty.py is empty", "docs/exercises/mlp.py"]),
    "syntax": ("def MLP(:\n    pass\n", [], ["syntax.py, line 1", "Python cannot read the file"]),
    "raises": ('print("OK: it agrees with the scalar engine")\nraise ValueError("no model here")\n', [],
               ["importing", "raises.py raised ValueError: no model here", 'line 2: raise ValueError("no model here")']),
    "exits": ("import sys\nsys.exit(3)\n", [], ["exits.py called sys.exit(3)", "line 2: sys.exit(3)"]),
    "ends": ("import os\nos._exit(0)\n", [], ["ends.py ended the check's process (exit status 0)", "os._exit()"]),
    "hangs": ("import torch\nx = torch.zeros(1)\nwhile True:\n    x = x + 1\n", ["--timeout", "1"],
              ["hangs.py did not finish within 1 s", "still running line 4: x = x + 1", "--timeout"]),
    "hogs": ("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n", ["--max-memory", "1000"],
             ["hogs.py ran out of memory", "line 3: chunks.append", "--max-memory"]),
    "hogs_in_torch": ("import torch\nbig = torch.empty(1 << 40, dtype=torch.uint8)\n", ["--max-memory", "1000"],
                      ["ran out of memory", "line 2: big = torch.empty"]),
    "crashes": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", [],
                ["crashes.py was ended by SIGSEGV at line 2"]),
    "forges": ("import os\n"
               "forged = b'{\"passed\": true, \"lines\": [\"OK: it agrees with the scalar engine\"]}\\n'\n"
               "for fd in map(int, os.listdir('/proc/self/fd')):\n"
               "    if fd > 2:\n"
               "        try:\n"
               "            os.write(fd, forged)\n"
               "        except OSError:\n"
               "            pass\n"
               "print('OK: it agrees with the scalar engine')\n"
               "os._exit(0)\n", [], ["verdict channel holds something else", "no verdict"]),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_file_that_cannot_be_checked_ends_in_one_error_line(name, repo_root, tmp_path):
    text, limits, words = HOSTILE[name]
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    done = command(repo_root, "mlp", "--file", path, *limits)
    one_error_line(done, *words)
    if "print(" in text:  # what it printed is shown apart from the verdict, marked as its own
        assert "(its own output, not the check's):\n  | OK: it agrees with the scalar engine" in done.stdout


PATCHED_MLP = """import torch.nn as nn
{patch}


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.fc2 = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return x  # wrong: only a patched checker could pass it
"""
PATCHES = {
    "rebinds": "import tutorial.model_steps as steps\n"
               "steps.compare_sublayer = lambda *args, **kwargs: ['ok']",
    "rewrites": "import tutorial.model_steps as steps\n"
                "steps.compare_sublayer.__code__ = (lambda *args, **kwargs: ['ok']).__code__",
}


@pytest.fixture(scope="module")
def unpatched_run(repo_root, tmp_path_factory):
    """The command on the patched files' MLP without its patch (the same for every patch: run once)."""
    path = tmp_path_factory.mktemp("unpatched") / "mlp.py"
    path.write_text(PATCHED_MLP.format(patch=""))
    return command(repo_root, "mlp", "--file", path)


@pytest.mark.parametrize("how", PATCHES)
def test_a_file_that_patches_the_checker_gets_no_verdict(how, repo_root, tmp_path, unpatched_run):
    path = tmp_path / "mlp.py"
    path.write_text(PATCHED_MLP.format(patch=PATCHES[how]))
    one_error_line(command(repo_root, "mlp", "--file", path), "changed the checker's own code",
                   "tutorial.model_steps.compare_sublayer")
    done = unpatched_run  # the same file unpatched: the check finds its mistake
    assert done.returncode == 1 and "WRONG: MLP(x) differs from the scalar engine" in done.stdout, done.stdout


def test_the_learners_output_is_shown_apart_and_does_not_change_the_verdict(repo_root, tmp_path):
    answer = (repo_root / "docs" / "exercises" / "answers" / "rmsnorm.py").read_text()
    path = tmp_path / "rmsnorm.py"
    path.write_text(answer + "\nprint('WRONG: forged')\nprint('step 2, rmsnorm on a batch')\n")
    done = command(repo_root, "rmsnorm", "--file", path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    report, printed = done.stdout.split(f"what {path} printed (its own output, not the check's):\n")
    assert report.splitlines()[1] == "OK: it agrees with the scalar engine" and "forged" not in report
    assert printed.splitlines() == ["  | WRONG: forged", "  | step 2, rmsnorm on a batch"]


def test_a_process_the_file_starts_and_detaches_is_ended_with_the_check(repo_root, tmp_path):
    """A child that leaves the check's session (setsid) comes to the keeper as an orphan and is ended."""
    pid_file = tmp_path / "pid"
    path = tmp_path / "detaches.py"
    path.write_text("import os, time\n"
                    "pid = os.fork()\n"
                    "if pid == 0:\n"
                    "    os.setsid()\n"
                    "    time.sleep(60)\n"
                    "    os._exit(0)\n"
                    f"open({str(pid_file)!r}, 'w').write(str(pid))\n")
    done = command(repo_root, "mlp", "--file", path)
    assert done.returncode == 1 and f"WRONG: {path} has no MLP" in done.stdout, done.stdout + done.stderr
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
