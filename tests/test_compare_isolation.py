"""A learner's file as it is, run in a process of its own: compare_step.py and certify.py end
to end on engines written the way learners write them, and on engines that misbehave.

Oracles: torch (through the comparison), the golden trace (through the certificate), and
the files and output the engines would leave behind if their code at import had run.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import sys

import pytest
from helpers import REPO, load_script, replace_once, verdict_of

from compare.engine.loader import load_engine
from microgpt_scalar.config import get_config, num_params

compare_main = load_script("compare_step").main
certify_main = load_script("certify").main
ENGINES = REPO / "tests" / "engines"
ONE_DOC = ("--doc", "emma")  # where loading, not training, is what a test checks: a shorter step


def run(main, capsys, *argv):
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def certify_argv(names_path, engine, *more):
    return ["--engine", ENGINES / engine, "--data", names_path, "--steps", 1, *more]


# --- right in any style: exit 0 --------------------------------------------------------------

@pytest.fixture(scope="module")
def compared():
    """compared(engine): (exit code, stdout, stderr) of `compare_step.py --engine ENGINE` on
    a file of tests/engines, run once for all the tests that read it."""
    runs = {}

    def run_once(engine: str):
        if engine not in runs:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = compare_main(["--engine", str(ENGINES / engine)])
            runs[engine] = code, out.getvalue(), err.getvalue()
        return runs[engine]

    return run_once


@pytest.mark.parametrize("engine", ["closures.py", "local_gradients.py", "numpy_scalars.py", "dict_graph.py"])
def test_correct_engines_of_every_style_agree(engine, compared):
    code, out, err = compared(engine)
    assert code == 0, out + err
    assert verdict_of(out).startswith("AGREE") and err == ""


def test_a_recursive_backward_agrees_on_the_default_model_and_the_report_gives_its_limit(compared):
    code, out, _ = compared("local_gradients.py")
    assert code == 0
    assert "the model's graph is 263 nodes deep (1 layer)" in out
    assert "backward fails with RecursionError on" in out and "models of up to about 4 layers are safe" in out


def test_relu_derivative_of_1_at_0_agrees_with_a_note(compared):
    code, out, _ = compared("closures.py")
    assert code == 0
    assert "note         relu: relu(a) at a = 0: d/da expected 0.0, got 1.0" in out


# --- the files learners have --------------------------------------------------------------------

def test_a_training_script_without_a_main_guard_is_loaded_without_running_it(tmp_path, monkeypatch, capsys):
    """Run offline in an empty folder: had its code at import run unguarded, it would try to
    download input.txt (and fail), print its training log and write trained.txt. Each
    statement that tries one of those is skipped and listed; the rest runs."""
    shutil.copy(ENGINES / "training_script.py", tmp_path / "train.py")
    monkeypatch.chdir(tmp_path)  # the engine's process inherits the folder and the unreachable proxies
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    code, out, err = run(compare_main, capsys, "--engine", "train.py")
    assert code == 0, out + err
    assert verdict_of(out).startswith("AGREE") and err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]  # nothing downloaded or written
    assert "step    1 / 500" not in out
    lines = out.splitlines()
    assert lines[0].startswith("  skipped  ") and '`if __name__ == "__main__":`' in lines[0]
    skipped = {int(line.split(":")[0].split()[-1]): line for line in lines[1:] if line.startswith("           line ")}
    source = (ENGINES / "training_script.py").read_text().splitlines()

    def line_of(text: str) -> int:
        return next(number for number, line in enumerate(source, 1) if line.startswith(text))

    fetch, read, train, write = (line_of('if not os.path.exists("input.txt"):'), line_of("docs = [line.strip()"),
                                 line_of("for step in range("), line_of('with open("trained.txt", "w")'))
    assert skipped[fetch].startswith(f'           line {fetch}: if not os.path.exists("input.txt"):  (reaches the '
                                     f'network (socket.')
    assert skipped[read].startswith(f'           line {read}: docs = [line.strip() for line in open("input.txt") if '
                                    f'line.strip()]  (FileNotFoundError')
    assert skipped[write] == f'           line {write}: with open("trained.txt", "w") as f:  (writes a file (trained.txt))'
    assert set(skipped) - {fetch, read, write} <= {train}  # its 500 toy steps run, unless a busy machine makes them pass 1 s
    assert "still running after 1 s" in skipped.get(train, "still running after 1 s")


def test_a_file_that_parses_its_command_line_at_import_loads(capsys):
    code, out, err = run(compare_main, capsys, "--engine", ENGINES / "argparse_at_import.py", *ONE_DOC)
    assert code == 0, out + err
    assert "unrecognized arguments" not in out + err


def test_a_file_importing_a_module_beside_it_loads(capsys):
    code, out, err = run(compare_main, capsys, "--engine", ENGINES / "sibling" / "engine.py", *ONE_DOC)
    assert code == 0, out + err


def test_a_recursion_limit_lowered_at_import_is_put_back():
    """Its helper module sets the limit to 120; the model's graph is 263 deep, so its
    recursive backward would fail in any later step if the limit stayed."""
    before = sys.getrecursionlimit()
    load_engine(str(ENGINES / "lowers_limit" / "engine.py"))
    assert sys.getrecursionlimit() == before
    assert before > 300


def test_lowered_recursion_limit_does_not_reach_the_step(capsys):
    code, out, err = run(compare_main, capsys, "--engine", ENGINES / "lowers_limit" / "engine.py", *ONE_DOC)
    assert code == 0, out + err


def test_a_refusal_names_every_missing_operation_and_probes_the_rest(capsys):
    code, out, err = run(compare_main, capsys, "--engine", ENGINES / "without_log_exp.py")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: class Value in ")
    assert "lacks what the transformer needs: log (" in err and "; exp (" in err
    assert "d log(a)/da = 1 / a" in err and "d exp(a)/da = exp(a)" in err
    assert "return Value(math.log(self.data), (self,), (1 / self.data,))" in err  # its own style: tuples
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ok "))
    ok_line = " ".join([lines[start]] + [line for line in lines[start + 1:] if line.startswith(" " * 17)][:1])
    assert ok_line.split("ok", 1)[1].split() == ["+", "-", "*", "/", "neg", "**", "relu", "+=", "-=", "*=", "/=",
                                                 "same", "node", "twice", "two", "paths", "chain", "many", "paths",
                                                 "equal", "values", "backward", "twice", "fresh", "node"]
    assert "NOT CHECKED  two paths: c * a + exp(c), c = a * b (no exp" in out  # its other probe needs no exp
    assert "NOT CHECKED  log: log(a) (no log; d log(a)/da = 1 / a" in out and "NOT CHECKED  exp: exp(a), exp(a) (no exp" in out


def test_a_refusal_gives_templates_in_micrograds_style_for_a_closure_engine(tmp_path, capsys):
    source = (ENGINES / "closures.py").read_text()
    start, end = source.index("    def log(self):"), source.index("    def backward(self):")
    (tmp_path / "engine.py").write_text(source[:start] + source[end:])
    code, _, err = run(compare_main, capsys, "--engine", tmp_path / "engine.py")
    assert code == 2
    assert "with a _backward that does self.grad += out.grad / self.data" in err


# --- misbehaving engines: one line, non-zero ----------------------------------------------------

# name -> (a module to import, the line backward runs once its topological sort is built,
# what the one-line error must say, whether the probes finished so that their table is
# printed before it): each a right engine (local_gradients.py) with that line.
MISBEHAVING = {
    "exits_in_backward": ("sys", "sys.exit(0)", "called sys.exit(0) while loading and probing its operations", False),
    "exits_on_big_graphs": ("sys", "if len(topo) > 30_000:  # only a graph as big as the model's\n            sys.exit(0)",
                            "called sys.exit(0) while training step 1", True),
    "os_exit_in_backward": ("os", "os._exit(0)", "it exited with code 0", False),
    "segfault": ("ctypes", "ctypes.string_at(0)  # reads memory at address 0", "it crashed with SIGSEGV", False),
    "endless_loop": ("sys", "while True:\n            pass",
                     "did not finish a + b at a = 1.5, b = -2.5 within 2 s, a graph of a few nodes", True),
}


def misbehaving_engine(tmp_path, name: str):
    """local_gradients.py with one line more in backward, written to tmp_path/{name}.py."""
    module, line, _, _ = MISBEHAVING[name]
    source = (ENGINES / "local_gradients.py").read_text()
    source = replace_once(source, "\nimport math\n", f"\nimport math\nimport {module}\n")
    source = replace_once(source, "        build_topo(self)\n", f"        build_topo(self)\n        {line}\n")
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return path


@pytest.mark.parametrize("engine", MISBEHAVING)
def test_an_engine_that_exits_crashes_or_hangs_is_one_line_and_exit_1_in_compare_step(engine, capsys, tmp_path):
    path = misbehaving_engine(tmp_path, engine)
    code, out, err = run(compare_main, capsys, "--engine", path, "--timeout", 3)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(f"error: the scalar engine ({path}) ")
    said = MISBEHAVING[engine][2]
    if engine == "endless_loop":  # on a busy machine the 3 s limit can pass before the 2 s probe's stop comes back
        said = said if said in err else "did not finish loading and probing its operations within 3 s"
    assert said in err
    if MISBEHAVING[engine][3] and (out or engine != "endless_loop"):  # what the probes found is printed all the same
        assert out.startswith("  operators, each alone against torch float64")
    else:
        assert out == ""


@pytest.mark.parametrize("engine", MISBEHAVING)
def test_an_engine_that_exits_crashes_or_hangs_is_one_line_and_exit_1_in_certify(engine, names_path, capsys,
                                                                                 tmp_path):
    path = misbehaving_engine(tmp_path, engine)
    code, out, err = run(certify_main, capsys, *certify_argv(names_path, path, "--timeout", 3))
    assert code == 1
    assert "PASS" not in out
    said = MISBEHAVING[engine][2].replace("training step 1", "training step")
    if engine == "endless_loop":  # on a busy machine the 3 s limit can pass before the 2 s probe's stop comes back
        said = said if said in err else "did not finish loading and probing its operations within 3 s"
    assert err.count("\n") == 1 and said in err


@pytest.mark.parametrize("engine, changed", [
    ("patches_compare.py", "compare.engine.probes.run_probes"),  # every report and probe check agrees, no probe runs
    ("patches_its_side.py", "compare.step.scalar.ScalarSide.__init__"),  # the project's engine trains instead
])
def test_an_engine_that_changes_the_checkers_code_is_one_line_and_exit_1(capsys, names_path, engine, changed):
    for main, argv in ((compare_main, ["--engine", ENGINES / engine]),
                       (certify_main, certify_argv(names_path, engine))):
        code, out, err = run(main, capsys, *argv)
        assert code == 1 and "AGREE" not in out and "PASS" not in out
        assert err.count("\n") == 1 and f"changed the checker's own code ({changed})" in err


def test_certify_fails_an_engine_whose_only_mistake_is_a_probe(tmp_path, names_path, capsys):
    """2.0 - a computed as a - 2.0: the published run never subtracts a Value from a number."""
    source = (ENGINES / "local_gradients.py").read_text().replace(
        "    def __rsub__(self, other):\n        return other + (-self)", "    def __rsub__(self, other):\n        return self - other")
    (tmp_path / "engine.py").write_text(source)
    code, out, _ = run(certify_main, capsys, "--engine", tmp_path / "engine.py", "--data", names_path, "--steps", 2)
    assert code == 1
    assert "WRONG        -: 2.0 - a at a = 1.5: value expected 0.5, got -0.5" in out
    assert out.splitlines()[-1].startswith("FAIL: the training log matches, but 1 operator probe fails (-): 2.0 - a")


# --- deeper models -----------------------------------------------------------------------------

def test_depth_flags_check_a_deeper_model_and_the_report_says_how_deep(tmp_path, capsys):
    path = tmp_path / "report.json"
    code, out, _ = run(compare_main, capsys, "--n-layer", 2, "--block-size", 4, "--json", path, *ONE_DOC)
    assert code == 0
    expected = num_params(get_config(n_layer=2, block_size=4, vocab_size=27))
    assert f"preset microgpt, n_layer 2, block_size 4, {expected:,} parameters" in out
    assert "nodes deep (2 layers)" in out


def test_a_recursive_backward_on_a_model_too_deep_for_it_is_a_recursion_error(capsys):
    code, out, err = run(compare_main, capsys, "--engine", ENGINES / "local_gradients.py", "--n-layer", 8,
                         "--doc", "emma")  # one document: the graph as deep, the step shorter
    assert code == 1 and out.startswith("  operators, each alone")  # the probes pass, and say so
    assert err.count("\n") == 1 and "raised RecursionError while training step 1" in err
    assert "recurses once per node" in err
    assert "  cause    recursion depth: backward's topological sort recurses once per node" in out
    assert "look at " in out and "build_topo" in out


def test_certify_checks_a_deeper_model_against_the_project_engine(names_path, capsys):
    code, out, err = run(certify_main, capsys, *certify_argv(names_path, "closures.py", "--n-layer", 2))
    assert code == 0, out + err
    assert out.splitlines()[-1].startswith("PASS")
    code, out, err = run(certify_main, capsys, *certify_argv(names_path, "local_gradients.py", "--n-layer", 8))
    assert code == 1 and "raised RecursionError" in err


def test_bad_flags_are_refused_before_an_engine_is_started(capsys):
    for argv, words in ((["--n-layer", "0"], "--n-layer"), (["--timeout", "0"], "--timeout"),
                        (["--engine", "x.py", "--inject", "rsub"], "cannot be combined")):
        code, out, err = run(compare_main, capsys, *argv)
        assert (code, out) == (2, "") and err.startswith("error: ") and words in err
