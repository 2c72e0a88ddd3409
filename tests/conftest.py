"""Shared fixtures: where the repository and the canonical names file are."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAMES = REPO.parent / "shared" / "data" / "names.txt"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def names_path() -> Path:
    if not NAMES.is_file():
        pytest.fail(f"the canonical names file is missing: {NAMES}")
    return NAMES
