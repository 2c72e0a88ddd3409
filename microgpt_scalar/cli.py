"""What the command-line scripts share: a parser whose errors are one line, flag types that check
their range, the config flags, checks of the files a run will write, the run's settings a
checkpoint records, and Ctrl-C that lets a step finish.

Standard library only, so the scalar scripts never import torch.

    parser = OneLineParser(description="...")
    parser.add_argument("--seed", type=seed_number, default=42)
    add_data_flag(parser)  # args.data: the file to read
    add_config_flags(parser)
    args = parser.parse_args()
    save = claim_output(args.save, "--save", inputs=[args.data], overwrite=args.overwrite)
    ...
    save.write(data)                     # microgpt_scalar.files: all or nothing
    print(error_line(message), file=sys.stderr)   # "error: ...", control characters escaped
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import signal
import sys
from pathlib import Path

from . import __version__
from .config import field_types, num_params
from .data import default_data_path
from .files import FileError, claim_output, escape_controls, open_input, release_all, shown
from .startup import started

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
        self.exit(2, error_line(message) + "\n")


def command(main):
    """A command's main(argv): Ctrl-C raises again once it runs (see `startup`), a Ctrl-C that
    escapes main's own handling ends in one line and exit code 130, and the output files it
    claimed are let go when it returns."""
    import functools

    @functools.wraps(main)
    def run(*args, **kwargs):
        started()
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print_error("interrupted; nothing saved")
            return 130
        finally:
            release_all()

    return run


def error_line(message) -> str:
    """The one line a script prints for a failure: "error: " and the message, with control
    characters (a newline in a path, a terminal escape in an engine's message) escaped."""
    return "error: " + escape_controls(str(message))


def print_error(message) -> None:
    print(error_line(message), file=sys.stderr, flush=True)


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
MAX_STEPS = 10**9  # far past any run (the original takes 500), short of counts that overflow or never end
MAX_SAMPLES = 10**6
MAX_BATCH = 10**7  # the benchmark's batch sizes (a trainer's --batch-size is bounded by memory instead)
step_count = int_from(1, MAX_STEPS)  # --steps, --stop-after
sample_count = int_from(0, MAX_SAMPLES)  # names to sample


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


MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-3, 1e3  # below: the argmax already; above: uniform already


def temperature(text: str) -> float:
    """--temperature: a number from MIN_TEMPERATURE to MAX_TEMPERATURE (logits divided by less
    overflow to infinity)."""
    value = _real(text)
    if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number from {MIN_TEMPERATURE:g} "
                                         f"to {MAX_TEMPERATURE:g}")
    return value


def fraction(text: str) -> float:
    """A finite number in [0, 1) (e.g. --val-fraction)."""
    value = _real(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number from 0 up to (not including) 1")
    return value


def real_from(low: float, high: float):
    """A flag type for finite numbers in [low, high]."""

    def parse(text: str) -> float:
        value = _real(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected a number from {low:g} to {high:g}")
        return value

    parse.__name__ = "number"
    return parse


def seconds(text: str) -> float:
    """A time limit in seconds: a finite number > 0, at most a week (the limit a process's
    timers take, with room to spare; no run needs longer)."""
    value = positive_real(text)
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text} is out of range: expected at most {MAX_SECONDS:g} seconds (a week)")
    return value


MAX_SECONDS = 7 * 24 * 3600.0
positive_real.__name__ = fraction.__name__ = _real.__name__ = seconds.__name__ = temperature.__name__ = "number"


# --- the config's flags ---

def add_config_flags(parser) -> None:
    """Give an argparse parser one flag per field a run may override: --n-layer, --init-std,
    ..., and --steps (or --num-steps) for num_steps. Unset flags parse as None; whole-number
    fields must be >= 1 and numbers finite (the config checks the rest)."""
    for field, kind in field_types().items():
        if field in FIXED_BY_RUN:
            continue
        flags = [f"--{field.replace('_', '-')}"] + (["--steps"] if field == "num_steps" else [])
        flag_type = (step_count if field == "num_steps" else positive_int) if kind is int else \
            (real_from(*FLOAT_FIELD_RANGES.get(field, (-1e9, 1e9))) if kind is float else kind)
        parser.add_argument(*flags, dest=field, type=flag_type, help=f"override the preset's {field}")


def config_overrides(args) -> dict:
    """field -> value of every config flag `add_config_flags` added (None where unset)."""
    return {field: getattr(args, field) for field in field_types() if field not in FIXED_BY_RUN}


# The ranges of the float fields' flags: wide, past any setting that trains (a learning rate or an
# initial spread may be any finite size: one too large ends the run with one line naming the
# non-finite loss or gradient); the config checks the exact bounds (a rate > 0, a beta < 1).
FLOAT_FIELD_RANGES = {"init_std": (0, math.inf), "proj_init_std": (0, math.inf), "learning_rate": (0, math.inf),
                      "beta1": (0, 1), "beta2": (0, 1), "eps_adam": (0, 1)}


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


# --- memory: model sizes a run could hold ---

SCALAR_BYTES_PER_PARAM = 120  # a scalar parameter with its gradient and Adam moments, measured; the graph comes on top


def memory_bytes() -> int | None:
    """The memory a run may use: the machine's, or less where an address-space limit or a
    cgroup says so (None if none of them can be read)."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    return min(limits) if limits else None


def check_fits_in_memory(needed_bytes: int, what: str) -> None:
    """UsageError if `needed_bytes` (a lower bound of what a run takes) is more than the memory
    a run may use here; `what` names the run and the flags that set its size."""
    available = memory_bytes()
    if available is not None and needed_bytes > available:
        raise UsageError(f"{what} needs at least {_size(needed_bytes)} of memory, and this machine has "
                         f"{_size(available)}; choose a smaller model")


def check_scalar_model_fits(config, flags: str = "--n-layer, --n-embd, --block-size") -> None:
    """The scalar engine's parameters and Adam state alone must fit in memory."""
    count = num_params(config)
    check_fits_in_memory(count * SCALAR_BYTES_PER_PARAM,
                         f"a model of {count:,} parameters on the scalar engine ({flags})")


def _size(count: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,} bytes"


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
        with open_input(path, "file") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise UsageError(f"cannot read {shown(path)}: {error.strerror}") from None
    return digest.hexdigest()


def check_output_path(path, flag: str, inputs=(), may_replace=(), overwrite: bool = False) -> None:
    """Raise FileError unless the run could claim `path` now (see `files.claim_output`); the
    claim is let go at once. Runs that write `path` claim it instead, and hold it."""
    output = claim_output(path, flag, inputs=inputs, may_replace=may_replace, overwrite=overwrite)
    if output is not None:
        output.release()


# --- the run's settings, recorded in its checkpoints ---

def check_same_run(recorded, current: dict, path) -> None:
    """Raise UsageError naming the first setting of `current` that the checkpoint's `recorded`
    run has with another value (settings it did not record, as in older checkpoints, pass)."""
    for name, value in current.items():
        if recorded and name in recorded and recorded[name] != value:
            path = shown(path)
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
    a training loop finishes its step, saves and exits; a second Ctrl-C interrupts at once.

    With `repeats_interrupt=False` (under torchrun, whose launcher passes the Ctrl-C on to its
    workers, so each gets it twice) every Ctrl-C only sets `stop.requested`, and once one came,
    later ones are ignored to the end of the process; the launcher kills workers that do not
    stop in its own time."""

    def __init__(self, repeats_interrupt: bool = True):
        self.requested = False
        self.repeats_interrupt = repeats_interrupt
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        if self.repeats_interrupt:
            signal.signal(signal.SIGINT, self._previous)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        stopping = self.requested and not self.repeats_interrupt
        signal.signal(signal.SIGINT, signal.SIG_IGN if stopping else self._previous)
        return False
