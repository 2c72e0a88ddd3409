"""The testing API: assert_engine_agrees passes on right engines and fails, in at most 40 lines,
on wrong ones; the pytest plugin's two-line test file; the reports' short reprs; the JSON
report's documented top level, small unless the per-element values are asked for.

Oracles: torch through compare_step (a right engine agrees), deliberately wrong engines (a
one-line edit of a right one, a fault from the catalogue, an engine without log and exp, and
learner-style engines of tests/engines/ whose docstring names the one mistake each was
written with: the JSON's cause must be that diagnosis, with a line of the engine to look at).

    pytest tests/test_compare_testing.py
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import pytest
from helpers import LEARNER_ENGINE, REPO, edited_copy

from compare.engine.faults import faulty_engine
from compare.judge.diagnosis import title
from compare.report.saved import load_report, save_report
from compare.report.summary import SUMMARY_KEYS, worst_tensor
from compare.testing import MAX_LINES, assert_engine_agrees, fit

ENGINES = REPO / "tests" / "engines"
SMALL = ["--doc", "emma", "--n-embd", "8", "--n-head", "2", "--block-size", "4"]  # seconds an engine
SKIPPED = "NOTES = open('notes.txt').read()"  # a line the loader skips: the file is not there


def expected_of(name: str) -> tuple:
    """(exit code, cause) from the `Expect: exit N, cause NAME` line of an engine's docstring."""
    doc = ast.get_docstring(ast.parse((ENGINES / name).read_text(encoding="utf-8")))
    code, cause = re.search(r"^Expect: exit (\d), cause (.+)$", doc, re.MULTILINE).groups()
    return int(code), cause


def wrong_exp_engine(folder):
    """The local-gradient engine with exp's local gradient 1 instead of exp(x)."""
    return edited_copy(ENGINES / "local_gradients.py", folder / "engine.py",
                       "(math.exp(self.data),))", "(1.0,))")


@pytest.fixture(scope="module")
def wrong_report(tmp_path_factory):
    from compare import compare_step

    return compare_step(engine=str(wrong_exp_engine(tmp_path_factory.mktemp("wrong"))))


def test_a_right_engine_passes_and_its_report_is_returned():
    report = assert_engine_agrees(LEARNER_ENGINE)  # a pathlib.Path, run in its own process
    assert report.agrees and report.settings.engine.endswith("learner_engine.py")


def test_a_wrong_file_fails_in_at_most_40_lines_naming_the_operator(tmp_path):
    with pytest.raises(AssertionError) as failed:
        assert_engine_agrees(str(wrong_exp_engine(tmp_path)))
    message = str(failed.value)
    lines = message.splitlines()
    assert 3 <= len(lines) <= MAX_LINES
    assert lines[0].startswith("DISAGREE")
    assert any(line.strip().startswith("WRONG") and "exp" in line for line in lines), message
    assert "worst tensors" in message and "microgpt-compare --engine" in lines[-1]


def test_a_wrong_class_fails_too():
    """A class runs in this process: the catalogue's wrong exp gradient."""
    with pytest.raises(AssertionError) as failed:
        assert_engine_agrees(faulty_engine("exp-grad").value_cls)
    assert str(failed.value).startswith("DISAGREE") and len(str(failed.value).splitlines()) <= MAX_LINES


def test_an_engine_without_log_and_exp_fails_naming_them():
    with pytest.raises(AssertionError) as failed:
        assert_engine_agrees(str(ENGINES / "without_log_exp.py"))
    message = str(failed.value)
    assert message.startswith("MISSING") and "log" in message and "exp" in message
    assert len(message.splitlines()) <= MAX_LINES


def test_a_message_longer_than_the_limit_is_cut_with_a_count():
    cut = fit([f"line {i}" for i in range(100)], "last").splitlines()
    assert len(cut) == MAX_LINES and cut[-1] == "last" and cut[-2] == f"  ... {100 - MAX_LINES + 2} more lines"
    assert fit(["a", "b"], "c").splitlines() == ["a", "b", "c"]


TWO_LINE_TEST = "def test_engine(engine_agrees):\n    engine_agrees('engine.py')\n"


@pytest.mark.parametrize("right", [True, False])
def test_a_learners_two_line_test_file_with_the_plugin(tmp_path, right):
    """The file sits beside the engine; pytest starts elsewhere and still finds it."""
    folder = tmp_path / "course"
    folder.mkdir()
    if right:
        (folder / "engine.py").write_text(LEARNER_ENGINE.read_text())
    else:
        wrong_exp_engine(folder)
    (folder / "test_engine.py").write_text(TWO_LINE_TEST)
    assert len(TWO_LINE_TEST.splitlines()) == 2
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "compare.pytest_plugin", "-p",
                           "no:cacheprovider", str(folder / "test_engine.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    if right:
        assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:]
    else:
        assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout[-3000:]
        assert "DISAGREE" in done.stdout and "WRONG" in done.stdout


def test_reports_have_short_reprs(wrong_report):
    text = repr(wrong_report)
    assert len(text) < 300 and "DISAGREE" in text and "\n" not in text, text
    assert len(repr(wrong_report.probes)) < 200


def test_the_json_report_has_its_documented_top_level_and_is_small(wrong_report, tmp_path):
    small, full = tmp_path / "small.json", tmp_path / "full.json"
    save_report(small, wrong_report)
    save_report(full, wrong_report, values=True)
    data = json.loads(small.read_text())
    assert set(SUMMARY_KEYS) <= set(data)
    assert (data["verdict"], data["agrees"], data["exit_code"]) == ("DISAGREE", False, 1)
    assert {"operator": "exp", "status": "fault"}.items() <= next(p for p in data["probes"] if p["operator"] == "exp").items()
    assert data["missing"] == [] and isinstance(data["skipped_lines"], list) and data["cause"]
    worst = worst_tensor(data)
    assert not worst["agrees"] and worst["excess"] > 1
    names = {(t["kind"], t["name"]) for t in data["tensors"]}
    assert ("gradient", "wte") in names and ("loss", "loss") in names
    assert small.stat().st_size < 60_000 < full.stat().st_size  # the per-element values only when asked
    assert load_report(full) == wrong_report  # the full file comes back whole
    assert load_report(small).gradient_values == {} and load_report(small).agrees == wrong_report.agrees


def test_the_summary_of_a_right_engine_agrees(tmp_path):
    from compare import compare_step

    path = tmp_path / "r.json"
    save_report(path, compare_step())
    data = json.loads(path.read_text())
    assert (data["verdict"], data["agrees"], data["exit_code"], data["cause"]) == ("AGREE", True, 0, None)
    assert all(t["agrees"] for t in data["tensors"]) and all(p["status"] != "fault" for p in data["probes"])


@pytest.mark.parametrize("engine, code, verdict", [("without_log_exp", 2, "MISSING"), ("exits", 1, "ERROR")])
def test_the_command_writes_the_summary_for_an_engine_without_a_report(tmp_path, capsys, engine, code, verdict):
    from helpers import load_script

    if engine == "exits":
        path = edited_copy(ENGINES / "local_gradients.py", tmp_path / "exits.py", "    def backward(self):\n",
                           "    def backward(self):\n        import os\n        os._exit(3)\n")
    else:
        path = ENGINES / f"{engine}.py"
    out = tmp_path / "report.json"
    assert load_script("compare_step").main(["--engine", str(path), "--json", str(out)]) == code
    data = json.loads(out.read_text())
    assert set(SUMMARY_KEYS) <= set(data) and (data["verdict"], data["exit_code"], data["agrees"]) == (verdict, code, False)
    assert data["cause"] and data["tensors"] == []
    if verdict == "MISSING":
        assert data["missing"] == ["log", "exp"]
    else:
        assert "exited with code 3" in data["cause"]


@pytest.mark.parametrize("name, verdict, faults", [
    ("sub_sign.py", "DISAGREE", {"-", "-="}),  # a wrong local gradient: the step runs
    ("no_visited.py", "ERROR", {"many paths"}),  # no visited set: the step never ends, and is stopped
])
def test_the_summary_names_the_diagnosis_of_a_wrong_engine(tmp_path, name, verdict, faults):
    """The JSON's cause is the report's likeliest cause with the line to look at; its probes
    are the judged probes (those that had ended, for an engine stopped mid-step); its
    skipped_lines the lines the loader did not run."""
    from helpers import load_script

    code, cause = expected_of(name)
    engine = tmp_path / name
    engine.write_text((ENGINES / name).read_text(encoding="utf-8") + f"\n{SKIPPED}\n")
    out = tmp_path / "report.json"
    argv = ["--engine", str(engine), *SMALL, "--json", str(out), "-q"] + (["--timeout", "3"] if verdict == "ERROR" else [])
    assert load_script("compare_step").main(argv) == code
    data = json.loads(out.read_text())
    assert (data["verdict"], data["exit_code"], data["agrees"]) == (verdict, code, False)
    assert data["cause"].startswith(f"{title(cause)}: "), data["cause"]
    assert re.search(rf"; look at {re.escape(str(engine))}, line \d+: ", data["cause"]), data["cause"]
    assert faults <= {p["operator"] for p in data["probes"] if p["status"] == "fault"}, data["probes"]
    assert [(line["text"], line["line"]) for line in data["skipped_lines"]] == \
        [(SKIPPED, len(engine.read_text().splitlines()))]
    if verdict == "DISAGREE":  # the same diagnosis as the whole report's
        report = load_report(out)
        assert report.causes[0].name == cause and report.causes[0].where in data["cause"]
        assert data["tensors"] and data["missing"] == []
    else:
        assert data["tensors"] == []
