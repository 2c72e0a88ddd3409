"""The comparison of the scalar engine with torch, end to end: compare_step and its script.

Oracles: torch (the comparison itself), the published losses of the reference program, and
docs/reference.md's account of which gradients are zero at initialisation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import subprocess
import sys

import pytest
import reference
import torch
from helpers import REPO, load_script
from helpers import verdict_of

from compare import compare_step, load_report, save_report
from compare.check import run_sides
from compare.engine.reader import InProcessEngine, ScalarReader
from compare.engine.runner import STEP_SIZE
from compare.judge.fd import FiniteDifference, FiniteDifferenceCheck
from compare.judge.step import Coverage
from compare.judge.tolerances import FD_TOLERANCE as TOLERANCE, TOLERANCES
from compare.report.render import render
from compare.report.saved import from_dict, to_dict
from compare.report.summary import SUMMARY_KEYS
from compare.step.documents import ALPHABET, given_documents
from compare.step.weights import dense_weights
from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam


main = load_script("compare_step").main  # the script's main(argv), run in this process

# docs/reference.md, "Published output": the first two losses of microgpt on names.txt, seed 42.
PUBLISHED_FIRST_LOSSES = reference.published("microgpt").first_losses
# docs/reference.md: at step 0 under the microgpt preset these gradients are zero in any engine.
ZERO_AT_REFERENCE_START = ["layer0.attn_wq", "layer0.attn_wk", "layer0.attn_wv", "layer0.mlp_fc1"]
# A disagreeing report with finite differences (exp-forward, fd 2, the document "emma"), saved by
# the checker at version 2 of the format, and the text that checker rendered from it.
V2_REPORT = REPO / "tests" / "fixtures" / "compare_report_v2.json"
V2_TEXT = REPO / "tests" / "fixtures" / "compare_report_v2.txt"


@pytest.fixture(scope="module")
def default_report():
    return compare_step()


HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def emma_run(tmp_path_factory):
    """(exit code, stdout, the JSON report's path, the plot's path) of the script on the document
    "emma", writing its JSON report and, where matplotlib is installed, its plot: one run, read
    by the tests of each."""
    folder = tmp_path_factory.mktemp("emma")
    path, plot, out = folder / "report.json", folder / "gradients.png", io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--doc", "emma", "--json", str(path), *(["--plot", str(plot)] if HAVE_MATPLOTLIB else [])])
    return code, out.getvalue(), path, plot


def run_main(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors end this way
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_default_run_agrees_with_torch_on_every_one_of_4064_gradients(default_report):
    report = default_report
    assert report.agrees
    assert report.settings.num_params == 4064
    assert report.focus.coverage.total == 4064
    assert report.focus.coverage.nonzero == 4064  # dense weights, and the built-in names reach every row
    assert report.focus.coverage.zero_tensors == []
    assert report.focus.divergence is None


def test_script_with_no_arguments_runs_offline_and_prints_the_probes_then_the_verdict(repo_root):
    result = subprocess.run([sys.executable, str(repo_root / "scripts" / "compare_step.py")],
                            capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("  operators, each alone") and verdict_of(result.stdout).startswith("AGREE")
    assert lines.index(verdict_of(result.stdout)) < next(i for i, line in enumerate(lines) if "coverage" in line)
    assert len(lines) < 40  # one screen
    assert "4,064 of 4,064 gradients are non-zero" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("weights", ["reference", "dense"])
def test_preset_microgpt_v2_agrees_with_torch(weights):
    report = compare_step(preset="microgpt-v2", weights=weights)
    assert report.agrees
    assert report.settings.num_params == 4064 + 8 * 16  # block_size 16: eight more rows of wpe
    assert report.focus.coverage.zero_tensors == []  # v2 draws attn_wo and mlp_fc2 from gauss(0, 0.08)


def test_reference_weights_at_step_zero_warn_that_four_tensors_went_unchecked(capsys):
    code, out, _ = run_main(capsys, "--weights", "reference")
    assert code == 0
    assert "WARNING" in out and "proves nothing" in out
    for name in ZERO_AT_REFERENCE_START:
        assert name in out.split("WARNING")[1]
    assert verdict_of(out).startswith("AGREE") and "coverage WARNING" in verdict_of(out)


def test_reference_weights_show_every_tensor_from_the_second_step_on():
    report = compare_step(weights="reference", steps=2)
    assert report.agrees
    assert report.focus.coverage.zero_tensors == []  # attn_wo and mlp_fc2 have left zero after step 1


def test_lockstep_reproduces_the_published_run_for_20_steps(names_path):
    report = compare_step(weights="reference", data=str(names_path), seed=42, steps=20)
    assert report.agrees, [step for step in report.losses if not step.agrees]
    assert [f"{step.scalar:.4f}" for step in report.losses[:2]] == PUBLISHED_FIRST_LOSSES
    assert [f"{step.torch:.4f}" for step in report.losses[:2]] == PUBLISHED_FIRST_LOSSES
    assert len(report.losses) == 20 and all(d.agrees for d in report.final_parameters)


def test_json_report_round_trips(tmp_path, default_report):
    path = tmp_path / "report.json"
    save_report(path, default_report, values=True)
    assert load_report(path) == default_report
    assert from_dict(to_dict(default_report, values=True)) == default_report
    small = from_dict(to_dict(default_report))  # without every gradient's value: the rest is whole
    assert small.gradient_values == {} and dataclasses.replace(small, gradient_values=default_report.gradient_values) \
        == default_report


def test_reports_written_by_earlier_versions_still_load_and_read_the_same():
    """A report saved at version 2 (the focus step's tables at the report's top level), by the
    checker of that version, with the text that checker rendered from it; and version 1 (the
    same report without the summary)."""
    written = json.loads(V2_REPORT.read_text())
    assert written["version"] == 2 and written["report"]["finite_differences"] and written["report"]["divergence"]
    loaded = load_report(V2_REPORT)
    assert render(loaded) == V2_TEXT.read_text()
    assert {key: to_dict(loaded)[key] for key in SUMMARY_KEYS} == {key: written[key] for key in SUMMARY_KEYS}
    assert loaded.focus.coverage == Coverage(**written["report"]["coverage"])
    assert from_dict({"format": written["format"], "version": 1, **written["report"]}) == loaded
    assert from_dict(to_dict(loaded)) == loaded  # and saved again at this version


def test_a_report_of_another_format_is_refused(default_report):
    with pytest.raises(ValueError, match="not a microgpt-compare-report of version 1 to 3"):
        from_dict({**to_dict(default_report), "version": 4})
    with pytest.raises(ValueError, match="not a microgpt-compare-report"):
        from_dict({"format": "microgpt-checkpoint", "version": 1})


def test_finite_differences_alone_can_make_the_report_disagree(default_report):
    """Torch and the engine may agree on a gradient that both get wrong; the third witness
    still sinks the verdict, and the report says it was the one."""
    wrong = FiniteDifferenceCheck(STEP_SIZE, TOLERANCE, [FiniteDifference("wte", [0, 0], 0.1, 0.2, False)])
    report = dataclasses.replace(default_report, finite_differences=wrong)
    assert default_report.agrees and not report.agrees
    assert verdict_of(render(report)).startswith("DISAGREE") and "finite differences disagree" in render(report)


def test_script_writes_the_json_report(emma_run):
    code, _, path, _ = emma_run
    report = load_report(path)
    assert code == 0 and report.agrees and report.settings.docs == ["emma"]


def test_float32_drifts_past_float64_tolerance_and_the_report_says_so(capsys, tmp_path):
    path = tmp_path / "report.json"
    code, out, _ = run_main(capsys, "--dtype", "float32", "--doc", "jacqueline", "--doc", "maxwell",
                            "--json", str(path))
    assert code == 0
    assert "torch ran in float32" in out and "expected, not a bug" in out
    report = load_report(path)  # the run's own report
    assert report.settings.dtype == "float32" and report.settings.docs == ["jacqueline", "maxwell"]
    float64_gradients = TOLERANCES["float64"].gradients
    drift = max(d.max_abs / float64_gradients.allowed(1.0) for d in report.focus.gradients)
    assert drift > 1  # float32 would fail the float64 check: the wider tolerance is needed


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; test_cuda_agrees runs instead")
def test_cuda_absent_is_a_one_line_error(capsys):
    code, out, err = run_main(capsys, "--device", "cuda")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "CUDA" in err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees():
    report = compare_step(device="cuda")
    assert report.agrees


BAD_INPUTS = {
    "unknown preset": ["--preset", "gpt-5"],
    "missing data file": ["--data", "no/such/names.txt"],
    "character outside the vocabulary": ["--doc", "zoë"],
    "uppercase document": ["--doc", "Emma"],
    "engine file not found": ["--engine", "no/such/engine.py"],
    "missing class": ["--engine", "tests/fixtures/learner_engine.py:Scalar"],
    "unknown fault": ["--inject", "off-by-one"],
    "engine and fault together": ["--engine", "tests/fixtures/learner_engine.py", "--inject", "mul-grad"],
    "doc and data together": ["--doc", "emma", "--data", "names.txt"],
    "no steps": ["--steps", "0"],
    "negative fd": ["--fd", "-1"],
    "unknown dtype": ["--dtype", "float16"],
    "unknown device": ["--device", "tpu"],
    "weights neither a choice nor a file": ["--weights", "zeros"],
    "not a number": ["--steps", "many"],
}


@pytest.mark.parametrize("argv", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exits_2_with_one_line(capsys, monkeypatch, repo_root, argv):
    monkeypatch.chdir(repo_root)
    code, out, err = run_main(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_bad_engine_file_exits_2_with_one_line(tmp_path, capsys):
    broken = tmp_path / "engine.py"
    broken.write_text("class Value:\n    def __add__(self, other)\n")  # a syntax error
    code, _, err = run_main(capsys, "--engine", str(broken))
    assert code == 2 and len(err.splitlines()) == 1 and "SyntaxError" in err


def test_unreadable_checkpoint_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text("{not json")
    code, _, err = run_main(capsys, "--weights", str(path))
    assert code == 2 and len(err.splitlines()) == 1


def test_plot_without_matplotlib_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, out, err = run_main(capsys, "--plot", "gradients.png")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "matplotlib" in err


@pytest.mark.skipif(not HAVE_MATPLOTLIB,
                    reason="matplotlib is an optional extra (pip install -e .[plot]) and is not installed")
def test_plot_writes_a_png(emma_run):
    code, _, _, path = emma_run
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_wrong_adam_update_is_caught_after_right_gradients(emma_run):
    """The update's own check: gradients agree, so the report must blame the parameters."""

    class AdamWithoutBiasCorrection(Adam):
        def step(self, lr, step):
            super().step(lr * (1 - self.beta1 ** (step + 1)), step)  # as if m_hat were m: lr too small

    settings = load_report(emma_run[2]).settings  # what the run on "emma" records about itself
    start = dense_weights(get_config(), ALPHABET, settings.seed)
    source = InProcessEngine(Value, AdamWithoutBiasCorrection)
    report = run_sides(start, given_documents(["emma"]), settings, ScalarReader(source, source.engine()), fd=0)
    assert all(d.agrees for d in report.focus.gradients) and report.focus.loss.agrees
    assert not any(d.agrees for d in report.focus.parameters)
    assert not report.agrees


def test_lockstep_reports_the_loss_of_every_step_and_catches_a_late_difference():
    report = compare_step(inject="grad-not-reset", steps=3, docs=["emma", "olivia"])
    assert [step.agrees for step in report.losses] == [True, True, False]  # step 2's update was wrong
    assert not all(d.agrees for d in report.final_parameters)


def test_json_round_trips_a_disagreeing_report_with_finite_differences(tmp_path):
    report = compare_step(inject="exp-forward", fd=2, docs=["emma"])
    assert report.focus.divergence is not None and report.finite_differences is not None
    save_report(tmp_path / "r.json", report, values=True)
    assert load_report(tmp_path / "r.json") == report
