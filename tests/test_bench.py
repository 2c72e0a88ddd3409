"""The benchmark's sections as smoke tests on tiny settings: each writes the expected
figures, and each correctness check fails on a differing input. The scalar section's log
check passes identical logs and fails on differing ones (fed directly, and from an engine
made to train differently); the torch section fails when the torch model trains
differently; the compare section fails when the comparison it times disagrees. No timing
is asserted here: the speed targets live in the benchmark's own report.

    pytest tests/test_bench.py
"""
from __future__ import annotations

import gc
import importlib.util
import json
import sys

import pytest

import microgpt_torch.model
from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.engine import Value
from microgpt_scalar.fused import FusedDot, FusedValue
from microgpt_scalar.train import start_run, train_step


@pytest.fixture(scope="module")
def bench(repo_root):
    spec = importlib.util.spec_from_file_location("bench", repo_root / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench"]


def run_bench(bench, names_path, out, *flags) -> int:
    return bench.main(["--only", "scalar", "--preset", "microgpt", "--data", str(names_path), "--out", str(out),
                       "--scalar-steps", "2", "--scalar-memory-steps", "1", *flags])


def test_scalar_section_writes_every_figure_and_keeps_other_sections(bench, names_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"sections": {"torch": {"kept": True}}}))
    assert run_bench(bench, names_path, out) == 0
    results = json.loads(out.read_text())
    assert results["sections"]["torch"] == {"kept": True}
    scalar = results["sections"]["scalar"]
    assert {"python", "platform", "cpu_count", "date"} <= set(scalar["machine"])
    preset = scalar["presets"]["microgpt"]
    assert preset["steps"] == 2 and preset["logs_identical"] is True
    assert preset["log_tail"][-1].startswith("step    2 /  500 | loss ")
    engines = preset["engines"]
    assert list(engines) == ["plain", "per-op", "fused"]
    for figures in engines.values():
        assert {"wall_s_per_step", "cpu_s_per_step", "speedup_cpu", "speedup_wall", "nodes_per_step",
                "step_peak_mib", "drift_mib"} <= set(figures)
        assert figures["cpu_s_per_step"] > 0 and figures["step_peak_mib"] > 0
        assert len(figures["retained_mib"]) == 1
    # plain and per-op build the same graph; the fused one has far fewer nodes
    assert engines["plain"]["nodes_per_step"] == engines["per-op"]["nodes_per_step"] > 50_000
    assert engines["fused"]["nodes_per_step"] < engines["per-op"]["nodes_per_step"] / 4
    assert set(preset["targets"]) == {"per-op", "fused"}
    table = capsys.readouterr().out
    assert "per-op" in table and "fused" in table and "training logs identical: yes" in table


def test_log_check_passes_identical_logs_and_names_the_first_difference(bench):
    log = ["step    1 /  500 | loss 3.3630", "step    2 /  500 | loss 3.2917"]
    bench.check_logs_identical({"plain": log, "per-op": list(log), "fused": list(log)})
    with pytest.raises(bench.CheckFailed, match=r"fused's log differs from plain's at line 2"):
        bench.check_logs_identical({"plain": log, "per-op": list(log), "fused": [log[0], "step    2 /  500 | loss 3.2918"]})
    with pytest.raises(bench.CheckFailed, match=r"per-op logged 1 lines"):
        bench.check_logs_identical({"plain": log, "per-op": log[:1], "fused": list(log)})


def wrong_gradients(self):
    """A FusedDot backward with b's local derivative doubled."""
    for j in range(len(self._children) - 2, -1, -2):
        a_j, b_j = self._children[j], self._children[j + 1]
        a_j.grad += b_j.data * self.grad
        b_j.grad += 2 * a_j.data * self.grad


def test_bench_fails_when_an_engine_trains_differently(bench, names_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(FusedDot, "_backward", wrong_gradients)
    out = tmp_path / "bench.json"
    assert run_bench(bench, names_path, out) == 1
    assert "log differs" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("value_cls", [Value, FusedValue], ids=["per-op", "fused"])
def test_no_collection_during_a_training_step_scans_its_graph(names_path, value_cls):
    """`train_step` drops its graph before the collector resumes. Were the graph still alive
    then, the collector's next allocation would start a collection that scans all of it (a
    third of a per-op step's time, which the benchmark would show). The collector's own
    callbacks are the oracle: they report each collection and what it is about to scan."""
    docs, tokenizer, model, optimizer, _ = start_run(load_docs(names_path), get_config("microgpt"), 42, value_cls)
    scanned = []

    def note_scanned(phase, info):
        if phase == "start":
            scanned.append(sum(len(gc.get_objects(generation=g)) for g in range(info["generation"] + 1)))

    gc.collect()
    gc.callbacks.append(note_scanned)
    try:
        for step in range(3):
            train_step(model, optimizer, tokenizer.encode(docs[step]), step)
    finally:
        gc.callbacks.remove(note_scanned)
    # A step's graph is over 10,000 objects (fused) or 130,000 (per-op), and a collection
    # started while it lives scans them all; with the graph gone, one scans a handful
    # (measured: 6 or 7).
    assert all(n < 1_000 for n in scanned), scanned


def run_torch_section(bench, names_path, out) -> int:
    return bench.main(["--only", "torch", "--data", str(names_path), "--out", str(out), "--faithful-steps", "5",
                       "--plain-sample", "2", "--batch-sizes", "16", "--threads", "1", "--no-compile", "--windows", "2",
                       "--window-seconds", "0.05", "--train-seconds", "0.2", "--train-batch-size", "16"])


def test_torch_section_writes_every_figure(bench, names_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run_torch_section(bench, names_path, out) == 0
    figures = json.loads(out.read_text())["sections"]["torch"]
    assert "omp_wait_policy" in figures and "cpu_model" in figures["machine"]
    faithful = figures["faithful"]
    assert faithful["steps"] == 5 and faithful["logs_identical"] is True
    assert faithful["log_tail"][-1].startswith("step    5 /    5 | loss ")
    assert 0 <= faithful["max_loss_diff_vs_scalar"] < 1e-12  # float64 rounding; a wrong model is off by 1e-2
    assert list(faithful["engines"]) == ["per-op", "fused", "torch", "plain"]
    for engine in faithful["engines"].values():
        assert {"wall_s", "cpu_s", "torch_speedup_cpu", "torch_speedup_wall", "measured"} <= set(engine)
    assert faithful["engines"]["plain"]["measured"] == "extrapolated from 2 of 5 steps"
    assert set(faithful["targets"]) == {"per-op", "fused"}
    # The scalar engine's weights and the faithful torch run's: the same training, float64 rounding apart.
    assert faithful["val_loss_scalar_weights"] == pytest.approx(faithful["val_loss_torch_weights"], abs=1e-9)
    shuffled, grouped = figures["throughput"]["rows"]
    for row, grouped_by_length in ((shuffled, False), (grouped, True)):
        assert (row["batch_size"], row["compiled"], row["grouped_by_length"], row["threads"], row["compile_s"]) == \
               (16, False, grouped_by_length, 1, None)
        assert 0 < row["tokens_per_s"] <= row["padded_positions_per_s"] and len(row["windows"]) == 2
    padding = [1 - row["tokens_per_s"] / row["padded_positions_per_s"] for row in (shuffled, grouped)]
    assert padding[0] > 0.05 and padding[1] < padding[0] / 2  # the grouped batches' padding is counted as such
    assert set(figures["throughput"]["target"]) == {"tokens_per_s_at_least", "met"}
    budget = figures["time_budget"]
    assert (budget["batch_size"], budget["compiled"], budget["threads"]) == (16, False, 1)
    assert 1 <= budget["steps"] <= budget["planned_steps"] and budget["val_loss"] > 0
    assert budget["val_loss_scalar_weights"] == faithful["val_loss_scalar_weights"]
    table = capsys.readouterr().out
    assert "printed logs identical: yes" in table and "tokens/s" in table and "validation loss" in table


def test_torch_section_fails_when_the_torch_model_trains_differently(bench, names_path, tmp_path, monkeypatch,
                                                                     capsys):
    exact = microgpt_torch.model.fused_cross_entropy  # the faithful step's
    monkeypatch.setattr(microgpt_torch.model, "fused_cross_entropy",
                        lambda *args, **kwargs: 1.01 * exact(*args, **kwargs))  # a loss 1% too high
    out = tmp_path / "bench.json"
    assert run_torch_section(bench, names_path, out) == 1
    assert "torch's log differs from per-op's at line 1" in capsys.readouterr().err
    assert not out.exists()


def test_compare_section_times_the_default_run_and_its_pieces(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--only", "compare", "--out", str(out), "--compare-runs", "1"]) == 0
    figures = json.loads(out.read_text())["sections"]["compare"]
    assert figures["runs"] == 1 and figures["wall_s"] == [figures["wall_s_median"]]
    pieces = figures["pieces_s"]
    assert {"import torch", "scalar side setup", "torch side setup", "scalar step", "torch step",
            "comparison of the results", "render"} <= set(pieces)
    assert all(seconds > 0 for label, seconds in pieces.items() if label != "render")
    assert figures["pieces_sum_s"] == pytest.approx(sum(pieces.values()))
    assert "where the time goes" in capsys.readouterr().out


def test_compare_timing_fails_when_the_comparison_disagrees(bench):
    with pytest.raises(bench.CheckFailed, match=r"--inject grad-assign` exited with 1"):
        bench.run_command([sys.executable, str(bench.COMPARE_SCRIPT), "--inject", "grad-assign"])
