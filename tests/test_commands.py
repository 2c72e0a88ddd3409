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
    """The wrapper imports one thing, the module's entry function (after the start-up guard that
    keeps a Ctrl-C during the import to one line), and defines nothing."""
    tree = ast.parse((repo_root / "scripts" / f"{name}.py").read_text())
    imported = [node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] not in sys.stdlib_module_names]
    assert sorted(imported) == sorted(["microgpt_scalar.startup", module])
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


# --- one set of flags -----------------------------------------------------------------------

COMMANDS = ["compare_step", "certify", "train_scalar", "train_torch", "sample"]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_examples_and_exit_codes_and_quiet(name, capsys):
    from helpers import load_script

    with pytest.raises(SystemExit) as done:
        load_script(name).parse_args(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "Exit codes: 0" in out or "Exit 0" in out, out
    assert "    python scripts/" in out  # the examples, as written in the docstring
    assert "-q, --quiet" in out


@pytest.mark.parametrize("name, argv", [("train_torch", []), ("sample", ["x.pt"])])
@pytest.mark.parametrize("device, ok", [("auto", True), ("cpu", True), ("cuda", True), ("cuda:1", True),
                                        ])
def test_every_device_flag_takes_the_same_names(name, argv, device, ok, capsys):
    from helpers import load_script

    parse = load_script(name).parse_args
    if ok:
        assert parse([*argv, "--device", device]).device == device
        return
    with pytest.raises(SystemExit) as done:
        parse([*argv, "--device", device])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and "cuda:N" in err, err


@pytest.mark.parametrize("device, words", [("cuda:3", "CUDA"), ("cuda", "CUDA")])
def test_an_absent_device_is_one_line_and_exit_2(device, words, tmp_path, capsys):
    import torch

    from helpers import load_script

    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has CUDA")
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    for name, argv in (("train_torch", ["--steps", "1"]), ("compare_step", [])):
        assert load_script(name).main([*argv, "--device", device]) == 2
        err = "".join(line for line in capsys.readouterr().err.splitlines(keepends=True)
                      if not line.startswith("threads: "))
        assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err


def test_old_spellings_still_work_with_a_one_line_note(tmp_path, repo_root):
    """--load (now --resume) and --num-samples (now --samples), for one version."""
    save = tmp_path / "run.json"
    first = run(repo_root, [str(repo_root / "scripts" / "train_scalar.py"), "--steps", "3", "--stop-after", "1", "--samples", "0",
                            "--save", str(save)], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    new = run(repo_root, [str(repo_root / "scripts" / "train_scalar.py"), "--resume", str(save), "--samples", "2"], cwd=tmp_path)
    old = run(repo_root, [str(repo_root / "scripts" / "train_scalar.py"), "--load", str(save), "--samples", "2"], cwd=tmp_path)
    assert new.returncode == old.returncode == 0 and new.stdout == old.stdout and "step    3 /    3" in new.stdout
    assert new.stderr == ""
    assert old.stderr == "note: --load is deprecated and goes in the next version; use --resume\n"
    from helpers import load_script

    sample = load_script("sample")
    assert sample.parse_args(["x.pt", "--num-samples", "7"]).samples == 7
    assert sample.parse_args(["x.pt"]).samples == 20  # the new flag's default stands


def test_quiet_leaves_only_the_result(tmp_path, repo_root):
    result = run(repo_root, [str(repo_root / "scripts" / "compare_step.py"), "-q"], cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("AGREE") and result.stdout.count("\n") == 1
    trained = run(repo_root, [str(repo_root / "scripts" / "train_torch.py"), "--steps", "1", "--samples", "0", "-q"], cwd=tmp_path)
    assert trained.returncode == 0 and trained.stderr == "", trained.stderr  # no line about threads
    assert trained.stdout.splitlines()[-1] == "step    1 /    1 | loss 3.3630"


def on_a_terminal(command: list, cwd, env) -> tuple[int, str, bytes]:
    """(exit code, stdout, what reached the terminal stderr was)."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing in 0 columns
    try:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300)
        os.close(slave)
        terminal = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's writer has gone
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    return done.returncode, done.stdout, terminal


def test_the_torch_trainers_progress_bar_is_drawn_on_a_terminal_unless_quiet(repo_root, tmp_path):
    command = [sys.executable, str(repo_root / "scripts" / "train_torch.py"), "--mode", "batched", "--steps", "3",
               "--batch-size", "4", "--samples", "0", "--eval-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    code, out, terminal = on_a_terminal(command, tmp_path, env)
    assert code == 0 and b"train" in terminal and b"3/3" in terminal
    code, quiet_out, terminal = on_a_terminal([*command, "-q"], tmp_path, env)
    assert code == 0 and terminal == b"" and quiet_out == out
