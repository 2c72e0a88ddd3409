"""Helpers the test files share: loading a script as a module, editing a copy of a source file,
checking a one-line error."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LEARNER_ENGINE = REPO / "tests" / "fixtures" / "learner_engine.py"  # a correct engine, micrograd's style


COMMAND_MODULES = {  # scripts/{name}.py is a thin wrapper over the package module that holds its code
    "compare_step": "compare.command",
    "certify": "compare.certify_command",
    "train_scalar": "microgpt_scalar.train_command",
    "train_torch": "microgpt_torch.train_command",
    "sample": "microgpt_torch.sample_command",
}


def load_script(name: str):
    """The code of scripts/{name}.py as a module, to call its functions in this process: the
    package module a command's wrapper runs, or the script itself."""
    if name in COMMAND_MODULES:
        return importlib.import_module(COMMAND_MODULES[name])
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def replace_once(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced by `new`; fails unless `old` occurs exactly once, so an edit
    that no longer applies cannot leave a test checking the unedited code."""
    assert text.count(old) == 1, f"expected exactly one {old!r}, found {text.count(old)}"
    return text.replace(old, new)


def edited_copy(source: Path, target: Path, old: str, new: str) -> Path:
    """Write `source` to `target` with one edit; returns `target`."""
    target.write_text(replace_once(source.read_text(encoding="utf-8"), old, new), encoding="utf-8")
    return target


def assert_one_line_error(error_type, call, words) -> None:
    """`call()` raises `error_type` with a one-line message containing every one of `words`."""
    with pytest.raises(error_type) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def verdict_of(out: str) -> str:
    """The verdict line of a report (the probe table and the skipped lines come before it)."""
    return next((line for line in out.splitlines() if line.startswith(("AGREE", "DISAGREE"))), "")
