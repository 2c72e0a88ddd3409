"""How long the guide takes, estimated from what it holds: its prose read at a pace for technical
text, its code read line by line, its printed output skimmed, and each exercise written and checked.

    python -m tutorial.reading_time          # the measures of docs/bridge.md and the estimate

The README states the result and these rates; a test keeps its figures in step with the page.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

PROSE_WORDS_PER_MINUTE = 150  # technical prose read to be understood, not skimmed
CODE_LINES_PER_MINUTE = 10  # code read until each line is clear
OUTPUT_LINES_PER_MINUTE = 30  # printed output, compared with the code that printed it
FIRST_EXERCISE_MINUTES = 5  # three lines of tensor code
EXERCISE_MINUTES = 10  # a 5-20 line piece, written, checked, fixed once
EXERCISES = 13

FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)
MARKER = re.compile(r"^<!-- .*? -->$", re.M)


@dataclass(frozen=True)
class Measures:
    prose_words: int
    code_lines: int
    output_lines: int

    def minutes(self) -> dict:
        return {
            "prose": self.prose_words / PROSE_WORDS_PER_MINUTE,
            "code": self.code_lines / CODE_LINES_PER_MINUTE,
            "output": self.output_lines / OUTPUT_LINES_PER_MINUTE,
            "exercises": FIRST_EXERCISE_MINUTES + (EXERCISES - 1) * EXERCISE_MINUTES,
        }

    def total_minutes(self) -> float:
        return sum(self.minutes().values())


def measure(page: str) -> Measures:
    """Words outside code blocks and markers; non-empty lines of code (```python, ```py) and of output."""
    code = output = 0
    for match in FENCE.finditer(page):
        lines = [line for line in match["body"].splitlines() if line.strip()]
        if match["lang"] in ("python", "py"):
            code += len(lines)
        else:
            output += len(lines)
    prose = MARKER.sub("", FENCE.sub("", page))
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # a link's address is not read
    return Measures(len(re.findall(r"[A-Za-z0-9`'_.-]+", prose)), code, output)


def main(argv=None) -> int:
    page = Path(__file__).resolve().parents[1] / "docs" / "bridge.md"
    measures = measure(page.read_text(encoding="utf-8"))
    for part, minutes in measures.minutes().items():
        print(f"{part:10} {minutes:6.0f} min")
    print(f"{'total':10} {measures.total_minutes():6.0f} min   ({measures})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
