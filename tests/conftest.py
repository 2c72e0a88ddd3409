"""Shared fixtures: where the repository and the names file shipped with the package are, and the
guide's notebook, run once per test session."""
from pathlib import Path

import pytest

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
