"""Shared fixtures: where the repository and the names file shipped with the package are, the
guide's notebook, run once per test session, torch on one thread for a torch test file, and
the processes a test starts."""
import os
import signal
import sys
from pathlib import Path

import pytest

from helpers import Children, descendants

from microgpt_scalar.data import default_data_path

REPO = Path(__file__).resolve().parents[1]
NAMES = default_data_path()


def pytest_configure(config):
    """Ctrl-C reaches the processes the tests start as it would from a terminal, also when the
    run was started in the background by a script (a shell then starts it with SIGINT ignored,
    and every process it starts would inherit that): the tests that press Ctrl-C at a random
    moment would otherwise find it lost when it came before a command installs its handler."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def names_path() -> Path:
    if not NAMES.is_file():
        pytest.fail(f"the names file shipped with the package is missing: {NAMES}")
    return NAMES


@pytest.fixture(scope="session")
def guide_notebook_outputs(repo_root):
    """(origin, stdout, error names) of every code cell of docs/bridge.md's notebook, run top to
    bottom once per session in a fresh kernel on the CPU (several test files read it)."""
    from tutorial.notebook import cell_outputs, execute, make_notebook

    page = (repo_root / "docs" / "bridge.md").read_text(encoding="utf-8")
    return cell_outputs(execute(make_notebook(page), repo_root))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a test file's tests, and the thread count put back after
    (the tensors are tiny; a script under test may set the count too). A torch test file
    asks for it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    from torch_checks import single_thread

    with single_thread():
        yield


@pytest.fixture()
def children():
    """Starts a test's processes (`children.start(args, **popen_arguments)`), and kills and reaps
    each, with everything it started, once the test ends, whether it passed or failed."""
    started = Children()
    yield started
    started.end_all()


def stop_resource_tracker() -> None:
    """multiprocessing's resource tracker, which a process pool (the class check's) starts
    once per interpreter and which lives until the interpreter ends: asked to end here, as
    the interpreter would at its exit, so it is not taken for a process a test left."""
    import multiprocessing.resource_tracker as resource_tracker

    stop = getattr(resource_tracker._resource_tracker, "_stop", None)
    if stop is not None:
        stop()


def pytest_sessionfinish(session, exitstatus):
    """Nothing a test started outlives the run: a process started from this one and still
    running now (a test left it) is killed, and named on stderr. With the tests spread over
    workers (pytest-xdist), each worker checks its own; the process that leads them does not
    (its children are the workers)."""
    if session.config.pluginmanager.hasplugin("dsession"):
        return
    stop_resource_tracker()
    left = descendants(os.getpid())
    for pid in left:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                if stat.read().rpartition(b")")[2].split()[0] == b"Z":  # ended, not yet reaped
                    continue
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
            os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
        print(f"\nkilled process {pid}, left running by a test: {command[:200]}", file=sys.stderr)


# The files that take longest, longest first: the workers start on them, so no worker is
# left with a long file when the others are done. (pytest-xdist hands out whole files in the
# order collected: pyproject's addopts keep that order.) A file missing here runs after these.
LONGEST_FILES = (
    "test_output_claims.py",
    "test_bench.py",
    "test_exercises.py",
    "test_sandbox.py",
    "test_compare_learner_engines.py",
    "test_offline_clone.py",
    "test_compare_isolation.py",
    "test_torch_scripts.py",
    "test_bridge_docs.py",
    "test_train_scalar.py",
    "test_certify_class.py",
    "test_fuzz_flags.py",
    "test_compare_faults.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))  # stable: each file's order kept
