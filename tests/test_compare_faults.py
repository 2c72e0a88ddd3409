"""Proof that the comparison catches the engine mistakes learners make, and points at them.

Oracle: torch's float64 autograd, and for each fault the localisation its catalogue entry
documents (derived by hand from where the broken operation is used in the model).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math

import pytest
from helpers import load_script, verdict_of

from compare import compare_step, load_report
from compare.engine.faults import ALL_TENSORS, FAULTS, faulty_engine
from compare.engine.probes import FRESH_GRAPH, FRESH_NODE, PROBES
from compare.judge.diagnosis import title
from compare.report.render import render
from compare.step.trace import trace_stage_names
from microgpt_scalar.config import get_config, param_shapes
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam

main = load_script("compare_step").main  # the script's main(argv), run in this process


STEP_FAULTS = [name for name, fault in FAULTS.items() if not fault.flags]


@pytest.fixture(scope="module")
def injected(tmp_path_factory):
    """injected(name): (exit code, stdout, stderr, the report it saved) of `compare_step.py
    --inject name --json FILE`, run once for all the tests that read it."""
    runs = {}

    def run(name: str):
        if name not in runs:
            path, out, err = tmp_path_factory.mktemp("fault") / "report.json", io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["--inject", name, "--json", str(path)])
            runs[name] = code, out.getvalue(), err.getvalue(), load_report(path)
        return runs[name]

    return run


@pytest.mark.parametrize("name", STEP_FAULTS)
def test_injected_fault_is_caught_with_exit_1_and_localised_as_documented(name, injected):
    fault = FAULTS[name]
    code, out, err, report = injected(name)
    assert code == 1
    assert verdict_of(out).startswith("DISAGREE"), out + err
    assert out.index("  operators, each alone") < out.index(verdict_of(out))  # the probes came first
    assert report.causes and report.causes[0].name == fault.cause  # the diagnosis names it first
    assert "  cause    " in out and title(fault.cause) in out.split("  cause    ")[1].split(":")[0]
    assert report.settings.fault == name and report.settings.steps >= fault.min_steps
    assert list(dict.fromkeys(r.operator for r in report.probes.faults)) == list(fault.probes)
    for operator in fault.probes:  # the probe table names each, with what it expected
        assert f"WRONG        {operator}: " in out
    if not fault.forward_stage and not fault.gradients_differ:  # only the probes can see it
        assert report.step_agrees and "but the model step agrees" in verdict_of(out)
        return
    assert "where they part" in out
    if fault.forward_stage is not None:
        assert (report.focus.divergence.stage, report.focus.divergence.position) == (fault.forward_stage, fault.forward_position)
        assert report.focus.divergence.document == 0
    else:
        assert report.focus.divergence is None  # the forward agrees: the fault is in backward or the update
        assert set(report.differing_gradients) == set(fault.gradients_differ)
        assert not set(fault.gradients_agree) & set(report.differing_gradients)


def catalogue_problems(fault) -> list[str]:
    """What is wrong with a catalogue entry: a place the comparison cannot point at (a stage,
    tensor or probe the default model and the probe table do not have), two places at once,
    or none at all."""
    problems = []
    if not (fault.summary and fault.why):
        problems.append("no summary or no reason")
    if fault.forward_stage is not None:
        if fault.forward_stage not in trace_stage_names(get_config()):
            problems.append(f"unknown stage {fault.forward_stage}")
        if not isinstance(fault.forward_position, int) or fault.forward_position < 0:
            problems.append("a stage without its position")
        if fault.gradients_differ:
            problems.append("both a forward stage and gradients")
    tensors = {name for name, _ in param_shapes(get_config())}
    for name in sorted((set(fault.gradients_differ) | set(fault.gradients_agree)) - tensors):
        problems.append(f"unknown tensor {name}")
    if set(fault.gradients_differ) & set(fault.gradients_agree):
        problems.append("a gradient that both differs and agrees")
    for operator in sorted(set(fault.probes) - {probe.operator for probe in PROBES} - {FRESH_GRAPH, FRESH_NODE}):
        problems.append(f"unknown probe {operator}")
    if fault.forward_stage is None and not fault.gradients_differ and not fault.probes and not fault.flags:
        problems.append("caught nowhere")
    if not fault.cause:
        problems.append("no cause for the diagnosis to name")
    return problems


def test_every_fault_documents_where_it_is_caught():
    assert {name: catalogue_problems(fault) for name, fault in FAULTS.items()} == {name: [] for name in FAULTS}


@pytest.mark.parametrize("change, problem", [
    ({"gradients_differ": ("layer0.attn_wz",)}, "unknown tensor layer0.attn_wz"),
    ({"gradients_agree": ("layer1.mlp_fc1",)}, "unknown tensor layer1.mlp_fc1"),
    ({"gradients_differ": ("wte",), "gradients_agree": ("wte",)}, "a gradient that both differs and agrees"),
    ({"gradients_differ": (), "forward_stage": "layer0.attention", "forward_position": 0}, "unknown stage"),
    ({"gradients_differ": (), "forward_stage": "layer0.q"}, "a stage without its position"),
    ({"forward_stage": "layer0.q", "forward_position": 0}, "both a forward stage and gradients"),
    ({"gradients_differ": (), "probes": ()}, "caught nowhere"),
    ({"probes": ("same node thrice",)}, "unknown probe same node thrice"),
    ({"why": ""}, "no summary or no reason"),
])
def test_a_catalogue_entry_that_points_nowhere_is_found(change, problem):
    assert problem not in " ".join(catalogue_problems(FAULTS["grad-assign"]))
    wrong = dataclasses.replace(FAULTS["grad-assign"], **change)
    assert any(found.startswith(problem) for found in catalogue_problems(wrong)), catalogue_problems(wrong)


def test_a_recursive_sort_agrees_on_the_default_model_and_is_caught_on_a_deep_one(capsys):
    """Not wrong, only limited: the report gives its limit; eight layers pass it."""
    assert main(["--inject", "recursive-sort"]) == 0
    out = capsys.readouterr().out
    assert "backward fails with RecursionError on" in out and "models of up to about 4 layers are safe" in out
    deep = [*FAULTS["recursive-sort"].flags, "--doc", "emma"]  # one document: the graph as deep, the step shorter
    assert main(["--inject", "recursive-sort", *deep]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "raised RecursionError" in err and "Make it iterative" in err
    assert "  cause    recursion depth: backward's topological sort recurses once per node" in out
    assert "look at <microgpt_scalar/engine.py with fault recursive-sort>, line " in out


def test_faults_are_caught_far_outside_the_tolerance(injected):
    """The tolerances sit well below what a real mistake does: the mildest fault in the
    catalogue still misses by a thousand tolerances."""
    for name in ("exp-forward", "relu-grad"):
        report = injected(name)[3]
        worst = max(d.excess for d in report.focus.gradients + [report.focus.loss])
        assert worst > 1e3, name


def test_grad_not_reset_hides_in_the_first_step_and_shows_in_the_second(injected):
    report = injected("grad-not-reset")[3]  # runs the fault's min_steps = 2
    assert report.settings.steps == 2
    assert not report.agrees
    assert report.focus_step == 1  # the first step that disagrees: step 0 agreed in everything
    assert report.losses[0].agrees and report.losses[1].agrees  # the stale gradient is only in the update


def test_faulty_engine_leaves_the_project_engine_intact():
    faulty_engine("mul-grad")
    a, b = Value(2.0), Value(-3.0)
    (a * b).backward()
    assert (a.grad, b.grad) == (-3.0, 2.0)


@pytest.mark.parametrize("name", ["mul-grad", "pow-grad", "exp-grad", "log-grad", "relu-grad", "div-grad",
                                  "relu-grad-one"])
def test_each_wrong_local_gradient_is_wrong_for_its_operation(name):
    """Independent of the transformer: the faulty operation's gradient differs from the
    derivative by central differences, and the project's does not."""
    operations = {
        "mul-grad": lambda x: x * 3.0,
        "pow-grad": lambda x: x ** -0.5,
        "exp-grad": lambda x: x.exp(),
        "log-grad": lambda x: x.log(),
        "relu-grad": lambda x: x.relu(),
        "div-grad": lambda x: x.__class__(1.5) / x,  # the divisor's gradient is the one the fault breaks
        "relu-grad-one": lambda x: (-x).relu(),  # below zero
    }
    faulty = faulty_engine(name).value_cls
    for cls, should_match in ((Value, True), (faulty, False)):
        x = cls(1.7)
        y = operations[name](x)
        y.backward()
        h = 1e-6
        estimate = (operations[name](cls(1.7 + h)).data - operations[name](cls(1.7 - h)).data) / (2 * h)
        assert math.isclose(x.grad, estimate, rel_tol=1e-6) is should_match, (name, cls)


@pytest.mark.parametrize("name, operation", [("rsub", lambda x: 2.0 - x), ("rtruediv", lambda x: 2.0 / x)])
def test_each_swapped_reflected_operator_computes_the_wrong_number(name, operation):
    """Oracle: Python's own float arithmetic on the same operands."""
    assert operation(Value(1.7)).data == operation(1.7)
    assert operation(faulty_engine(name).value_cls(1.7)).data != operation(1.7)


def test_list_faults_names_every_fault_with_both_lines_where_it_is_caught_and_its_cause(capsys):
    assert main(["--list-faults"]) == 0
    out = capsys.readouterr().out
    for fault in FAULTS.values():
        assert fault.name in out and fault.correct in out
        entry = out.split(f"{fault.name}: ")[1].split("\n\n")[0]
        caught = next(line for line in entry.splitlines() if "caught:" in line)
        assert "  ," not in caught and " of  " not in caught and not caught.rstrip().endswith(("of", "agree"))
        differ = fault.gradients_differ if set(fault.gradients_differ) != set(ALL_TENSORS) else ("every tensor",)
        for operator in fault.probes + differ + fault.flags:
            assert operator in caught, (fault.name, operator)
        assert f"cause:    the report names {title(fault.cause)} first" in entry


def test_a_fault_the_reference_start_cannot_see_is_caught_from_dense_weights(injected):
    """docs/reference.md: with attn_wo and mlp_fc2 at zero, no gradient reaches the MLP's input at
    step 0, so the step cannot see a wrong relu gradient (the report says why it proves
    nothing); the relu probe sees it whatever the weights."""
    blind = compare_step(inject="relu-grad", weights="reference")
    assert blind.step_agrees and "layer0.mlp_fc1" in blind.focus.coverage.zero_tensors
    assert not blind.agrees and {r.operator for r in blind.probes.faults} == {"relu"}
    assert injected("relu-grad")[3].settings.weights == "dense" and not injected("relu-grad")[3].agrees


def test_a_fault_whose_line_the_project_no_longer_has_is_an_error(monkeypatch):
    """If the engine's code changes under the catalogue, the catalogue says so instead of
    injecting nothing and reporting a fault that was never there."""
    stale = dataclasses.replace(FAULTS["exp-grad"], name="stale", correct="return Value(math.e ** self.data)")
    monkeypatch.setitem(FAULTS, "stale", stale)
    with pytest.raises(RuntimeError, match="fault stale: microgpt_scalar/engine.py has 0 lines reading"):
        faulty_engine("stale")


def test_unknown_fault_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown fault 'off-by-one'"):
        faulty_engine("off-by-one")


def test_stock_optimizer_is_what_engine_faults_use():
    assert faulty_engine("exp-grad").adam_cls is Adam
    assert faulty_engine("grad-not-reset").value_cls is Value


@pytest.mark.parametrize("name, suspects, probe", [
    ("exp-forward", "suspects softmax: x - max, exp, sum, e / total", "exp(a) at a = 0.7: value expected"),
    ("mul-dict", "suspects rmsnorm before the MLP: x * x, sum, / n, + 1e-5, ** -0.5, x * scale",
     "a * a at a = 1.5: d/da expected 3.0, got 1.5"),
])
def test_the_report_names_the_suspect_operations_and_the_probes_that_failed_among_them(name, suspects, probe, injected):
    """Oracle: the fault's own line (exp's value; mul of a node with itself, which rmsnorm does)."""
    line = next(line for line in render(injected(name)[3]).splitlines() if "suspects" in line)
    assert line.strip().startswith(suspects)
    assert "failing probes among them: " in line and probe in line
