"""Documents and the tokenizer against REFERENCE.md "Data and tokenizer", and every unusable
data file ending in a one-line DataError (library) or `error: ...` and exit code 2 (script).
Nothing here touches the network: downloads are replaced by fakes that fail or succeed.

    pytest tests/test_data.py
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from helpers import assert_one_line_error

from microgpt_scalar import data
from microgpt_scalar.checkpoint import checkpoint_of, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.data import NAMES_URL, DataError, Tokenizer, default_data_path, load_docs
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
    """REFERENCE: every line, stripped, empty lines dropped (Windows line ends included)."""
    path = write(tmp_path / "names.txt", "  emma \n\n\tolivia\r\n   \nava\n\n")
    assert load_docs(path) == ["emma", "olivia", "ava"]


def test_names_file_has_published_document_count_and_vocabulary(names_path):
    """REFERENCE: 32,033 names, 26 lowercase letters, vocab 27 with BOS = 26."""
    docs = load_docs(names_path)
    assert len(docs) == 32033
    tokenizer = Tokenizer.from_docs(docs)
    assert tokenizer.chars == list("abcdefghijklmnopqrstuvwxyz")
    assert (tokenizer.BOS, tokenizer.vocab_size) == (26, 27)


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
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unusable_data_file_raises_one_line_data_error(kind, tmp_path):
    make, words = BAD_FILES[kind]
    path = make(tmp_path)
    assert_one_line_error(DataError, lambda: load_docs(path), words)


@pytest.mark.parametrize("kind", BAD_FILES)
def test_script_reports_unusable_data_file_in_one_line_and_exits_2(kind, repo_root, tmp_path):
    make, words = BAD_FILES[kind]
    path = make(tmp_path)
    result = run_script(repo_root, ["--data", str(path), "--engine", "per-op", "--steps", "1"], cwd=tmp_path)
    assert_one_line_script_error(result, *words)


def test_script_reports_character_outside_checkpoint_vocabulary_and_exits_2(repo_root, tmp_path):
    """A checkpoint fixes the vocabulary; a data file with a character it never saw is refused."""
    docs = ["anna", "bob", "cab"]
    _, tokenizer, model, optimizer, _ = start_run(docs, get_config(num_steps=2), seed=42)
    save_checkpoint(tmp_path / "run.json", checkpoint_of(model, tokenizer.chars, optimizer, step=2, seed=42))
    new = write(tmp_path / "new.txt", "anna\nbob\nzed\n")
    result = run_script(repo_root, ["--data", str(new), "--load", str(tmp_path / "run.json"), "--engine", "per-op"],
                        cwd=tmp_path)
    assert_one_line_script_error(result, "'zed'", "outside the vocabulary", "'dez'")


# --- where the data comes from when --data is not given ---

def fail_if_called(*args, **kwargs):
    raise AssertionError("no download was expected")


def test_default_data_prefers_input_txt_in_the_working_directory(tmp_path, monkeypatch):
    cache = directory(tmp_path / "cache")
    write(cache / "names.txt", "cached\n")
    work = directory(tmp_path / "work")
    write(work / "input.txt", "local\n")
    monkeypatch.chdir(work)
    monkeypatch.setattr(urllib.request, "urlopen", fail_if_called)
    assert load_docs(default_data_path(cache)) == ["local"]


def test_default_data_uses_the_cached_names_file_without_downloading(tmp_path, monkeypatch):
    cache = directory(tmp_path / "cache")
    write(cache / "names.txt", "cached\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(urllib.request, "urlopen", fail_if_called)
    assert load_docs(default_data_path(cache)) == ["cached"]


class FakeResponse(io.BytesIO):
    """What urlopen returns: a readable context manager."""


def test_default_data_downloads_names_once_into_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return FakeResponse(b"emma\nolivia\n")

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    path = default_data_path()
    assert path == tmp_path / "xdg" / "microgpt-bridge" / "names.txt"
    assert requested == [NAMES_URL]
    assert load_docs(path) == ["emma", "olivia"]
    assert default_data_path() == path and requested == [NAMES_URL]  # the second call reads the cache
    assert sorted(p.name for p in path.parent.iterdir()) == ["names.txt"]


@pytest.mark.parametrize("failure", [
    urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
    TimeoutError("timed out"),
    ConnectionResetError(104, "Connection reset by peer"),
])
def test_default_data_offline_raises_one_line_data_error(failure, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def offline(url, timeout=None):
        raise failure

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as raised:
        default_data_path(cache)
    message = str(raised.value)
    assert "\n" not in message
    assert NAMES_URL in message and "--data" in message and "input.txt" in message
    assert list(cache.iterdir()) == []  # neither a names file nor a partial download is left


def test_download_failure_mid_read_leaves_no_partial_file(tmp_path, monkeypatch):
    class BrokenResponse(FakeResponse):
        def read(self, *args):
            raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: BrokenResponse())
    target = tmp_path / "cache" / "names.txt"
    with pytest.raises(DataError):
        data._download(NAMES_URL, target)
    assert list(target.parent.iterdir()) == []


def test_script_without_data_reads_input_txt_in_its_working_directory(repo_root, tmp_path):
    write(tmp_path / "input.txt", "anna\nbob\n\ncab\n")
    result = run_script(repo_root, ["--engine", "per-op", "--steps", "1", "--samples", "0"], cwd=tmp_path, offline=True,
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == ["num docs: 3", "vocab size: 6"]  # a b c n o and BOS


def test_script_offline_without_data_reports_one_line_and_exits_2(repo_root, tmp_path):
    result = run_script(repo_root, ["--engine", "per-op", "--steps", "1"], cwd=tmp_path, offline=True,
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert_one_line_script_error(result, "could not be downloaded", "--data", "Network is unreachable")
    assert not (tmp_path / "cache" / "microgpt-bridge" / "names.txt").exists()
