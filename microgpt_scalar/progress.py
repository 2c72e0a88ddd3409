"""A progress line for long runs, on stderr and only when stderr is a terminal, written with
the standard library alone. The log lines go to stdout untouched, so stdout stays the original
program's log byte for byte wherever it is sent.

    progress = Progress(done=0, total=500)
    progress.write("step    1 /  500 | loss 3.3660")   # a log line, on stdout
    progress.update()                                   # one more step done
    progress.close()                                    # the progress line is wiped
"""
from __future__ import annotations

import shutil
import sys
import time

CLEAR_LINE = "\r\x1b[K"  # back to the line's start, then erase to its end


class Progress:
    """Steps done of `total`, redrawn in place on a terminal's stderr. Where stderr is not a
    terminal nothing is drawn; where drawing fails (the terminal went away) it stops drawing."""

    def __init__(self, done: int, total: int, stream=None, unit: str = "step", quiet: bool = False):
        self.stream = sys.stderr if stream is None else stream
        self.done, self.total, self.unit = done, total, unit
        self.first, self.started = done, time.monotonic()
        self.drawing = not quiet and _is_terminal(self.stream)  # -q: the log alone
        self.drawn = False
        self._draw()

    def write(self, line: str) -> None:
        """Print one log line on stdout, the progress line wiped first and drawn again after
        (on one terminal, the two would otherwise mix)."""
        self._clear()
        print(line, flush=True)
        self._draw()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        self._draw()

    def close(self) -> None:
        self._clear()
        self.drawing = False

    def text(self) -> str:
        """The progress line: "12/500 steps (2%), 3.1 steps/s, 2m37s left"."""
        percent = 100 * self.done // self.total if self.total else 100
        text = f"{self.done}/{self.total} {self.unit}s ({percent}%)"
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        if rate > 0:
            text += f", {rate:.1f} {self.unit}s/s, {_duration((self.total - self.done) / rate)} left"
        return text

    def _draw(self) -> None:
        if self.drawing:
            width = shutil.get_terminal_size().columns
            self._put(CLEAR_LINE + self.text()[:max(width - 1, 0)])
            self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            self._put(CLEAR_LINE)
            self.drawn = False

    def _put(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a terminal closed, or a stream closed: the run goes on
            self.drawing = self.drawn = False


def _is_terminal(stream) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
