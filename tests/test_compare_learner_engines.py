"""Engines written the way learners write them, never tuned to: each file in tests/engines/
that says `Expect: exit N[, cause NAME]` in its docstring gets exactly that exit code from
compare_step.py, and a wrong one gets that cause named first, with a line of its own code
to look at.

Oracle: torch (through the comparison) for the verdicts; for the causes, the one mistake
each file was written with (its docstring says which).

The model is made small (one document, n_embd 8, block_size 4) so that each engine takes
seconds: the probes, which decide most causes, are the same at any size.
"""
from __future__ import annotations

import ast
import re
import shutil

import pytest
from helpers import REPO, load_script, verdict_of

from compare.judge.diagnosis import title

ENGINES = REPO / "tests" / "engines"
SMALL = ["--doc", "emma", "--n-embd", "8", "--n-head", "2", "--block-size", "4"]
main = load_script("compare_step").main


def expectations() -> dict:
    """file name -> (exit code, cause or None, class spec suffix, words of the error line or
    None), from each docstring: `Expect: exit N[, cause NAME][, says WORDS][ (as FILE:CLASS)]`."""
    found = {}
    for path in sorted(ENGINES.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        match = re.search(r"^Expect: exit (\d)(?:, cause (.+?))?(?:, says (.+?))?(?: \(as (\S+)\))?$", doc,
                          re.MULTILINE)
        if match:
            spec = match.group(4) or path.name
            found[path.name] = (int(match.group(1)), match.group(2), spec.replace(path.name, ""), match.group(3))
    return found


def test_every_engine_here_states_what_the_check_must_say_of_it():
    assert sorted(EXPECTED) == sorted(path.name for path in ENGINES.glob("*.py"))


EXPECTED = expectations()
# engines whose model step never ends (a walk over every path, a list of every node ever
# made): a short hard limit keeps the test quick; the default limit is set from their speed
SLOW_STEP = {"no_visited.py", "shared_children.py"}


def test_the_engines_cover_ten_right_and_ten_wrong_styles():
    right = [name for name, (code, _, _, _) in EXPECTED.items() if code == 0]
    wrong = [name for name, (code, cause, _, _) in EXPECTED.items() if code == 1 and cause]
    assert len(right) >= 10 and len(wrong) >= 10, (right, wrong)


# no_visited.py is checked at the default model and limits, where it is stopped by its own speed
AT_DEFAULT_SETTINGS = "no_visited.py"


@pytest.mark.parametrize("name", [name for name in EXPECTED
                                  if name not in ("script_with_data.py", AT_DEFAULT_SETTINGS)])
def test_each_engine_gets_its_exit_code_and_a_wrong_one_its_cause(name, capsys, tmp_path):
    suffix = EXPECTED[name][2]
    argv = ["--engine", str(ENGINES / name) + suffix, *SMALL, "--json", str(tmp_path / "report.json")]
    if name in SLOW_STEP:
        argv += ["--timeout", "6"]
    got = main(argv)
    out, err = capsys.readouterr()
    assert_as_expected(name, got, out, err, tmp_path / "report.json")


def assert_as_expected(name: str, got: int, out: str, err: str, json_path) -> None:
    """The engine `name` got the exit code its docstring states, and a wrong one its cause
    (out, err: what the script printed; json_path: the report it was asked to write)."""
    code, cause, _, says = EXPECTED[name]
    assert got == code, out + err
    if says:  # ended in one line, before any verdict
        assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err
        assert "AGREE" not in out
        return
    assert out.startswith(("  operators, each alone", "  skipped  ")), out  # the probes are shown, whatever follows
    if code == 0:
        assert verdict_of(out).startswith("AGREE") and err == "" and "  cause    " not in out
        report = __import__("compare").load_report(json_path)
        if report.probes.missing:  # what it lacks is named, never counted as agreeing
            assert verdict_of(out).startswith("AGREE on everything it has: ")
        return
    first = next(line for line in out.splitlines() if line.startswith("  cause    "))
    assert title(cause) in first.split(":")[0], (first, cause)
    look = next(line for line in out.splitlines()[out.splitlines().index(first):] if "look at " in line)
    assert f"{name}, line " in look, look  # a line of the engine's own file
    if json_path.exists():
        import json

        from compare import load_report

        data = json.loads(json_path.read_text())
        assert data["cause"].startswith(f"{title(cause)}: ") and f"{name}, line " in data["cause"], data["cause"]
        if data["verdict"] == "DISAGREE":
            assert load_report(json_path).causes[0].name == cause
        else:  # an engine stopped mid-step: the summary alone
            assert data["verdict"] == "ERROR" and "report" not in data
            with pytest.raises(ValueError, match="holds no report"):
                load_report(json_path)


def test_a_training_script_with_its_data_loads_without_training_or_writing(tmp_path, monkeypatch, capsys):
    """The original program's shape with input.txt beside it: the data is read, the
    vocabulary and parameters made; the log file is refused and the training and sampling
    loops are stopped at their time budget, so nothing is written and no log is shown."""
    shutil.copy(ENGINES / "script_with_data.py", tmp_path / "train.py")
    (tmp_path / "input.txt").write_text("emma\nolivia\nava\nisabella\nsophia\n")
    monkeypatch.chdir(tmp_path)
    code = main(["--engine", "train.py", *SMALL])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert verdict_of(out).startswith("AGREE") and "step    1 / 1000" not in out and "sample" not in out.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt", "train.py"]
    skipped = {int(line.split(":")[0].split()[-1]): line for line in out.splitlines()
               if line.startswith("           line ")}
    assert "writes a file (losses.csv)" in skipped[78]
    assert "still running after 1 s" in skipped[93]  # 1,000 training steps
    assert set(skipped) <= {78, 93, 105}  # the sampling loop too, if it takes a second


def test_an_engine_without_the_reflected_forms_agrees_on_what_it_has_and_names_the_rest(capsys):
    assert main(["--engine", str(ENGINES / "without_reflected.py"), *SMALL]) == 0
    out = capsys.readouterr().out
    assert verdict_of(out).endswith("; not checked: 2.0 - a (no __rsub__), 2.0 / a (no __rtruediv__).")
    assert "NOT CHECKED  -: 2.0 - a (no __rsub__; 2.0 - a is 2.0 + (-a): d/da = -1; e.g. def __rsub__(self, other): " \
           "return other + (-self))" in out
    assert "NOT CHECKED  /: 2.0 / a (no __rtruediv__; " in out


def test_a_name_error_for_a_name_the_loader_skipped_says_which_line_and_why(tmp_path, capsys):
    """exp reads a constant its file computes from a file that is not there: the probes of exp
    fail with NameError, and the report says which skipped line defines the name."""
    source = (ENGINES / "local_gradients.py").read_text()
    source = source.replace("import math\n", "import math\n\nE_SCALE = float(open('scale.txt').read())\n", 1)
    source = source.replace("return Value(math.exp(self.data), (self,), (math.exp(self.data),))",
                            "return Value(E_SCALE * math.exp(self.data), (self,), (math.exp(self.data),))")
    assert "E_SCALE * math.exp" in source
    (tmp_path / "engine.py").write_text(source)
    assert main(["--engine", str(tmp_path / "engine.py"), *SMALL]) == 1
    out = capsys.readouterr().out
    line = source.splitlines().index("E_SCALE = float(open('scale.txt').read())") + 1
    assert f"line {line}: E_SCALE = float(open('scale.txt').read())  (FileNotFoundError" in out
    wrong = next(line for line in out.splitlines() if line.startswith("    WRONG        exp: "))
    assert f"raised NameError: name 'E_SCALE' is not defined (line {line}, which defines it, was skipped while " \
           "loading: FileNotFoundError" in wrong


def test_a_backward_without_a_visited_set_is_stopped_by_its_own_speed_at_the_default_settings(capsys, tmp_path):
    """At the default model and limits, the step of an engine that walks every path is stopped
    at a limit set from its measured speed, well inside a minute, not the 300 s of --timeout;
    the probe table and the cause are printed first. It also gets what its docstring expects."""
    got = main(["--engine", str(ENGINES / AT_DEFAULT_SETTINGS), "--json", str(tmp_path / "report.json")])
    out, err = capsys.readouterr()
    assert_as_expected(AT_DEFAULT_SETTINGS, got, out, err, tmp_path / "report.json")
    assert got == 1
    assert out.startswith("  operators, each alone")
    assert "  cause    no visited set: " in out
    assert err.count("\n") == 1 and "did not finish training step 1 within " in err, err
    limit = float(re.search(r"within ([\d.]+) s", err).group(1))
    assert limit <= 60 and "its backward walks every path" in err, err


def test_a_steps_time_limit_follows_the_engines_measured_speed():
    """20x the predicted time, never under the floor; 3x (at least 5 s) when the probes saw a
    walk over every path; none of its own when the speed is unknown."""
    from compare.engine.reader import EVERY_PATH_FLOOR, STEP_FACTOR, STEP_FLOOR, ScalarReader

    scalar = ScalarReader(process=None, found={"chain": None, "speed": {"per_node": 1e-5, "growth": 1.0, "nodes": 1}})
    scalar.nodes = 1_000_000  # a predicted 10 s a pass
    limit, why, predicted = scalar.limit(1.0)
    assert predicted == pytest.approx(10.0) and limit == pytest.approx(STEP_FACTOR * 10.0) and "20x" in why
    scalar.nodes = 1_000  # a predicted 0.01 s: the floor holds
    assert scalar.limit(1.0)[0] == STEP_FLOOR
    scalar.every_path = True
    assert scalar.limit(1.0)[0] == EVERY_PATH_FLOOR and "walks every path" in scalar.limit(1.0)[1]
    scalar.nodes = 1_000_000
    assert scalar.limit(1.0)[0] == pytest.approx(30.0)
    assert ScalarReader(process=None, found={"chain": None}).limit(1.0) == (None, "", None)


def test_the_engines_process_reports_the_models_graph_size_and_layer_count_each_in_its_own_field():
    """The step's time limit is the graph's node count times the engine's speed: the message
    from the engine's process must carry the count as `nodes` and the layers as `n_layer`
    (the two swapped made every limit the floor)."""
    from compare.engine.depth import model_depth
    from compare.engine.protocol import Depth, decode, encode
    from compare.step.weights import load_weights
    from compare.engine.runner import model_depths
    from microgpt_scalar.config import get_config

    start = load_weights("dense", get_config("microgpt", n_layer=2), list("abcdefghijklmnopqrstuvwxyz"), 42)
    batch = [[26, 1, 2, 3, 26], [26, 4, 5, 26]]
    message = decode(encode(model_depths(start, batch, limited=False)), Depth)
    graph, _, nodes = model_depth(start.config, start.params, batch, limited=False)
    assert (message.n_layer, message.graph, message.nodes) == (2, graph, nodes)
    assert message.nodes > 1000 * message.n_layer  # a step's graph: thousands of nodes a layer
