"""The verdicts the README shows are what the checker prints: each verdict line of its text
blocks, and each cause block under one, comes out of a real run of a command the README
names beside it.

Oracle: the program itself, run now; a README edited by hand, or a checker whose wording
changed since, fails here.
"""
from __future__ import annotations

import re
import shutil
import subprocess

from helpers import REPO, load_script

main = load_script("compare_step").main
README = (REPO / "README.md").read_text(encoding="utf-8")

# the runs the README's verdicts come from, as its text says, from the project's folder
RUNS = (
    [],  # the defaults
    ["--inject", "relu-grad-one"],  # a relu gradient of 1 at 0, which squaring hides
    ["--engine", "tests/engines/without_reflected.py"],  # no __rsub__, no __rtruediv__
    ["--engine", "tests/engines/assign_in_closure.py"],  # `=` for `+=`
)


def shown_blocks() -> list[str]:
    """The README's text blocks that hold a verdict."""
    blocks = re.findall(r"```text\n(.*?)```", README, re.DOTALL)
    return [block for block in blocks if re.search(r"^(AGREE|DISAGREE)", block, re.MULTILINE)]


def verdicts_and_causes(text: str) -> list[str]:
    """Each verdict line, and each cause block (its lines joined), of `text`."""
    found = [line for line in text.splitlines() if line.startswith(("AGREE", "DISAGREE"))]
    found += [block.strip() for block in re.findall(r"^(  cause    .*?)(?:\n\n|\Z)", text, re.DOTALL | re.MULTILINE)]
    return found


def test_every_verdict_and_cause_the_readme_shows_is_printed_by_a_run_it_names(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    printed = ""
    for argv in RUNS:
        main(argv)
        printed += capsys.readouterr().out
    shown = [item for block in shown_blocks() for item in verdicts_and_causes(block)]
    assert len(shown) >= 5, shown  # the four verdicts and a cause, at least
    for item in shown:
        assert item in printed, item


def conflict_markers(text: str) -> list[int]:
    """The line numbers of `text` that open or close a merge conflict (`<<<<<<< ours`,
    `>>>>>>> theirs`): left in by an unfinished merge, they are shown to readers as text."""
    return [number for number, line in enumerate(text.splitlines(), 1)
            if re.match(r"(<{7}|>{7})( |$)", line)]


def project_text_files() -> list:
    """The project's text files: git's tracked ones in a checkout, else (an unpacked sdist)
    every one under the project's folder but build output and hidden folders."""
    suffixes = {".py", ".md", ".toml", ".txt", ".ipynb", ".sh", ".cfg", ".in"}
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True)
        paths = [REPO / name for name in listed.stdout.decode().split("\0") if name]
    else:
        paths = [path for path in REPO.rglob("*") if not any(
            part.startswith(".") or part in {"build", "dist", "__pycache__"} for part in path.relative_to(REPO).parts)]
    return sorted(path for path in paths if path.suffix in suffixes and path.is_file())


def test_no_tracked_text_file_holds_a_merge_conflict():
    assert conflict_markers("a\n<<<<<<< HEAD\nb\n=======\nc\n>>>>>>> other\n") == [2, 6]
    assert conflict_markers("a << b\n    >>>>>>> not at the start\n") == []
    found = {}
    for path in project_text_files():
        lines = conflict_markers(path.read_text(encoding="utf-8", errors="replace"))
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert found == {}, f"merge conflict markers left in: {found}"


def test_the_files_the_workers_start_on_exist_and_are_collected_first(pytestconfig):
    """conftest's LONGEST_FILES: a renamed file would silently run last again."""
    from conftest import LONGEST_FILES, pytest_collection_modifyitems

    assert all((REPO / "tests" / name).is_file() for name in LONGEST_FILES), LONGEST_FILES

    class Item:
        def __init__(self, name):
            self.path = REPO / "tests" / name

    items = [Item(name) for name in ("test_data.py", LONGEST_FILES[1], "test_config.py", LONGEST_FILES[0])]
    pytest_collection_modifyitems(pytestconfig, items)
    assert [item.path.name for item in items] == [LONGEST_FILES[0], LONGEST_FILES[1], "test_data.py", "test_config.py"]
