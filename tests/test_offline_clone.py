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
    result = offline("-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/test_data.py")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(offline, clone, tmp_path_factory):
    """The wheel `pip wheel` builds from the clone, offline (built once: the tests below read it
    and install it)."""
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed: no wheel can be built here")
    folder = tmp_path_factory.mktemp("wheel")
    result = offline("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                     "-w", str(folder), str(clone))
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = folder.glob("microgpt_bridge-*.whl")
    return built


def test_a_wheel_built_offline_carries_the_names_file(wheel, clone):
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


def without_python_settings() -> dict:
    """This process's environment without PYTHON* and VIRTUAL_ENV: no path of this run's leaks in."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def installed(offline, wheel, tmp_path_factory):
    """The wheel built from the clone, installed into a fresh venv (torch, numpy, pytest and pip
    from this interpreter's site-packages: nothing is downloaded): its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    made = offline("-m", "venv", "--system-site-packages", "--without-pip", str(venv))
    assert made.returncode == 0, made.stderr[-2000:]
    # without this run's PYTHONPATH: a checkout on it (with an egg-info of an editable install) would
    # count as installed already, and pip would install nothing
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=600, env=without_python_settings())
    assert done.returncode == 0, done.stderr[-2000:]
    return venv / "bin"


def test_every_command_works_from_an_empty_folder_after_installing_the_wheel(installed, tmp_path, repo_root):
    """No clone beside it, no PYTHONPATH: microgpt-compare, python -m compare, microgpt-certify
    --engines DIR, microgpt-train (2 steps, either engine), microgpt-sample, the pytest plugin."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = without_python_settings()
    env.update(PATH=f"{installed}{os.pathsep}{env.get('PATH', '')}", PYTHONDONTWRITEBYTECODE="1")

    def run(*command, timeout=900):
        return subprocess.run([str(installed / command[0]), *command[1:]], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=timeout)

    where = run("python", "-c", "from importlib.util import find_spec; "  # where `import` finds them, unimported
                "print(find_spec('compare').origin); print(find_spec('microgpt_torch').origin)")
    assert where.returncode == 0 and all(str(installed.parent) in line for line in where.stdout.splitlines()), where
    compared = run("microgpt-compare", "-q")
    assert compared.returncode == 0 and compared.stdout.startswith("AGREE"), compared.stderr[-2000:]
    as_module = run("python", "-m", "compare", "--list-faults")
    assert as_module.returncode == 0 and "exp-grad" in as_module.stdout, as_module.stderr[-2000:]
    for command in ("microgpt-compare", "microgpt-certify", "microgpt-train", "microgpt-sample"):
        version = run(command, "--version")
        assert version.returncode == 0 and "(microgpt-bridge)" in version.stdout, (command, version.stderr)
    trained = run("microgpt-train", "--steps", "2", "--samples", "1", "--save", "run.pt", "-q")
    assert trained.returncode == 0 and "step    2 /    2 | loss 3.2917" in trained.stdout, trained.stderr[-2000:]
    scalar = run("microgpt-train", "scalar", "--steps", "2", "--samples", "0")
    assert scalar.returncode == 0 and scalar.stdout.splitlines()[-1] == "step    2 /    2 | loss 3.2917", scalar.stderr
    sampled = run("microgpt-sample", "run.pt", "--samples", "3")
    assert sampled.returncode == 0 and sampled.stdout.count("sample ") == 3, sampled.stderr[-2000:]
    submissions = empty / "class"
    submissions.mkdir()
    shutil.copy(repo_root / "tests" / "fixtures" / "learner_engine.py", submissions / "ada.py")
    certified = run("microgpt-certify", "--engines", "class", "--jobs", "1", "--steps", "1", "--out", "results", "-q")
    assert certified.returncode == 0 and "ada" in certified.stdout and "AGREE" in certified.stdout, certified.stderr
    assert (empty / "results" / "index.html").is_file()
    (empty / "engine.py").write_text((repo_root / "tests" / "fixtures" / "learner_engine.py").read_text())
    (empty / "test_engine.py").write_text("def test_engine(engine_agrees):\n    engine_agrees('engine.py')\n")
    tested = run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_engine.py")
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout[-3000:]


def test_the_sdist_carries_what_its_tests_need(offline, clone, tmp_path):
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed: no sdist can be built here")
    built = offline("-c", f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))")
    assert built.returncode == 0, built.stderr[-2000:]
    import tarfile

    (sdist,) = tmp_path.glob("microgpt_bridge-*.tar.gz")
    names = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    for needed in ("tests/conftest.py", "tests/helpers.py", "tests/fixtures/learner_engine.py",
                   "tests/engines/local_gradients.py", "scripts/compare_step.py", "docs/bridge.md", "LICENSE",
                   "requirements.txt", "compare/golden/microgpt.json", "bench/cli.py"):
        assert needed in names, needed
    test_files = {path.relative_to(clone).as_posix() for path in (clone / "tests").rglob("*") if path.is_file()}
    assert test_files <= names, sorted(test_files - names)[:5]
