"""scripts/peak_memory.py: the generated file, and a child's own peak memory."""
from __future__ import annotations

import pytest
from helpers import load_script

from microgpt_scalar.data import load_docs

peak_memory = load_script("peak_memory")


def test_generated_names_file_has_the_size_asked_and_names_only(tmp_path):
    size = peak_memory.write_names_file(tmp_path / "names.txt", 200_000, seed=1)
    docs = load_docs(tmp_path / "names.txt")
    assert 200_000 <= size < 300_000 and size == sum(len(doc) + 1 for doc in docs)
    assert set("".join(docs)) <= set("abcdefghijklmnopqrstuvwxyz") and all(2 <= len(doc) <= 12 for doc in docs)
    assert peak_memory.write_names_file(tmp_path / "again.txt", 200_000, seed=1) == size
    assert (tmp_path / "again.txt").read_bytes() == (tmp_path / "names.txt").read_bytes()


def test_peak_of_a_child_grows_with_its_data_and_a_failing_child_is_reported(tmp_path):
    tiny, big = tmp_path / "tiny.txt", tmp_path / "big.txt"
    tiny.write_text("emma\nava\n")
    peak_memory.write_names_file(big, 8_000_000)
    argv = ["scripts/train_scalar.py", "--steps", "1", "--samples", "0"]
    big_mib, _ = peak_memory.peak_rss(argv, big)
    tiny_mib, _ = peak_memory.peak_rss(argv, tiny)  # after the big one: its own peak, not the largest child's
    assert tiny_mib + 5 < big_mib
    with pytest.raises(RuntimeError, match="train_scalar.py failed: error: data file not found"):
        peak_memory.peak_rss(argv, tmp_path / "absent.txt")
