"""The facts of docs/reference.md that tests check against, read from the page itself, so a
test's expected value is what the page says the original program does.

    published("microgpt").lines        # ["num params: 4064", "step    1 /  500 | loss 3.3630", ...]
    published("microgpt").first_losses  # ["3.3630", "3.2917"]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
_PUBLISHED = re.compile(r"^<!-- published (?P<preset>\S+) -->\n```text\n(?P<lines>.*?)\n```\n"
                        r"First samples: (?P<samples>[^\n]*)\.$", re.M | re.S)
_STEP = re.compile(r"step +(\d+) / +(\d+) \| loss (\d\.\d{4})")


@dataclass(frozen=True)
class Published:
    """The published output of one preset on the names file, seed 42."""

    lines: list  # the published log lines, in the order the program prints them
    samples: list  # the first samples, in order

    @property
    def num_params(self) -> int:
        return int(next(line for line in self.lines if line.startswith("num params: ")).split(": ")[1])

    @property
    def steps(self) -> dict:
        """step number (1-based) -> its loss as printed, "3.3630"."""
        return {int(m[1]): m[3] for m in map(_STEP.fullmatch, self.lines) if m}

    @property
    def num_steps(self) -> int:
        return int(next(m[2] for m in map(_STEP.fullmatch, self.lines) if m))

    @property
    def first_losses(self) -> list:
        """The losses of steps 1 and 2, as printed."""
        return [self.steps[1], self.steps[2]]


def published(preset: str) -> Published:
    for match in _PUBLISHED.finditer(REFERENCE.read_text(encoding="utf-8")):
        if match["preset"] == preset:
            return Published(match["lines"].splitlines(), re.findall(r"`([^`]*)`", match["samples"]))
    raise KeyError(f"docs/reference.md publishes no output for {preset!r}")


def names_sha256() -> str:
    """The sha256 of the canonical names file, as the page gives it."""
    return re.search(r"sha256\s+`([0-9a-f]{64})`", REFERENCE.read_text(encoding="utf-8"))[1]
