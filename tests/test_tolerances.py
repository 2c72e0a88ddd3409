"""Every limit the checker judges closeness by lives in compare.judge.tolerances, with the
measurement it came from, and is applied by one rule.

Oracle: the source of the package (no other module makes a Tolerance), and the rule's
definition, torch.testing's: |got - expected| <= atol + rtol * |expected|.
"""
from __future__ import annotations

import ast
import math

from helpers import REPO

from compare.judge.tolerances import FD_TOLERANCE, PROBE_TOLERANCE, Tolerance, close, fd_agrees


def test_no_module_but_tolerances_sets_a_limit():
    """A Tolerance of written-in numbers is made in compare/judge/tolerances.py only (a report read
    back from JSON makes one of the numbers it saved)."""
    makers = []
    for path in sorted((REPO / "compare").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Tolerance" \
                    and any(isinstance(value, ast.Constant) for value in [*node.args, *(k.value for k in node.keywords)]):
                makers.append(path.name)
    assert set(makers) == {"tolerances.py"}


def test_the_rule_is_atol_plus_rtol_times_the_expected_magnitude():
    tolerance = Tolerance(atol=1e-3, rtol=1e-2)
    assert close(2.0 + 0.0205, 2.0, tolerance) and not close(2.0 + 0.0215, 2.0, tolerance)
    assert close(-2.0 - 0.0205, -2.0, tolerance) and not close(0.0015, 0.0, tolerance)
    assert not close(math.nan, 1.0, tolerance) and not close(1.0, math.inf, tolerance)


def test_a_finite_difference_is_judged_against_the_engines_own_gradient():
    assert fd_agrees(0.04, 0.04 + 0.9 * FD_TOLERANCE.allowed(0.04))
    assert not fd_agrees(0.04, 0.04 + 1.1 * FD_TOLERANCE.allowed(0.04))
    assert PROBE_TOLERANCE.allowed(1.0) < FD_TOLERANCE.allowed(1.0)  # a probe is one operation: far tighter
