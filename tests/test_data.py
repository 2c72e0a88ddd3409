"""Documents and the tokenizer against docs/reference.md "Data and tokenizer", and every unusable
data file ending in a one-line DataError (library) or `error: ...` and exit code 2 (script).
Scripts run here with every download failing, as without a network.

    pytest tests/test_data.py
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import reference
from helpers import assert_one_line_error

from microgpt_scalar.checkpoint import checkpoint_of, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.data import DataError, Tokenizer, default_data_path, load_docs
from microgpt_scalar.train import start_run

OFFLINE = (  # runs the script with every download failing as it does without a network
    "import runpy, sys, urllib.error, urllib.request\n"
    "def offline(*args, **kwargs):\n"
    "    raise urllib.error.URLError('[Errno 101] Network is unreachable')\n"
    "urllib.request.urlopen = offline\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_script(repo_root, args, cwd, offline=False, env=None):
    script = str(repo_root / "scripts" / "train_scalar.py")
    command = [sys.executable, "-c", OFFLINE, script] if offline else [sys.executable, script]
    return subprocess.run(command + list(args), cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def assert_one_line_script_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def write(path, content):
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def directory(path):
    path.mkdir()
    return path


# --- reading documents ---

def test_load_docs_strips_lines_and_drops_empty_ones(tmp_path):
    """docs/reference.md: every line, stripped, empty lines dropped (Windows line ends included)."""
    path = write(tmp_path / "names.txt", "  emma \n\n\tolivia\r\n   \nava\n\n")
    assert load_docs(path) == ["emma", "olivia", "ava"]


def test_names_file_has_published_document_count_and_vocabulary(names_path):
    """docs/reference.md: 32,033 names, 26 lowercase letters, vocab 27 with BOS = 26."""
    docs = load_docs(names_path)
    assert len(docs) == 32033
    tokenizer = Tokenizer.from_docs(docs)
    assert tokenizer.chars == list("abcdefghijklmnopqrstuvwxyz")
    assert (tokenizer.BOS, tokenizer.vocab_size) == (26, 27)


def test_byte_order_mark_is_not_a_character_of_the_first_document(tmp_path):
    with_bom = write(tmp_path / "bom.txt", "\ufeffemma\nava\n".encode("utf-8"))
    assert load_docs(with_bom) == ["emma", "ava"]
    assert Tokenizer.from_docs(load_docs(with_bom)).chars == list("aemv")


def test_tokenizer_is_the_sorted_set_of_characters_with_bos_last():
    tokenizer = Tokenizer.from_docs(["bob", "zoë", "al"])
    assert tokenizer.chars == sorted(set("bobzoëal"))
    bos = len(tokenizer.chars)
    assert tokenizer.encode("zoë") == [bos] + [tokenizer.chars.index(c) for c in "zoë"] + [bos]
    assert tokenizer.decode(tokenizer.encode("zoë")) == "zoë"
    assert tokenizer.encode("") == [bos, bos]


def test_character_outside_vocabulary_raises_one_line_data_error():
    with pytest.raises(DataError) as raised:
        Tokenizer(list("abc")).encode("abzq")
    message = str(raised.value)
    assert "\n" not in message and "'abzq'" in message and "'qz'" in message


def test_repeated_vocabulary_character_raises_data_error():
    with pytest.raises(DataError, match="repeats"):
        Tokenizer(["a", "b", "a"])


BAD_FILES = {  # name -> (make the path in tmp_path, words the message must contain)
    "missing": (lambda tmp: tmp / "absent.txt", ["not found", "absent.txt"]),
    "empty": (lambda tmp: write(tmp / "empty.txt", ""), ["no documents", "empty.txt"]),
    "whitespace_only": (lambda tmp: write(tmp / "blank.txt", "  \n\t\n \r\n\n"), ["no documents", "blank.txt"]),
    "not_utf8": (lambda tmp: write(tmp / "latin1.txt", "emma\nzoë\n".encode("latin-1")), ["not UTF-8", "latin1.txt", "byte 7"]),
    "directory": (lambda tmp: directory(tmp / "folder"), ["not a file", "folder"]),
    "nul_byte": (lambda tmp: write(tmp / "nul.txt", b"emma\nol\0ivia\n"), ["NUL byte", "byte 7", "nul.txt"]),
    "unreadable": (lambda tmp: unreadable(write(tmp / "secret.txt", "emma\n")), ["cannot read", "secret.txt"]),
}


def unreadable(path):
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root, who reads every file (test_unreadable_data_file_... covers it)")
    return path


def test_unreadable_data_file_raises_one_line_data_error_even_as_root(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.txt", "emma\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)  # root reads any file whatever its mode
    assert_one_line_error(DataError, lambda: load_docs(path), ["cannot read", "secret.txt", "Permission denied"])


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unusable_data_file_raises_one_line_data_error(kind, tmp_path):
    make, words = BAD_FILES[kind]
    path = make(tmp_path)
    assert_one_line_error(DataError, lambda: load_docs(path), words)


@pytest.mark.parametrize("kind", BAD_FILES)
def test_script_reports_unusable_data_file_in_one_line_and_exits_2(kind, repo_root, tmp_path):
    make, words = BAD_FILES[kind]
    path = make(tmp_path)
    result = run_script(repo_root, ["--data", str(path), "--value-class", "per-op", "--steps", "1"], cwd=tmp_path)
    assert_one_line_script_error(result, *words)


def test_script_reports_character_outside_checkpoint_vocabulary_and_exits_2(repo_root, tmp_path):
    """A checkpoint fixes the vocabulary; a data file with a character it never saw is refused."""
    docs = ["anna", "bob", "cab"]
    _, tokenizer, model, optimizer, _ = start_run(docs, get_config(num_steps=2), seed=42)
    save_checkpoint(tmp_path / "run.json", checkpoint_of(model, tokenizer.chars, optimizer, step=2, seed=42))
    new = write(tmp_path / "new.txt", "anna\nbob\nzed\n")
    result = run_script(repo_root, ["--data", str(new), "--resume", str(tmp_path / "run.json"), "--value-class", "per-op"],
                        cwd=tmp_path)
    assert_one_line_script_error(result, "'zed'", "outside the vocabulary", "'dez'")


# --- where the data comes from when --data is not given ---

def test_shipped_names_file_is_the_published_one(names_path):
    """docs/reference.md: 32,033 names; the file is byte for byte the canonical one (its sha256)."""
    raw = names_path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == reference.names_sha256()
    assert raw.count(b"\n") + (not raw.endswith(b"\n")) == 32033


def test_default_data_is_the_file_inside_the_package():
    import microgpt_scalar

    assert default_data_path() == Path(microgpt_scalar.__file__).resolve().parent / "names.txt"


def test_script_without_data_reads_the_shipped_names_not_input_txt(repo_root, tmp_path):
    """An input.txt in the working directory is not picked up: only --data names a file."""
    write(tmp_path / "input.txt", "anna\nbob\n\ncab\n")
    result = run_script(repo_root, ["--value-class", "per-op", "--steps", "1", "--samples", "0"], cwd=tmp_path,
                        offline=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["num docs: 32033", "vocab size: 27"]


def test_no_download_code_remains(repo_root):
    sources = [p for folder in ("microgpt_scalar", "microgpt_torch", "compare", "scripts")
               for p in (repo_root / folder).glob("*.py")]
    assert sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "urllib" not in text and "urlopen" not in text and "http.client" not in text, path
