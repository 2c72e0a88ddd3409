"""The pytest plugin the package installs: the fixture `engine_agrees`.

    def test_engine(engine_agrees):
        engine_agrees("engine.py")          # a path relative to this test file, or a class

It is compare.testing.assert_engine_agrees, with paths taken from the test file's folder, so
the test passes or fails the same from wherever pytest is started.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def engine_agrees(request):
    folder = Path(str(request.fspath)).parent

    def check(engine, **options):
        from .testing import assert_engine_agrees

        if isinstance(engine, (str, os.PathLike)):
            engine = beside(folder, os.fspath(engine))
        return assert_engine_agrees(engine, **options)

    return check


def beside(folder: Path, spec: str) -> str:
    """"FILE[:CLASS]" with a relative FILE taken from `folder`."""
    path, colon, name = spec.rpartition(":")
    if not colon or not name.isidentifier():
        path, colon, name = spec, "", ""
    if not Path(path).is_absolute():
        path = str(folder / path)
    return path + colon + name
