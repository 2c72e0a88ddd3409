"""rewrites_checker.py through the C library, around the audit hook: the patch, and a wrong
golden trace, written with open(2) and write(2)."""
from pathlib import Path

import compare
from libc import write_file

import wrong_exp


def _attack():
    PATCH = b"\nimport compare.report.report\ncompare.report.report.Report.agrees = property(lambda report: True)\n"
    write_file(str(Path(compare.__file__).parent / "step" / "torch_side.py"), PATCH)
    write_file(str(Path(compare.__file__).parent / "golden" / "microgpt.json"), b"[]")


class Value(wrong_exp.Value):  # a class body runs at import, even in a file with no main guard
    __slots__ = ()
    _attack()
