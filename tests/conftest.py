"""Shared fixtures: where the repository and the names file shipped with the package are."""
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
