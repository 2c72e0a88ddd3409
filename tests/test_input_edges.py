"""Inputs at the edges, each ending in one line and a non-zero exit, never a traceback or a
hang: names no file can have, FIFOs, absurd sizes, checkpoints that cannot be trained from,
text that would break the terminal, a full disk; and data files read with any line ending,
as the original program reads them.

    pytest tests/test_input_edges.py
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys

import pytest
import torch
from helpers import load_script

from microgpt_scalar.checkpoint import checkpoint_of, load_checkpoint, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.train import start_run
from microgpt_torch.checkpoint import FORMAT as TORCH_FORMAT
from microgpt_torch.checkpoint import load_any_checkpoint
from microgpt_torch.checkpoint import save_checkpoint as save_torch_checkpoint

NAMES = ["anna", "bob", "cab", "dan", "ada", "bea", "carl", "dora"]


def run_main(name, capsys, *argv):
    capsys.readouterr()
    try:
        code = load_script(name).main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, "".join(line for line in err.splitlines(keepends=True) if not line.startswith("threads: "))


def assert_one_line(result, code, *words):
    got, _, err = result
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    assert got == code, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


def data_file(folder, text="\n".join(NAMES) + "\n"):
    path = folder / "names.txt"
    path.write_text(text)
    return path


def scalar_checkpoint(folder, edit=None, name="run.json"):
    _, tokenizer, model, optimizer, _ = start_run(NAMES, get_config(num_steps=3), seed=42)
    path = folder / name
    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step=1, seed=42))
    if edit:
        payload = json.loads(path.read_text())
        edit(payload)
        path.write_text(json.dumps(payload))
    return path


# --- names no file can have, and files no run can read ---

@pytest.mark.parametrize("name, flag", [("train_scalar", "--data"), ("train_torch", "--data"),
                                        ("train_scalar", "--save"), ("train_torch", "--save"),
                                        ("compare_step", "--json"), ("compare_step", "--data"),
                                        ("certify", "--golden"), ("sample", None), ("make_golden", "--out")])
def test_a_path_component_over_255_bytes_is_one_line(name, flag, tmp_path, capsys):
    long_path = tmp_path / ("n" * 256) / "file"
    argv = {"sample": [long_path], "certify": ["--engine", tmp_path / "e.py", flag, long_path]}.get(
        name, [flag, long_path])
    if name in ("train_scalar", "train_torch") and flag == "--save":
        argv += ["--data", data_file(tmp_path), "--steps", 1]
    result = run_main(name, capsys, *argv)
    assert_one_line(result, 2, "255 bytes")


def test_precision_table_refuses_a_fifo_guide_at_once(tmp_path, capsys):
    fifo = tmp_path / "guide.md"
    os.mkfifo(fifo)  # reading it the usual way waits for a writer forever
    assert_one_line(run_main("precision_table", capsys, "--write", fifo), 2, "FIFO")


@pytest.mark.parametrize("out, words", [("", "empty"), ("{folder}", "a directory"), ("/dev/full", "a device"),
                                        ("{link}", "is a link")])
def test_bench_refuses_its_output_before_running_anything(out, words, tmp_path, capsys, monkeypatch):
    from bench import cli

    ran = []
    monkeypatch.setattr(cli, "SECTIONS", [dataclasses.replace(section, run=lambda args: ran.append(1) or {})
                                          for section in cli.SECTIONS])
    (tmp_path / "link").symlink_to("/dev/full")
    out = out.format(folder=tmp_path, link=tmp_path / "link")
    capsys.readouterr()
    code = cli.main(["--only", "scalar", "--out", out])
    _, err = capsys.readouterr()
    assert (code, ran) == (2, []) and err.count("\n") == 1 and words in err, err
    assert os.path.islink(tmp_path / "link") and os.path.realpath(tmp_path / "link") == "/dev/full"


def test_certify_refuses_a_golden_trace_nested_100k_deep(tmp_path, capsys):
    deep = tmp_path / "golden.json"
    deep.write_text('{"format": "microgpt-golden", "steps": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_one_line(run_main("certify", capsys, "--engine", tmp_path / "e.py", "--golden", deep), 2,
                    "nested too deeply")


@pytest.mark.parametrize("name", ["compare_step", "certify"])
def test_a_timeout_past_a_week_is_refused(name, tmp_path, capsys):
    argv = ["--timeout", "1e12"] + (["--engine", tmp_path / "e.py"] if name == "certify" else [])
    assert_one_line(run_main(name, capsys, *argv), 2, "--timeout", "at most 604800 seconds")


# --- sizes the machine cannot hold ---

@pytest.mark.parametrize("name, argv, words", [
    ("train_scalar", ["--n-layer", "99999999999999999999"], ["needs at least", "of memory"]),
    ("train_torch", ["--n-layer", "99999999999999999999"], ["needs at least", "of memory"]),
    ("train_scalar", ["--n-embd", "1000000", "--n-head", "1"], ["needs at least", "of memory"]),
    ("train_torch", ["--n-embd", "1000000", "--n-head", "1"], ["needs at least", "of memory"]),
    ("compare_step", ["--n-embd", "1000000", "--n-head", "1"], ["needs at least", "of memory"]),
    ("certify", ["--n-layer", "99999999999999999999"], ["needs at least", "of memory"]),
    ("train_torch", ["--mode", "batched", "--batch-size", str(2**63)], ["--batch-size", "out of range"]),
    ("train_torch", ["--mode", "batched", "--batch-size", "9000000", "--block-size", "4096"],
     ["needs at least", "--batch-size"]),
])
def test_model_sizes_are_bounded_by_the_memory_the_run_would_take(name, argv, words, tmp_path, capsys):
    extra = ["--data", data_file(tmp_path), "--steps", "1"] if name.startswith("train") else []
    extra += ["--engine", tmp_path / "e.py"] if name == "certify" else []
    assert_one_line(run_main(name, capsys, *argv, *extra), 2, *words)


def test_a_size_that_fits_is_not_refused(tmp_path, capsys):
    """The bound is the machine's memory, not a fixed number: a model twice the default width runs."""
    code, _, err = run_main("train_scalar", capsys, "--data", data_file(tmp_path), "--steps", 1, "--n-embd", 32,
                            "--samples", 0)
    assert code == 0, err


# --- checkpoints ---

def test_a_checkpoint_past_its_own_num_steps_is_refused(tmp_path, capsys):
    def past(payload):
        payload["step"] = payload["config"]["num_steps"] + 1

    path = scalar_checkpoint(tmp_path, past)
    for name, argv in (("train_scalar", ["--resume", path]), ("train_torch", ["--resume", path]), ("sample", [path])):
        extra = ["--data", data_file(tmp_path)] if name != "sample" else []
        assert_one_line(run_main(name, capsys, *argv, *extra), 2, "step 4 is past the run's own num_steps 3")
    done = scalar_checkpoint(tmp_path, lambda p: p.update(step=3), "done.json")
    assert load_checkpoint(done).step == 3  # a finished run's checkpoint is not past its end


def test_a_lone_surrogate_in_a_checkpoint_is_refused(tmp_path, capsys):
    path = scalar_checkpoint(tmp_path)
    path.write_text(path.read_text().replace('"chars": ["a"', '"chars": ["\\ud800"'))
    assert_one_line(run_main("sample", capsys, path), 2, "not valid Unicode")
    assert_one_line(run_main("train_scalar", capsys, "--resume", path, "--data", data_file(tmp_path)), 2,
                    "not valid Unicode")


def test_a_meta_device_tensor_in_a_torch_checkpoint_is_refused(tmp_path, capsys):
    checkpoint = load_any_checkpoint(scalar_checkpoint(tmp_path))
    path = tmp_path / "run.pt"
    save_torch_checkpoint(path, checkpoint)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == TORCH_FORMAT
    payload["model"]["wte.weight"] = torch.empty(payload["model"]["wte.weight"].shape, dtype=torch.float64,
                                                 device="meta")
    torch.save(payload, path)
    assert_one_line(run_main("sample", capsys, path), 2, "wte.weight", "'meta' device")


# --- text that would break the terminal or the one line ---

def test_a_newline_or_escape_in_a_path_stays_on_one_line(tmp_path, capsys):
    for name in ("two\nlines.txt", "red\x1b[31m.txt"):
        result = run_main("train_scalar", capsys, "--data", tmp_path / name)
        assert_one_line(result, 2, "not found")
        assert "\x1b" not in result[2] and ("\\n" in result[2] or "\\x1b" in result[2])


def test_an_engines_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    engine = tmp_path / "loud.py"
    engine.write_text('class Value:\n    raise RuntimeError("\\x1b[2J\\x1b[32mAGREE\\x1b[0m")\n')
    code, out, err = run_main("compare_step", capsys, "--engine", engine)
    assert code != 0 and "\x1b" not in out + err and "Traceback" not in err, err
    assert err.count("\n") == 1 and "\\x1b" in err


# --- a full disk ---

@pytest.mark.parametrize("name", ["train_scalar", "train_torch"])
def test_a_full_disk_at_the_save_is_one_line_and_exit_2_in_both_trainers(name, tmp_path, capsys, monkeypatch):
    save = tmp_path / "run.json"
    real_write = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    result = run_main(name, capsys, "--data", data_file(tmp_path), "--steps", 2, "--samples", 0, "--save", save)
    monkeypatch.undo()
    assert_one_line(result, 2, f"cannot write --save {save}: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt"]  # nothing half-written left


def test_precision_table_write_is_all_or_nothing_under_a_file_size_limit(repo_root, tmp_path):
    """A file-size limit below the guide's size: the write fails in one line, the guide stays whole."""
    guide = tmp_path / "guide.md"
    guide.write_text("intro\n<!-- precision-table -->\nold table\n<!-- /precision-table -->\n" + "x" * 50_000 + "\n")
    before = guide.read_bytes()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    done = subprocess.run([sys.executable, str(repo_root / "scripts" / "precision_table.py"), "--write", str(guide)],
                          capture_output=True, text=True, timeout=600, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "File too large" in done.stderr, done.stderr
    assert guide.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["guide.md"]


# --- line endings ---

@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_data_files_read_with_any_line_ending_as_the_original_program_does(ending, tmp_path):
    """The oracle is the original program's own reading: open() in text mode (universal
    newlines), each line stripped, empty lines dropped."""
    path = tmp_path / "names.txt"
    path.write_bytes(ending.join(["anna", " bob ", "", "cab", "dora"]).encode() + ending.encode())
    with open(path) as file:
        original = [line.strip() for line in file.read().strip().split("\n") if line.strip()]
    assert load_docs(path) == original == ["anna", "bob", "cab", "dora"]


def test_a_cr_cut_from_its_lf_between_chunks_makes_no_document(tmp_path):
    from microgpt_scalar.data import Corpus

    path = tmp_path / "names.txt"
    path.write_bytes(b"anna\r\nbob\r\ncab\r\n")
    assert list(Corpus.from_file(path, chunk_bytes=5)) == ["anna", "bob", "cab"]  # chunks end inside "\r\n"
