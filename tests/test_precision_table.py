"""scripts/precision_table.py: runs on CPU, and its float64 figures meet compare's tolerances."""
from __future__ import annotations

import pytest
import torch
from helpers import load_script

from compare.judge.tolerances import tolerances_for


@pytest.fixture(scope="module")
def table_script():
    return load_script("precision_table")


@pytest.fixture(scope="module")
def printed(table_script):
    """The script's whole output, run once: (exit code, stdout lines)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = table_script.main([])
    return code, out.getvalue().splitlines()


def test_float64_row_is_within_compares_float64_tolerances(table_script):
    row = table_script.measure(table_script.SETTINGS[0])
    assert (row.setting.device, row.setting.dtype, row.setting.switch) == ("cpu", "float64", "")
    tolerances = tolerances_for("float64")
    assert row.loss_error <= tolerances.values.allowed(abs(row.loss))
    assert row.grad_error <= tolerances.gradients.allowed(row.grad_scale)
    assert table_script.within(row, tolerances)  # and entry by entry, at each entry's own scale
    assert row.grad_scale > 0.01  # the dense weights give gradients worth comparing
    assert all(any(g != 0 for g in ours) for ours, _ in row.grads.values())  # no tensor checks only zeros


def test_within_rejects_errors_past_the_float64_tolerance(table_script):
    """compare's rule, entry by entry: 1e-9 relative is its float64 limit."""
    setting, tolerances = table_script.SETTINGS[0], tolerances_for("float64")
    grads = {"wte": ([0.1, 1e-3], [0.1, 1e-3])}
    assert table_script.within(table_script.Row(setting, 3.0, 3.0, grads), tolerances)
    loss_off = table_script.Row(setting, 3.0, 3.0 + 1e-8, grads)
    small_grad_off = table_script.Row(setting, 3.0, 3.0, {"wte": ([0.1, 1e-3], [0.1, 1e-3 + 1e-11])})
    assert not table_script.within(loss_off, tolerances)
    assert not table_script.within(small_grad_off, tolerances)  # within a bound set by the largest, not its own
    assert small_grad_off.grad_error <= tolerances.gradients.allowed(small_grad_off.grad_scale)


def test_script_prints_every_row_and_says_why_cuda_rows_were_not_run(table_script, printed):
    code, lines = printed
    assert code == 0
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ") and "---" not in line}
    assert set(rows) == {setting.label for setting in table_script.SETTINGS} | {"torch run"}
    assert rows["CPU, float64"].endswith("| yes / yes |")
    assert rows["CPU, float32"].endswith("| no / yes |")  # float32 is coarser than float64's tolerance
    for setting in table_script.SETTINGS:
        ran = "not run" not in rows[setting.label]
        assert ran == (setting.device == "cpu" or torch.cuda.is_available()), setting.label
        if not ran:
            assert "no CUDA device" in rows[setting.label]


def test_with_table_replaces_only_the_marked_span(table_script):
    guide = "intro\n<!-- precision-table -->\nold table\n<!-- /precision-table -->\noutro\n"
    assert table_script.with_table(guide, "| new |\n") == \
        "intro\n<!-- precision-table -->\n| new |\n<!-- /precision-table -->\noutro\n"
    with pytest.raises(ValueError, match="no <!-- precision-table -->"):
        table_script.with_table("no markers here\n", "| new |\n")
