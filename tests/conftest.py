"""Shared fixtures: where the repository and the names file shipped with the package are, the
guide's notebook, run once per test session, and the processes a test starts."""
from pathlib import Path

import pytest

from helpers import Children

from microgpt_scalar.data import default_data_path

REPO = Path(__file__).resolve().parents[1]
NAMES = default_data_path()


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


@pytest.fixture()
def children():
    """Starts a test's processes (`children.start(args, **popen_arguments)`), and kills and reaps
    each, with everything it started, once the test ends, whether it passed or failed."""
    started = Children()
    yield started
    started.end_all()
