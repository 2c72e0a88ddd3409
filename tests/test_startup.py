"""How the scripts start: the checker never loads torch's compiler, and the torch trainer
chooses a passive OpenMP wait policy (unless the environment sets one) and says so.

    pytest tests/test_startup.py
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import verdict_of


def run(repo_root, args, env=None):
    environment = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    environment.update(PYTHONPATH=str(repo_root), **(env or {}))
    return subprocess.run([sys.executable, *args], cwd=repo_root, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_checker_never_imports_the_compiler(repo_root):
    """torch._dynamo takes about a second to import; an eager Adam step has no use for it."""
    result = run(repo_root, ["-X", "importtime", "scripts/compare_step.py"])
    assert result.returncode == 0 and verdict_of(result.stdout).startswith("AGREE"), result.stderr[-2000:]
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
    assert shown in line and line.startswith("threads: 1 torch thread (faithful mode: ")


def test_the_policy_is_set_before_torch_loads_openmp(repo_root):
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: the script sets it before. The
    probe stops the script at its first import of torch (what comes after is not looked at)."""
    probe = (
        "import importlib.abc, os, runpy, sys\n"
        "seen = []\n"
        "class TorchReached(Exception):\n    pass\n"
        "class Watch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'torch' and not seen:\n"
        "            seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
        "            raise TorchReached()\n"
        "sys.meta_path.insert(0, Watch())\n"
        "sys.argv = ['train_torch.py', '--help']\n"
        "try:\n    runpy.run_path('scripts/train_torch.py', run_name='__main__')\n"
        "except (SystemExit, TorchReached):\n    pass\n"
        "print(seen)\n"
    )
    result = run(repo_root, ["-c", probe])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['PASSIVE']"


@pytest.mark.parametrize("seen, threads, why", [
    ((2, 2), 2, "all 2 cores idle"),
    ((1, 2), 1, "1 of 2 cores busy"),
    ((0, 2), 1, "2 of 2 cores busy"),  # never fewer than one
    (None, None, "torch's default"),
])
def test_batched_training_takes_one_thread_per_idle_core(monkeypatch, seen, threads, why):
    import microgpt_torch.device as device

    monkeypatch.setattr(device, "idle_cpus", lambda seconds=0.2: seen)
    chosen, reason = device.cpu_threads_for_batches()
    assert chosen == threads and why in reason


def test_a_core_kept_busy_by_another_process_is_seen_as_busy(children):
    """The oracle is the scheduler: a spinning process pinned to one core fills it (and is
    killed when the test ends, however it ends)."""
    import os
    import sys

    import microgpt_torch.device as device

    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores and CPU affinity")
    cpu = max(os.sched_getaffinity(0))
    busy = children.start([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(busy.pid, {cpu})
    idle, allowed = device.idle_cpus(0.5)
    assert idle <= allowed - 1
