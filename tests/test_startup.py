"""How the scripts start: the checker never loads torch's compiler, and the torch trainer
chooses a passive OpenMP wait policy (unless the environment sets one) and says so.

    pytest tests/test_startup.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def run(repo_root, args, env=None):
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    environment.update(PYTHONPATH=str(repo_root), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=repo_root, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_checker_never_imports_the_compiler(repo_root):
    """torch._dynamo takes about a second to import; an eager Adam step has no use for it."""
    result = run(repo_root, ["-X", "importtime", "scripts/compare_step.py"])
    assert result.returncode == 0 and result.stdout.startswith("AGREE"), result.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")]
    assert "torch" in imported  # the check below looks at a real list
    assert not [name for name in imported if name.startswith("torch._dynamo")]


def test_adam_without_the_compiler_wrappers_steps_as_torch_adam_does():
    import torch

    from microgpt_torch.optim import Adam

    torch.manual_seed(0)
    start = torch.randn(5, 3, dtype=torch.float64)
    grads = [torch.randn(5, 3, dtype=torch.float64) for _ in range(3)]
    finals = []
    for cls in (torch.optim.Adam, Adam):
        p = torch.nn.Parameter(start.clone())
        optimizer = cls([p], lr=0.1, betas=(0.9, 0.95), eps=1e-8)
        for g in grads:
            optimizer.zero_grad()
            p.grad = g.clone()
            optimizer.step()  # an in-place update of a leaf that records gradients would raise
        finals.append((p.detach().clone(), optimizer.state_dict()["state"][0]["exp_avg_sq"].clone()))
    assert torch.equal(finals[0][0], finals[1][0]) and torch.equal(finals[0][1], finals[1][1])
    assert not torch.equal(finals[0][0], start)


@pytest.mark.parametrize("env, shown", [
    ({}, "OMP_WAIT_POLICY=PASSIVE: "),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "OMP_WAIT_POLICY=ACTIVE (from the environment)"),
])
def test_torch_trainer_says_which_thread_policy_it_chose(repo_root, env, shown):
    result = run(repo_root, ["scripts/train_torch.py", "--steps", "1", "--samples", "0"], env)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("threads: ")]
    assert shown in line and line.startswith("threads: 1 torch threads")


def test_the_policy_is_set_before_torch_loads_openmp(repo_root):
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: the script sets it before."""
    probe = (
        "import importlib.abc, os, runpy, sys\n"
        "seen = []\n"
        "class Watch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch' and not seen:\n"
        "            seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
        "sys.meta_path.insert(0, Watch())\n"
        "sys.argv = ['train_torch.py', '--help']\n"
        "try:\n    runpy.run_path('scripts/train_torch.py', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(seen)\n"
    )
    result = run(repo_root, ["-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['PASSIVE']"
