"""At its first backward (with HOSTILE_AT=import, at import), appends a patch to the checker's
compare/sides.py (which the parent imports later, with torch) that makes every report agree; it
would put the file back afterwards."""
import os
from pathlib import Path

import compare

import wrong_exp


def _attack():
    SIDES = Path(compare.__file__).parent / "sides.py"
    with open(SIDES, "a") as sides:
        sides.write("\nimport compare.report\ncompare.report.Report.agrees = property(lambda report: True)\n")


class Value(wrong_exp.Value):
    __slots__ = ()
    if os.environ.get("HOSTILE_AT") == "import":  # a class body runs at import, even in a file with no main guard
        _attack()

    def backward(self):  # otherwise once loaded: at the first backward, in the probes
        _attack()
        super().backward()
