"""A fresh copy of the repository, with nothing beside it and no network, runs the checker, a
short training and the data tests; a built wheel carries the names file.

    pytest tests/test_offline_clone.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import reference
from helpers import verdict_of

NO_NETWORK_SITE = '''\
import socket

def _refuse(*args, **kwargs):
    raise OSError(101, "Network is unreachable (the test took the network away)")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
'''

TRY_THE_NETWORK = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=3)"


@pytest.fixture(scope="module")
def clone(repo_root, tmp_path_factory):
    """The tracked files, copied into an empty directory: nothing lies beside the copy."""
    if shutil.which("git") is None or not (repo_root / ".git").exists():
        pytest.skip("not a git checkout: no list of tracked files to copy")
    listed = subprocess.run(["git", "-C", str(repo_root), "ls-files", "-z"], capture_output=True, check=True)
    target = tmp_path_factory.mktemp("fresh") / "microgpt-bridge"
    for name in listed.stdout.decode().split("\0"):
        if name and (repo_root / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / name, target / name)
    assert [path.name for path in target.parent.iterdir()] == [target.name]  # alone in its folder
    assert (target / "microgpt_scalar" / "names.txt").is_file()
    return target


@pytest.fixture(scope="module")
def offline(clone, tmp_path_factory):
    """run(args) -> CompletedProcess: `python args...` in the clone, with the network unavailable
    (a private network namespace where possible, else every socket connect refused)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "XDG_"))}
    env.update(PYTHONPATH=str(clone), HOME=str(tmp_path_factory.mktemp("home")), PYTHONDONTWRITEBYTECODE="1")
    wrapper = []
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        wrapper = ["unshare", "-n"]
    else:
        site = tmp_path_factory.mktemp("site")
        (site / "sitecustomize.py").write_text(NO_NETWORK_SITE)
        env["PYTHONPATH"] = f"{clone}{os.pathsep}{site}"

    def run(*args, timeout=900):
        return subprocess.run([*wrapper, sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=timeout)

    return run


def test_the_network_is_really_unavailable_there(offline):
    result = offline("-c", TRY_THE_NETWORK)
    assert result.returncode != 0 and ("unreachable" in result.stderr or "OSError" in result.stderr), result.stderr


def test_the_clone_imports_its_own_packages(offline, clone):
    result = offline("-c", "import microgpt_scalar, compare; print(microgpt_scalar.__file__); print(compare.__file__)")
    assert result.returncode == 0, result.stderr
    assert all(line.startswith(str(clone)) for line in result.stdout.splitlines())


def test_checker_agrees_offline_in_a_fresh_clone(offline):
    result = offline("scripts/compare_step.py")
    assert result.returncode == 0, result.stderr
    assert verdict_of(result.stdout).startswith("AGREE")


def test_short_training_reads_the_shipped_names_and_prints_the_published_losses(offline):
    result = offline("scripts/train_scalar.py", "--steps", "500", "--stop-after", "2", "--samples", "0")
    assert result.returncode == 0, result.stderr
    published = reference.published("microgpt")  # and docs/reference.md's 32,033 names, vocab 27
    assert result.stdout.splitlines() == ["num docs: 32033", "vocab size: 27", *published.lines[:3]]


def test_data_tests_pass_in_the_clone(offline):
    result = offline("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_a_wheel_built_offline_carries_the_names_file(offline, clone, tmp_path):
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed: no wheel can be built here")
    result = offline("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                     "-w", str(tmp_path), str(clone))
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("microgpt_bridge-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.read("microgpt_scalar/names.txt")
    assert names == (clone / "microgpt_scalar" / "names.txt").read_bytes()
    files = archive.namelist()
    assert "compare/golden/microgpt.json" in files and "compare/__main__.py" in files
    assert {name.split("/")[0] for name in files if not name.split("/")[0].endswith(".dist-info")} == \
        {"microgpt_scalar", "microgpt_torch", "compare"}  # the benchmarks are not installed
    (entry_points,) = [name for name in files if name.endswith(".dist-info/entry_points.txt")]
    commands = archive.read(entry_points).decode()
    for command in ("microgpt-compare", "microgpt-certify", "microgpt-train", "microgpt-sample"):
        assert f"\n{command} = " in commands, commands
    assert any(name.endswith("LICENSE") for name in files)
