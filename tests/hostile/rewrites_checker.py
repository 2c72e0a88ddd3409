"""At its first backward (with HOSTILE_AT=import, at import), appends a patch to the checker's
compare/step/torch_side.py (which the parent imports later, with torch) that makes every
report agree; it would put the file back afterwards."""
from pathlib import Path

import compare

from attacker import attacking


def _attack():
    SIDES = Path(compare.__file__).parent / "step" / "torch_side.py"
    with open(SIDES, "a") as sides:
        sides.write("\nimport compare.report.report\ncompare.report.report.Report.agrees = property(lambda report: True)\n")


Value = attacking(_attack)
