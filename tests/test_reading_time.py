"""The README's time for the tutorial: computed from the page by `tutorial.reading_time.measure`,
whose counts are checked here on a page small enough to count by hand, and stated in the README
with the rates the module uses."""
from __future__ import annotations

import re

from tutorial import reading_time
from tutorial.reading_time import Measures, measure

PAGE = """# A title

Two words [a link](https://pytorch.org/docs/stable/index.html) `x.grad` here.
<!-- snippet docs/snippets/first_gradient.py -->

```python
a = 1

b = a + 1
```

```text
2
```
<!-- /snippet -->
"""


def test_measure_counts_prose_code_and_output_as_a_reader_meets_them():
    # prose: "#"-less words of the title (2), and "Two words [a link] `x.grad` here." (6); the
    # link's address and the markers are not read; code: 2 non-empty lines; output: 1 line
    assert measure(PAGE) == Measures(prose_words=8, code_lines=2, output_lines=1)


def test_the_estimate_is_the_sum_of_its_parts_at_the_stated_rates():
    measures = Measures(prose_words=1500, code_lines=100, output_lines=60, check_seconds=120)
    minutes = measures.minutes()
    assert minutes == {"prose": 10, "code": 10, "output": 2, "checks": 2,
                       "exercises": 5 + 12 * 10}
    assert measures.total_minutes() == 149


def test_the_readme_states_the_rates_the_estimate_uses(repo_root):
    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("Plan on"):readme.index("## Set up")]
    assert f"{reading_time.PROSE_WORDS_PER_MINUTE} words a minute" in section
    assert f"{reading_time.CODE_LINES_PER_MINUTE} lines a minute" in section
    assert f"at {reading_time.OUTPUT_LINES_PER_MINUTE} a minute" in section
    assert (f"{reading_time.EXERCISE_MINUTES} minutes each and {reading_time.FIRST_EXERCISE_MINUTES} for the first"
            in section)
    page = measure((repo_root / "docs" / "bridge.md").read_text())
    output = int(re.search(r"([\d,]+)\s+lines of output", section)[1].replace(",", ""))
    assert abs(output - page.output_lines) <= 0.1 * page.output_lines
