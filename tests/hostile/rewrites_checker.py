"""At import, appends a patch to the checker's compare/sides.py (which the parent imports
later, with torch) that makes every report agree; it would put the file back afterwards."""
from pathlib import Path

import compare

import wrong_exp


def _attack():
    SIDES = Path(compare.__file__).parent / "sides.py"
    with open(SIDES, "a") as sides:
        sides.write("\nimport compare.report\ncompare.report.Report.agrees = property(lambda report: True)\n")


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
