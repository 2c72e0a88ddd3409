"""What the command-line scripts share: a parser whose errors are one line, flag types that check
their range, the config flags, checks of the files a run will write, the run's settings a
checkpoint records, and Ctrl-C that lets a step finish.

Standard library only, so the scalar scripts never import torch.

    parser = OneLineParser(description="...")
    parser.add_argument("--seed", type=seed_number, default=42)
    add_data_flag(parser)  # args.data: the file to read
    add_config_flags(parser)
    args = parser.parse_args()
    check_output_path(args.save, "--save", inputs=[args.data], overwrite=args.overwrite)
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

from . import __version__
from .config import field_types
from .data import default_data_path

FIXED_BY_RUN = ("preset", "vocab_size")  # chosen by --preset and by the documents, not by a flag
MAX_SEED = 2**63 - 1  # seeds fit a signed 64-bit integer, which random.Random and torch.Generator both take
INFERENCE_HEADERS = {  # the line each revision of the original program prints before its samples
    "microgpt": "--- inference ---",
    "microgpt-v2": "--- inference (new, hallucinated names) ---",
}


class UsageError(ValueError):
    """A flag no run can honour, or a file a run must not write; the message is one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line and exit code 2, --version, and the
    description printed as written (a command's docstring: its examples and exit codes)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s (microgpt-bridge) {__version__}")

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def add_quiet_flag(parser, what: str) -> None:
    """-q/--quiet, the same in every command; `what` says what is left."""
    parser.add_argument("-q", "--quiet", action="store_true", help=f"no progress bars or notes on stderr; {what}")


class Deprecated(argparse.Action):
    """An old spelling of a flag: works for one more version, with a one-line note on stderr.

        parser.add_argument("--load", action=Deprecated, new="--resume", dest="resume")
    """

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        kwargs.setdefault("help", f"old spelling of {new} (kept for one version)")
        kwargs.setdefault("default", argparse.SUPPRESS)  # the new flag's default stands
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and goes in the next version; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def device_name(text: str) -> str:
    """--device: auto, cpu, cuda, cuda:N (N a whole number) or mps; whether the machine has
    it is checked where torch is loaded (microgpt_torch.device.pick_device)."""
    kind, colon, index = text.partition(":")
    if text in ("auto", "cpu", "cuda", "mps") or (kind == "cuda" and colon and index.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r}; choose {DEVICES}")


device_name.__name__ = "device"


# --- flag types: argparse calls them on the text and reports their ArgumentTypeError in one line ---

def int_from(low: int, high: int | None = None):
    """A flag type for whole numbers in [low, high] (no upper bound if high is None)."""
    bound = f"from {low} to {high}" if high is not None else f"{low} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (expected {bound})") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: expected a whole number {bound}")
        return value

    parse.__name__ = "whole number"  # what argparse names in its own messages
    return parse


positive_int = int_from(1)
non_negative_int = int_from(0)
seed_number = int_from(0, MAX_SEED)


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def positive_real(text: str) -> float:
    """A finite number > 0 (e.g. --temperature)."""
    value = _real(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number > 0")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1) (e.g. --val-fraction)."""
    value = _real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number from 0 up to (not including) 1")
    return value


positive_real.__name__ = fraction.__name__ = _real.__name__ = "number"


# --- the config's flags ---

def add_config_flags(parser) -> None:
    """Give an argparse parser one flag per field a run may override: --n-layer, --init-std,
    ..., and --steps (or --num-steps) for num_steps. Unset flags parse as None; whole-number
    fields must be >= 1 and numbers finite (the config checks the rest)."""
    for field, kind in field_types().items():
        if field in FIXED_BY_RUN:
            continue
        flags = [f"--{field.replace('_', '-')}"] + (["--steps"] if field == "num_steps" else [])
        flag_type = positive_int if kind is int else (_real if kind is float else kind)
        parser.add_argument(*flags, dest=field, type=flag_type, help=f"override the preset's {field}")


def config_overrides(args) -> dict:
    """field -> value of every config flag `add_config_flags` added (None where unset)."""
    return {field: getattr(args, field) for field in field_types() if field not in FIXED_BY_RUN}


# The model-size flags of the checker and certify (their own --steps counts checked steps,
# so they take these four, not every config flag): field -> what it sets.
SIZE_FLAGS = {"n_layer": "layers", "n_embd": "embedding width", "n_head": "attention heads",
              "block_size": "context length"}


def add_size_flags(parser, note: str) -> None:
    """--n-layer, --n-embd, --n-head, --block-size (None when unset); `note` ends each help."""
    for field, what in SIZE_FLAGS.items():
        parser.add_argument(f"--{field.replace('_', '-')}", dest=field, type=positive_int,
                            help=f"the model's {what} (default: the preset's); {note}")


def size_overrides(args) -> dict:
    """field -> value of the size flags that were given."""
    return {field: getattr(args, field) for field in SIZE_FLAGS if getattr(args, field) is not None}


def inference_header(preset: str) -> str:
    return INFERENCE_HEADERS.get(preset, INFERENCE_HEADERS["microgpt-v2"])


# --- files ---

def add_data_flag(parser: argparse.ArgumentParser) -> None:
    """--data FILE. `args.data` is the file to read, resolved once here: the file the flag
    names, else the names file shipped with the package."""
    parser.add_argument("--data", type=data_path, default="", metavar="FILE",  # a str default goes through type
                        help="one document per line (default: the names file shipped with the package)")


def data_path(flag_value) -> Path:
    """The file --data names, else the names file shipped with the package."""
    return Path(flag_value) if flag_value else default_data_path()


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    return digest.hexdigest()


def check_output_path(path, flag: str, inputs=(), may_replace=(), overwrite: bool = False) -> None:
    """Raise UsageError unless the run can write `path` without losing anything, before it starts.

    Refused: a link, a directory or any other non-regular file; one of the run's `inputs` (the
    data file); an existing file unless it is one of `may_replace` (the checkpoint the run goes
    on from) or `overwrite` is given. The directory must exist or be creatable, and writable:
    a file is created in it and removed again.
    """
    if not path:
        return
    path = Path(path)
    if path.is_symlink():
        raise UsageError(f"{flag} {path}: is a link; name the file itself")
    if path.exists():
        if not path.is_file():
            raise UsageError(f"{flag} {path}: is not a regular file (a directory or a device); not replacing it")
        for other in inputs:
            if other and Path(other).exists() and os.path.samefile(path, other):
                raise UsageError(f"{flag} {path}: is an input of this run; not overwriting it")
        replaceable = any(other and Path(other).exists() and os.path.samefile(path, other) for other in may_replace)
        if not (replaceable or overwrite):
            raise UsageError(f"{flag} {path}: exists and is not the file this run continues from; "
                             f"give --overwrite to replace it")
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir():
        raise UsageError(f"{flag} {path}: {directory} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot write in {directory} ({error.strerror})") from None


# --- the run's settings, recorded in its checkpoints ---

def check_same_run(recorded, current: dict, path) -> None:
    """Raise UsageError naming the first setting of `current` that the checkpoint's `recorded`
    run has with another value (settings it did not record, as in older checkpoints, pass)."""
    for name, value in current.items():
        if recorded and name in recorded and recorded[name] != value:
            if name == "data_sha256":
                raise UsageError(f"checkpoint {path} was trained on another data file (sha256 {recorded[name][:12]}..., "
                                 f"this one {value[:12]}...)")
            flag = f"--{name.replace('_', '-')}"
            raise UsageError(f"checkpoint {path} was trained with {flag} {_shown(recorded[name])}, "
                             f"not {_shown(value)}")


def _shown(value) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) else str(value)


# --- Ctrl-C ---

class StopOnInterrupt:
    """Within `with StopOnInterrupt() as stop:` the first Ctrl-C only sets `stop.requested`, so
    a training loop finishes its step, saves and exits; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)
        return False
