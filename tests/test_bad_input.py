"""Every script on every bad input it can be given: exit code 2, exactly one line on stderr
that starts with `error:` and names the problem, no traceback, nothing on stdout.

Each case calls the script's main() with the arguments a user would type.

    pytest tests/test_bad_input.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import load_script

from microgpt_scalar.checkpoint import checkpoint_of, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.train import start_run
from microgpt_torch.checkpoint import FORMAT as TORCH_FORMAT
from microgpt_torch.checkpoint import load_any_checkpoint
from microgpt_torch.checkpoint import save_checkpoint as save_torch_checkpoint

DOCS = ["anna", "bob", "cab", "dan", "ada"]
SCRIPT_NAMES = ("train_scalar", "train_torch", "sample", "compare_step", "certify", "make_golden", "precision_table",
                "bridge_docs", "exercise")
SCRIPTS = {name: load_script(name) for name in SCRIPT_NAMES}


def scalar_checkpoint(folder, name="run.json", edit=None):
    """A one-layer checkpoint with Adam state, after 1 step, optionally edited as JSON."""
    _, tokenizer, model, optimizer, _ = start_run(DOCS, get_config(num_steps=3), seed=42)
    path = folder / name
    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step=1, seed=42))
    if edit:
        payload = json.loads(path.read_text())
        edit(payload)
        path.write_text(json.dumps(payload))
    return path


def negative_v(payload):
    payload["adam"]["v"]["wte"][0][0] = -1e-3


def deeply_nested(folder):
    path = folder / "deep.json"
    path.write_text('{"format": "microgpt-checkpoint", "version": 1, "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return path


def torch_checkpoint(folder, edit):
    """A torch checkpoint with one tensor replaced by `edit(tensor)`."""
    checkpoint = load_any_checkpoint(scalar_checkpoint(folder, "source.json"))
    path = folder / "run.pt"
    save_torch_checkpoint(path, checkpoint)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == TORCH_FORMAT
    payload["model"]["wte.weight"] = edit(payload["model"]["wte.weight"])
    torch.save(payload, path)
    return path


def negative_torch_v(folder):
    checkpoint = load_any_checkpoint(scalar_checkpoint(folder, "source.json"))
    checkpoint.adam["v"]["wte.weight"][0, 0] = -1.0
    path = folder / "run.pt"
    torch.save({"format": TORCH_FORMAT, "version": 1, "config": checkpoint.config.to_dict(),
                "chars": checkpoint.chars, "model": checkpoint.model, "adam": checkpoint.adam,
                "step": checkpoint.step, "seed": checkpoint.seed}, path)
    return path


def data_file(folder, content: bytes, name="data.txt"):
    path = folder / name
    path.write_bytes(content)
    return path


FILES = {  # name -> make(folder): the bad files the cases below refer to as {name}
    "missing": lambda d: d / "absent.txt",
    "empty": lambda d: data_file(d, b""),
    "nul": lambda d: data_file(d, b"anna\n\0bob\n"),
    "latin1": lambda d: data_file(d, "zoë\n".encode("latin-1")),
    "folder": lambda d: (d / "folder").mkdir() or d / "folder",
    "junk_checkpoint": lambda d: data_file(d, b"{not json", "junk.json"),
    "negative_v": lambda d: scalar_checkpoint(d, edit=negative_v),
    "deep": deeply_nested,
    "sparse": lambda d: torch_checkpoint(d, lambda t: t.to_sparse()),
    "negative_torch_v": negative_torch_v,
    "int_tensor": lambda d: torch_checkpoint(d, lambda t: t.long()),
    "good_checkpoint": lambda d: scalar_checkpoint(d),
    "devnull": lambda d: "/dev/null",
}

CASES = [  # (script, arguments, words the one line must contain)
    # usage errors: argparse's own, in every script
    ("train_scalar", ["--bogus"], ["unrecognized arguments", "--bogus"]),
    ("train_torch", ["--bogus"], ["unrecognized arguments"]),
    ("sample", [], ["required", "checkpoint"]),
    ("compare_step", ["--bogus"], ["unrecognized arguments"]),
    ("certify", [], ["required", "--engine"]),
    ("make_golden", ["--steps"], ["--steps", "expected one argument"]),
    ("precision_table", ["--bogus"], ["unrecognized arguments"]),
    ("bridge_docs", ["--bogus"], ["unrecognized arguments"]),
    ("exercise", ["--bogus"], ["unrecognized arguments"]),
    ("exercise", ["attn"], ["invalid choice", "attn"]),
    ("exercise", ["mlp", "--file", "no/such/file.py"], ["--file", "no/such/file.py"]),
    ("train_scalar", ["--value-class", "turbo"], ["--value-class", "invalid choice"]),
    ("train_torch", ["--mode", "fast"], ["--mode", "invalid choice"]),
    ("sample", ["{good_checkpoint}", "--from", "jax"], ["--from", "invalid choice"]),
    # numbers out of their ranges
    ("train_scalar", ["--temperature", "nan"], ["--temperature", "not a finite number"]),
    ("train_scalar", ["--temperature", "0"], ["--temperature", "from 0.001 to 1000"]),
    ("train_torch", ["--temperature", "inf"], ["--temperature", "not a finite number"]),
    ("sample", ["{good_checkpoint}", "--temperature", "-1"], ["--temperature", "from 0.001 to 1000"]),
    ("train_torch", ["--threads", "100000"], ["--threads", "100000", "out of range"]),
    ("train_torch", ["--threads", "0"], ["--threads", "out of range"]),
    ("train_scalar", ["--seed", "1e35"], ["--seed", "not a whole number"]),
    ("train_torch", ["--seed", str(2**64)], ["--seed", "out of range"]),
    ("compare_step", ["--seed", "-1"], ["--seed", "out of range"]),
    ("sample", ["{good_checkpoint}", "--seed", "99999999999999999999999"], ["--seed", "out of range"]),
    ("compare_step", ["--fd", "100000"], ["--fd", "100000", "4,064 parameters"]),
    ("compare_step", ["--steps", "0"], ["--steps", "out of range"]),
    ("train_scalar", ["--steps", "0"], ["--steps", "out of range"]),
    ("train_scalar", ["--stop-after", "-3"], ["--stop-after", "out of range"]),
    ("train_scalar", ["--samples", "-1"], ["--samples", "out of range"]),
    ("train_torch", ["--mode", "batched", "--batch-size", "0"], ["--batch-size", "out of range"]),
    ("train_torch", ["--mode", "batched", "--val-fraction", "1.5"], ["--val-fraction", "out of range"]),
    ("train_torch", ["--learning-rate", "nan"], ["--learning-rate", "not a finite number"]),
    ("train_scalar", ["--n-embd", "15"], ["n_embd", "n_head"]),
    ("certify", ["--engine", "x.py", "--steps", "0"], ["--steps", "out of range"]),
    ("make_golden", ["--seed", "x"], ["--seed", "not a whole number"]),
    # data files
    ("train_scalar", ["--data", "{missing}"], ["not found", "absent.txt"]),
    ("train_torch", ["--data", "{empty}"], ["no documents"]),
    ("train_scalar", ["--data", "{nul}"], ["NUL byte", "data.txt"]),
    ("train_torch", ["--data", "{nul}"], ["NUL byte"]),
    ("compare_step", ["--data", "{nul}"], ["NUL byte"]),
    ("certify", ["--engine", "microgpt_scalar/engine.py", "--data", "{nul}"], ["NUL byte"]),
    ("make_golden", ["--data", "{latin1}", "--out", "{folder}/g.json"], ["not UTF-8"]),
    ("train_scalar", ["--data", "{folder}"], ["not a file"]),
    # checkpoints
    ("train_scalar", ["--resume", "{junk_checkpoint}"], ["not valid JSON"]),
    ("train_scalar", ["--resume", "{negative_v}"], ["adam v", "negative"]),
    ("train_torch", ["--resume", "{negative_v}"], ["adam v", "negative"]),
    ("sample", ["{negative_v}"], ["adam v", "negative"]),
    ("train_scalar", ["--resume", "{deep}"], ["nested too deeply"]),
    ("sample", ["{deep}"], ["nested too deeply"]),
    ("compare_step", ["--weights", "{deep}"], ["nested too deeply"]),
    ("sample", ["{sparse}"], ["wte.weight", "not a dense floating-point tensor"]),
    ("train_torch", ["--resume", "{sparse}"], ["not a dense floating-point tensor"]),
    ("sample", ["{negative_torch_v}"], ["adam v", "negative"]),
    ("sample", ["{int_tensor}"], ["not a dense floating-point tensor"]),
    ("sample", ["{missing}"], ["not found"]),
    # outputs
    ("train_scalar", ["--save", "{folder}"], ["--save", "not a regular file"]),
    ("train_torch", ["--save", "{devnull}"], ["--save", "not a regular file"]),
    ("compare_step", ["--json", "{folder}"], ["--json", "not a regular file"]),
    ("compare_step", ["--plot", "{folder}/plot.xyz"], ["--plot", "'xyz'"]),
    ("make_golden", ["--out", "{folder}"], ["--out", "not a regular file"]),
]


def case_id(case) -> str:
    script, args, _ = case
    return f"{script} {' '.join(args)}"[:60]


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_gets_one_line_and_exit_2(case, tmp_path, capsys):
    """The script's main() in this process (torch is imported once for the whole table): an
    exception escaping it would fail the test with its traceback, as it would end the script."""
    script, args, words = case
    files = {name: make(tmp_path) for name, make in FILES.items() if any(f"{{{name}}}" in a for a in args)}
    capsys.readouterr()
    try:
        code = SCRIPTS[script].main([arg.format(**files) for arg in args])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    assert (code, out) == (2, "")


def test_a_script_run_as_a_program_reports_in_one_line_too(repo_root, tmp_path):
    """The same, as a user runs it: one line, exit 2, for a bad data file and a usage error."""
    nul = FILES["nul"](tmp_path)
    for argv in (["--data", str(nul)], ["--steps", "zero"]):
        result = subprocess.run([sys.executable, str(repo_root / "scripts" / "train_scalar.py"), *argv],
                                capture_output=True, text=True, timeout=300, cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(repo_root)})
        assert (result.returncode, result.stdout) == (2, "")
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr


def test_every_script_is_in_the_table(repo_root):
    """A new script joins the table: its usage errors are one line too."""
    scripts = {path.stem for path in (repo_root / "scripts").glob("*.py")} - {"bench"}
    assert scripts == set(SCRIPT_NAMES) == {script for script, _, _ in CASES}
