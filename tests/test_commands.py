"""The commands: each script in scripts/ is a thin wrapper over the package module that holds
its code, every command answers --version, `python -m compare` is the main job, and
`microgpt-train` picks its engine by its first word (the scalar one without torch).

    pytest tests/test_commands.py
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from helpers import COMMAND_MODULES

import microgpt_scalar


def run(repo_root, args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    return subprocess.run([sys.executable, *args], cwd=cwd or repo_root, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_version_is_one_for_every_package():
    import compare
    import microgpt_torch

    assert microgpt_scalar.__version__ == compare.__version__ == microgpt_torch.__version__
    assert all(part.isdigit() for part in microgpt_scalar.__version__.split("."))


@pytest.mark.parametrize("args", [["scripts/compare_step.py"], ["scripts/certify.py"], ["scripts/train_scalar.py"],
                                  ["scripts/train_torch.py"], ["scripts/sample.py"], ["-m", "compare"]])
def test_every_command_tells_its_version(repo_root, args):
    result = run(repo_root, [*args, "--version"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"(microgpt-bridge) {microgpt_scalar.__version__}"), result.stdout


@pytest.mark.parametrize("name, module", sorted(COMMAND_MODULES.items()))
def test_each_script_only_runs_its_package_module(repo_root, name, module):
    """The wrapper imports one thing, the module's entry function, and defines nothing."""
    tree = ast.parse((repo_root / "scripts" / f"{name}.py").read_text())
    imported = [node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] not in sys.stdlib_module_names]
    assert imported == [module]
    assert not [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


def test_python_m_compare_is_the_main_job(repo_root, tmp_path):
    result = run(repo_root, ["-m", "compare", "--list-faults"], cwd=tmp_path)
    script = run(repo_root, ["scripts/compare_step.py", "--list-faults"])
    assert result.returncode == script.returncode == 0 and result.stdout == script.stdout and result.stdout
    usage = run(repo_root, ["-m", "compare", "--no-such-flag"], cwd=tmp_path)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1, usage.stderr


def test_microgpt_train_takes_the_engine_as_its_first_word(repo_root, tmp_path):
    """`scalar` runs the scalar trainer, which never imports torch; no word runs the torch one."""
    probe = ("import sys\nfrom microgpt_torch.commands import train\n"
             "code = train(sys.argv[1:])\nprint('torch imported:', 'torch' in sys.modules)\nsys.exit(code)\n")
    scalar = run(repo_root, ["-c", probe, "scalar", "--steps", "2", "--samples", "0"], cwd=tmp_path)
    assert scalar.returncode == 0, scalar.stderr
    assert scalar.stdout.splitlines()[-1] == "torch imported: False"
    torch_run = run(repo_root, ["-c", probe, "--steps", "2", "--samples", "0"], cwd=tmp_path)
    assert torch_run.returncode == 0, torch_run.stderr
    assert torch_run.stdout.splitlines()[-1] == "torch imported: True"
    # the same log: the torch trainer's faithful mode prints the scalar program's lines
    assert scalar.stdout.splitlines()[:-1] == torch_run.stdout.splitlines()[:-1]
