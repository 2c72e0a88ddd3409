"""Every flag of every command, given bad values: one line on stderr and a non-zero exit,
within seconds, never a traceback; a value that is good after all runs to its end.

The flags are read from the commands' own argparse parsers (each script's main() is called
with argparse's parse_args intercepted), so a new command or flag is fuzzed without a change
here. Every value-taking flag gets each value of VALUES: empty, negative, zero, huge, NaN,
infinite, non-ASCII, over-long, with a newline or a terminal escape, and special files (a
FIFO with no writer, a directory, devices, a link to a device, a path component over 255
bytes). The other flags keep BASE's small settings, so that a value that is accepted makes
a run of a few steps. main() runs in this process (torch loads once), with an alarm that
fails the case if it takes more than CASE_SECONDS (on a busy machine, that many seconds per
share of a core: see case_limit).

    pytest tests/test_fuzz_flags.py
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest
import torch  # noqa: F401  (loaded here, once: an alarm must not cut a case's first import of it in two)
from helpers import load_script

import compare.check  # noqa: F401  (the modules compare loads when first used, for the same reason)
import compare.judge.probe_check  # noqa: F401

from microgpt_scalar.cli import Deprecated
from microgpt_scalar.checkpoint import checkpoint_of, save_checkpoint
from microgpt_scalar.config import get_config
from microgpt_scalar.train import start_run

REPO = Path(__file__).resolve().parents[1]
CASE_SECONDS = 10
SKIPPED_SCRIPTS = set()  # every script in scripts/ is fuzzed
NAMES = "anna\nbob\ncab\ndan\nada\nbea\ncarl\ndora\n"

# name -> value; "{folder}" is the case's temporary folder, where the special files are made
VALUES = {
    "empty": "",
    "negative": "-1",
    "zero": "0",
    "huge": "99999999999999999999",
    "int64_overflow": str(2**63),
    "float_max": "1e308",
    "denormal": "1e-320",
    "nan": "nan",
    "inf": "inf",
    "minus_inf": "-inf",
    "non_ascii": "ñamé_名前",
    "over_long": "x" * 5000,
    "long_component": "{folder}/" + "y" * 300,
    "newline": "two\nlines",
    "ansi_escape": "\x1b[31mred\x1b[0m",
    "not_utf8": "bad\udcffbyte",  # what Python makes of argv bytes that are not UTF-8
    "fifo": "{folder}/fifo",
    "directory": "{folder}",
    "dev_null": "/dev/null",
    "dev_zero": "/dev/zero",
    "dev_full": "/dev/full",
    "link_to_device": "{folder}/link",
    "root": "/",
}


def tiny_data(folder: Path) -> Path:
    path = folder / "names.txt"
    path.write_text(NAMES)
    return path


def checkpoint(folder: Path) -> Path:
    _, tokenizer, model, optimizer, _ = start_run(NAMES.split(), get_config(num_steps=3), seed=42)
    path = folder / "run.json"
    save_checkpoint(path, checkpoint_of(model, tokenizer.chars, optimizer, step=1, seed=42))
    return path


# The settings each command starts from: small, so that an accepted value runs for moments
# (a command not named here starts from no flags at all).
BASE = {
    "train_scalar": lambda d: ["--data", tiny_data(d), "--steps", "2", "--n-embd", "8", "--n-head", "2",
                               "--samples", "0"],
    "train_torch": lambda d: ["--data", tiny_data(d), "--steps", "2", "--n-embd", "8", "--n-head", "2",
                              "--samples", "0"],
    "compare_step": lambda d: ["--doc", "anna", "--n-embd", "8", "--n-head", "2"],
    "certify": lambda d: ["--engine", d / "absent_engine.py", "--steps", "1", "--data", tiny_data(d)],  # ends by
    # the engine or the data, after every other check
    "sample": lambda d: [checkpoint(d), "--samples", "2"],
    "make_golden": lambda d: ["--data", tiny_data(d), "--steps", "1", "--samples", "0", "--out", d / "golden.json"],
    "precision_table": lambda d: [],
    "bridge_docs": lambda d: ["--guide", d / "absent_guide.md"],
    "bench": lambda d: ["--only", "scalar", "--out", d / "bench.json"],
    "exercise": lambda d: ["mlp"],
}


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def parser_of(module) -> argparse.ArgumentParser:
    """The parser `module.main` builds, caught as main() asks it to parse."""
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture
    try:
        module.main([])
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{module.__name__}.main() parses no arguments with argparse")


def value_flags(parser) -> list:
    """(flag or None for a positional, dest, action) of every argument that takes a value."""
    found = []
    for action in parser._actions:
        if action.nargs == 0 or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if isinstance(action, Deprecated):  # an old spelling: its values are its new flag's, fuzzed there
            continue
        found.append((action.option_strings[0] if action.option_strings else None, action.dest, action))
    return found


NO_NUMBER = ("empty", "nan", "inf", "minus_inf")  # no numeric flag may accept these
NO_WHOLE_NUMBER = NO_NUMBER + ("huge",)  # 10**20 of anything counted is absurd (1e20 as a rate is finite)


def is_numeric(action) -> bool:
    return action.type in (int, float) or getattr(action.type, "__name__", "") in ("whole number", "number")


def must_refuse(action, name: str) -> bool:
    whole = action.type is int or getattr(action.type, "__name__", "") == "whole number"
    return is_numeric(action) and name in (NO_WHOLE_NUMBER if whole else NO_NUMBER)


def command_names() -> list:
    return sorted(p.stem for p in (REPO / "scripts").glob("*.py") if p.stem not in SKIPPED_SCRIPTS)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def make_special_files(folder: Path) -> None:
    os.mkfifo(folder / "fifo")
    (folder / "link").symlink_to("/dev/full")


def with_value(base: list, parser, flag, dest, value) -> list:
    """`base` with the argument `flag` (or the positional `dest`) set to `value` instead."""
    argv = [str(a) for a in base]
    if flag is None:
        positional = [a for a in parser._actions if not a.option_strings]
        index = [a.dest for a in positional].index(dest)
        if index < len(argv) and not argv[index].startswith("-"):
            argv[index] = value
        else:
            argv.insert(0, value)
        return argv
    aliases = next(a.option_strings for a in parser._actions if a.dest == dest and flag in a.option_strings)
    out, skip = [], 0
    for i, arg in enumerate(argv):
        if skip:
            skip -= 1
            continue
        if arg in aliases:
            action = next(a for a in parser._actions if arg in a.option_strings)
            skip = 0 if action.nargs == 0 else 1
            continue
        out.append(arg)
    return out + [f"{flag}={value}"]  # "=": a value such as "-1" stays the flag's value


def case_limit() -> float:
    """CASE_SECONDS on a machine with a core to spare; stretched by how many processes wait for
    each core (the load average), so that a shared, busy machine is not taken for a hang."""
    return CASE_SECONDS * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def run_case(module, argv, capsys):
    capsys.readouterr()
    previous = signal.signal(signal.SIGALRM, _alarm)
    limit = case_limit()
    signal.setitimer(signal.ITIMER_REAL, limit)
    start = time.perf_counter()
    try:
        code = module.main(argv)
    except SystemExit as exit:
        code = exit.code
    except Hang:
        code = "hang"
    except BaseException as error:  # what would have been a traceback
        code = f"raised {type(error).__name__}: {str(error)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    seconds = time.perf_counter() - start
    out, err = capsys.readouterr()
    return code, out, err, seconds if code != "hang" else max(seconds, limit)


def problem(code, err: str, seconds: float, must_refuse: bool = False) -> str | None:
    """What is wrong with a case's ending, or None (`must_refuse`: exit 0 is wrong too)."""
    if code == "hang":
        return f"no end within {seconds:.0f} s"
    if isinstance(code, str):
        return code
    if "Traceback" in err:
        return "a traceback: " + err[-300:]
    lines = [line for line in err.splitlines() if not line.startswith("threads: ")]
    if code == 0:
        return "accepted: a number flag without a range (type=int or float?)" if must_refuse else None
    if len(lines) != 1 or not lines[0].startswith("error: "):
        return f"exit {code} with {len(lines)} line(s) on stderr: {err[:300]!r}"
    if seconds > case_limit():
        return f"took {seconds:.1f} s"
    return None


@pytest.mark.parametrize("command", command_names())
def test_every_flag_with_every_bad_value_ends_in_one_line(command, tmp_path, capsys, monkeypatch):
    module = load_script(command)
    if command == "bench":  # the benchmark's sections would take minutes: the flags and files are what is fuzzed
        from bench import cli as bench_cli

        monkeypatch.setattr(bench_cli, "SECTIONS", [
            dataclasses.replace(section, run=lambda args: {}, table=lambda figures: "", targets_missed=lambda f: [])
            for section in bench_cli.SECTIONS])
    parser = parser_of(module)
    flags = value_flags(parser)
    assert flags, f"{command} has no flag that takes a value"
    monkeypatch.chdir(tmp_path)  # an accepted relative path is written here
    failures, cases = [], 0
    for flag, dest, action in flags:
        for name, template in VALUES.items():
            folder = tmp_path / f"{dest}-{name}"
            folder.mkdir()
            make_special_files(folder)
            value = template.replace("{folder}", str(folder))
            argv = with_value(BASE.get(command, lambda d: [])(folder), parser, flag, dest, value)
            code, out, err, seconds = run_case(module, argv, capsys)
            cases += 1
            wrong = problem(code, err, seconds, must_refuse=must_refuse(action, name))
            if wrong:
                failures.append(f"{command} {flag or dest} <{name}>: {wrong}")
    assert not failures, f"{len(failures)} of {cases} cases:\n" + "\n".join(failures[:40])


def test_the_fuzzer_catches_a_traceback_and_a_second_line(capsys):
    """The checks above fail on what they look for."""
    assert problem(1, "Traceback (most recent call last):\n  ...\nValueError: x\n", 0.1)
    assert problem(2, "error: one\nerror: two\n", 0.1)
    assert problem(2, "usage: x\nerror: y\n", 0.1)
    assert problem("hang", "", 10)
    assert problem(2, "error: one line\n", 0.1) is None
    assert problem(0, "", 0.1) is None
    assert problem(0, "", 0.1, must_refuse=True)
    parser = argparse.ArgumentParser()
    bare = parser.add_argument("--count", type=int)
    assert is_numeric(bare)  # and so must refuse NO_NUMBER's values, which type=int accepts in part


def test_every_base_run_succeeds(tmp_path, capsys, monkeypatch):
    """BASE's settings are good ones (for the commands that can run from them here), so the
    cases above fail because of their one value."""
    monkeypatch.chdir(tmp_path)
    for command in ("train_scalar", "train_torch", "sample", "make_golden"):
        code, out, err, _ = run_case(load_script(command), [str(a) for a in BASE[command](tmp_path)], capsys)
        assert code == 0, (command, err)
