"""The benchmark package on tiny settings: each section writes the expected figures, each
correctness check fails on a differing input, and the measuring tools (child processes'
memory, rates from progress lines, operation counts) agree with what is known by hand.
No timing is asserted: the speed targets live in the benchmark's own report.

    pytest tests/test_bench.py
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import pytest

import microgpt_torch.fast
from bench import cli, common, compare_wall, contention, gpu_check, kernels, memory, race, scalar
from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.engine import Value
from microgpt_scalar.fused import FusedDot, FusedValue
from microgpt_scalar.train import start_run, train_step


def run_scalar_section(names_path, out, *flags) -> int:
    return cli.main(["--only", "scalar", "--preset", "microgpt", "--data", str(names_path), "--out", str(out),
                     "--scalar-steps", "2", "--scalar-memory-steps", "1", "--job-steps", "2", "--job-samples", "1",
                     "--job-rounds", "1", *flags])


def test_scalar_section_writes_every_figure_and_keeps_other_sections(names_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"sections": {"torch": {"kept": True}}}))
    assert run_scalar_section(names_path, out) == 0
    results = json.loads(out.read_text())
    assert results["sections"]["torch"] == {"kept": True}
    figures = results["sections"]["scalar"]
    assert {"python", "platform", "cpu_count", "date", "omp_wait_policy"} <= set(figures["machine"])
    preset = figures["presets"]["microgpt"]
    assert preset["steps"] == 2 and preset["logs_identical"] is True
    assert preset["log_tail"][-1].startswith("step    2 /  500 | loss ")
    engines = preset["engines"]
    assert list(engines) == ["plain", "per-op", "fused"]
    for e in engines.values():
        assert e["cpu_s_per_step"] > 0 and e["step_peak_mib"] > 0 and len(e["retained_mib"]) == 1
    # plain and per-op build the same graph; the fused one has far fewer nodes
    assert engines["plain"]["nodes_per_step"] == engines["per-op"]["nodes_per_step"] > 50_000
    assert engines["fused"]["nodes_per_step"] < engines["per-op"]["nodes_per_step"] / 4
    job = figures["job"]
    assert (job["steps"], job["samples"], job["rounds"], job["logs_identical"]) == (2, 1, 1, True)
    assert job["log_tail"] == ["step    1 /    2 | loss 3.3630", "step    2 /    2 | loss 3.2917"]  # published
    assert set(job["engines"]) == {"plain", "per-op", "fused"} and job["engines"]["plain"]["speedup"] == 1.0
    assert set(job["targets"]) == {"per-op", "fused"}
    table = capsys.readouterr().out
    assert "whole job" in table and "training logs identical: yes" in table


def test_plain_engine_is_the_seeds_value_and_trains_like_the_project(names_path):
    """The baseline's gradients are the project engine's, bit for bit, on a real step."""
    from bench.plain import PlainValue

    a, b = PlainValue(2.0), PlainValue(-3.0)
    f = (a * b + 10.0).relu() ** 2 / (a - b).exp() + (b * b).log()
    f.backward()
    x, y = Value(2.0), Value(-3.0)
    g = (x * y + 10.0).relu() ** 2 / (x - y).exp() + (y * y).log()
    g.backward()
    assert (f.data, a.grad, b.grad) == (g.data, x.grad, y.grad)
    assert PlainValue.__slots__ == ("data", "grad", "_children", "_local_grads")


def test_log_check_passes_identical_logs_and_names_the_first_difference():
    log = ["step    1 /  500 | loss 3.3630", "step    2 /  500 | loss 3.2917"]
    common.check_logs_identical({"plain": log, "per-op": list(log), "fused": list(log)})
    with pytest.raises(common.CheckFailed, match=r"fused's log differs from plain's at line 2"):
        common.check_logs_identical({"plain": log, "per-op": list(log), "fused": [log[0], "step    2 /  500 | loss 3.2918"]})
    with pytest.raises(common.CheckFailed, match=r"per-op logged 1 lines"):
        common.check_logs_identical({"plain": log, "per-op": log[:1], "fused": list(log)})


def wrong_gradients(self):
    """A FusedDot backward with b's local derivative doubled."""
    for j in range(len(self._children) - 2, -1, -2):
        a_j, b_j = self._children[j], self._children[j + 1]
        a_j.grad += b_j.data * self.grad
        b_j.grad += 2 * a_j.data * self.grad


def test_scalar_section_fails_when_an_engine_trains_differently(names_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(FusedDot, "_backward", wrong_gradients)
    out = tmp_path / "bench.json"
    assert run_scalar_section(names_path, out) == 1
    assert "log differs" in capsys.readouterr().err
    assert not out.exists()


def test_whole_job_fails_when_a_process_prints_another_log(names_path, monkeypatch):
    """The job's check reads what the processes print: a fused run of another length differs."""
    command = scalar.job_command
    monkeypatch.setattr(scalar, "job_command", lambda engine, data, steps, samples:
                        command(engine, data, steps + (engine == "fused"), samples))
    with pytest.raises(common.CheckFailed, match=r"fused logged 3 lines, plain 2"):
        scalar.bench_job(str(names_path), 2, 0, 1)


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


def run_torch_section(names_path, out) -> int:
    return cli.main(["--only", "torch", "--data", str(names_path), "--out", str(out), "--faithful-steps", "5",
                     "--plain-sample", "2", "--batch-sizes", "16", "--threads", "1", "--no-compile", "--windows", "2",
                     "--window-seconds", "0.05", "--train-seconds", "0.2", "--train-batch-size", "16"])


def test_torch_section_writes_every_figure(names_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run_torch_section(names_path, out) == 0
    figures = json.loads(out.read_text())["sections"]["torch"]
    faithful = figures["faithful"]
    assert faithful["steps"] == 5 and faithful["logs_identical"] is True
    assert faithful["log_tail"][-1].startswith("step    5 /    5 | loss ")
    assert 0 <= faithful["max_loss_diff_vs_scalar"] < 1e-12  # float64 rounding; a wrong model is off by 1e-2
    assert list(faithful["engines"]) == ["per-op", "fused", "torch", "plain"]
    assert faithful["engines"]["plain"]["measured"] == "extrapolated from 2 of 5 steps"
    # The scalar engine's weights and the faithful torch run's: the same training, float64 rounding apart.
    assert faithful["val_loss_scalar_weights"] == pytest.approx(faithful["val_loss_torch_weights"], abs=1e-9)
    shuffled, grouped = figures["throughput"]["rows"]
    for row, grouped_by_length in ((shuffled, False), (grouped, True)):
        assert (row["batch_size"], row["compiled"], row["grouped_by_length"], row["threads"], row["compile_s"]) == \
               (16, False, grouped_by_length, 1, None)
        assert 0 < row["tokens_per_s"] <= row["padded_positions_per_s"] and len(row["windows"]) == 2
    padding = [1 - row["tokens_per_s"] / row["padded_positions_per_s"] for row in (shuffled, grouped)]
    assert padding[0] > 0.05 and padding[1] < padding[0] / 2  # the grouped batches' padding is counted as such
    budget = figures["time_budget"]
    assert 1 <= budget["steps"] <= budget["planned_steps"] and budget["val_loss"] > 0
    table = capsys.readouterr().out
    assert "printed logs identical: yes" in table and "tokens/s" in table and "validation loss" in table


def test_torch_section_fails_when_the_torch_model_trains_differently(names_path, tmp_path, monkeypatch, capsys):
    exact = microgpt_torch.fast.fused_cross_entropy  # the faithful step's
    monkeypatch.setattr(microgpt_torch.fast, "fused_cross_entropy",
                        lambda *args, **kwargs: 1.01 * exact(*args, **kwargs))  # a loss 1% too high
    out = tmp_path / "bench.json"
    assert run_torch_section(names_path, out) == 1
    assert "torch's log differs from per-op's at line 1" in capsys.readouterr().err
    assert not out.exists()


def test_compare_section_times_the_checker_against_import_torch_and_splits_a_run(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["--only", "compare", "--out", str(out), "--compare-runs", "1"]) == 0
    figures = json.loads(out.read_text())["sections"]["compare"]
    assert len(figures["compare_step_wall_s"]) == len(figures["import_torch_wall_s"]) == 1
    assert figures["ratio"] == pytest.approx(figures["compare_step_wall_s"][0] / figures["import_torch_wall_s"][0])
    pieces = figures["pieces"]
    assert {"import torch", "every other import", "exit after the report (tearing down)"} <= set(pieces["seconds"])
    assert pieces["seconds"]["import torch"] > 0 and isinstance(pieces["dynamo_imported"], bool)
    assert sum(pieces["seconds"].values()) == pytest.approx(pieces["wall_s"])  # the pieces make up the run
    assert "where one run's" in capsys.readouterr().out


def test_compare_timing_fails_when_the_comparison_disagrees():
    """On a small model (the size is not what is tested: a comparison that disagrees exits 1)."""
    small = ["--doc", "emma", "--n-embd", "8", "--n-head", "2"]
    with pytest.raises(common.CheckFailed, match=r"--inject grad-assign` exited with 1"):
        common.run_process(common.compare_step_command(*small, "--inject", "grad-assign")).check()


def test_import_tree_is_read_with_its_depths():
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       300 |        700 |   torch._C\n"
              "import time:      2000 |    1500000 | torch\n"
              "import time:       100 |        100 |     _io\n"
              "import time:       100 |        200 |   torch.nn\n"
              "import time:        50 |     900000 | torch._dynamo\n")  # -X importtime lists an import after its own
    assert compare_wall.imports_of(stderr) == [(1, "torch._C", 7e-4), (0, "torch", 1.5), (2, "_io", 1e-4),
                                               (1, "torch.nn", 2e-4), (0, "torch._dynamo", 0.9)]


def test_child_memory_is_the_childs_own_and_a_runaway_is_stopped():
    """Peak memory of a child that holds 200 MB, of one that holds nothing (while this process,
    which has imported torch, is much bigger), and a child stopped at a memory limit."""
    holds = "x = bytearray({n} * 2**20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep({s})"
    big = common.run_process([sys.executable, "-c", holds.format(n=200, s=0.3)]).check()
    small = common.run_process([sys.executable, "-c", "import time; time.sleep(0.3)"]).check()
    assert 200 < big.max_rss_mib < 260 and small.max_rss_mib < 50 < common.max_rss_mib()
    stopped = common.run_process([sys.executable, "-c", holds.format(n=300, s=30)], rss_limit_mib=150)
    assert stopped.stopped == "stopped above 150 MiB" and stopped.returncode != 0
    with pytest.raises(common.CheckFailed, match="stopped above 150 MiB"):
        stopped.check()
    late = common.run_process([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert late.stopped == "timed out after 0.5 s" and late.wall_s < 10


def test_rate_from_progress_lines_leaves_start_up_out():
    lines = [(5.0, "num params: 4064 | train docs 100 | val docs 1\n"), (6.0, "step   50 / 300 | loss 3.0\n"),
             (8.0, "step  100 / 300 | loss 2.9\n"), (11.0, "step  150 / 300 | loss 2.8\n")]
    assert contention.steps_per_second(lines) == (100 / 5.0, 50, 150)
    assert gpu_check.steps_per_second(lines) == 100 / 5.0
    assert contention.steps_per_second(lines[:2], stopped_after_s=10.0) == (5.0, 0, 50)  # counted from the start
    with pytest.raises(common.CheckFailed, match="1 progress line"):
        contention.steps_per_second(lines[:2])


def test_busy_core_spins_on_the_core_it_is_given():
    cpu = (os.cpu_count() or 1) - 1
    with contention.busy_core(cpu) as pid:
        assert os.sched_getaffinity(pid) == {cpu}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_contention_section_writes_every_setting(names_path, tmp_path):
    out = tmp_path / "bench.json"
    assert cli.main(["--only", "contention", "--preset", "microgpt", "--data", str(names_path), "--out", str(out),
                     "--contention-steps", "4", "--contention-every", "2", "--contention-rounds", "1",
                     "--contention-batch-size", "8"]) == 0
    figures = json.loads(out.read_text())["sections"]["contention"]
    assert list(figures["rows"]) == list(contention.SETTINGS)
    assert figures["rows"]["quiet, 1 thread"]["x_quiet_1_thread"] == 1.0
    for row in figures["rows"].values():  # 8 names of 1 to 8 targets each
        assert 8 <= row["tokens_per_s"] / row["steps_per_s"] <= 64


def test_generated_file_repeats_the_data_to_the_size_asked(names_path, tmp_path):
    path = tmp_path / "large.txt"
    size = memory.generate_names_file(str(names_path), path, 1.0)
    docs, source = load_docs(path), load_docs(names_path)
    assert size >= 1e6 and len(docs) % len(source) == 0 and docs[:len(source)] == source


def test_memory_section_runs_each_program_on_the_generated_file(names_path, tmp_path):
    out = tmp_path / "bench.json"
    assert cli.main(["--only", "memory", "--data", str(names_path), "--out", str(out), "--memory-file-mb", "0.3"]) == 0
    figures = json.loads(out.read_text())["sections"]["memory"]
    runs = figures["runs"]
    footprint = "batched trainer, 1,000 names (footprint)"
    assert set(runs) == {"batched trainer", footprint, "scalar trainer", "checker", "import torch"}
    assert runs["scalar trainer"]["peak_rss_mib"] < runs["import torch"]["peak_rss_mib"]  # no torch
    assert runs[footprint]["peak_rss_mib"] > runs["import torch"]["peak_rss_mib"]  # torch at work
    assert figures["batched_above_footprint_mib"] == pytest.approx(
        runs["batched trainer"]["peak_rss_mib"] - runs[footprint]["peak_rss_mib"])
    assert figures["batched_above_import_torch_mib"] == pytest.approx(
        runs["batched trainer"]["peak_rss_mib"] - runs["import torch"]["peak_rss_mib"])


def test_operation_counter_counts_kernels_views_syncs_and_bytes_as_by_hand():
    import torch

    a, b = torch.ones(3, 4), torch.ones(5, 4)  # float32
    with kernels.op_counter() as counter:
        torch.mm(a, b.t()).sum().item()
    counted = counter.summary()
    # mm reads 12 + 20 floats and writes 15; sum reads 15 and writes 1: 63 floats
    assert (counted["kernels"], counted["metadata_ops"], counted["syncs"], counted["bytes"]) == (2, 1, 1, 63 * 4)


def test_a_batched_step_is_counted_with_its_backward_and_adam(names_path):
    counted = kernels.count_step(8, "microgpt", str(names_path))
    ops = counted["by_op"]
    assert counted["syncs"] == 1  # the loss read back once
    assert ops.get("_fused_adam", 0) == 1
    assert ops["mm"] == 3 * 5  # 5 products (q, k and v in one), each a forward and two backward
    assert ops["bmm"] + ops["baddbmm"] == 3 * 2  # attention's 2 products a sequence, forward and backward
    assert counted["kernels"] + counted["metadata_ops"] + counted["syncs"] == counted["ops"]


def test_gpu_estimate_follows_its_bounds():
    step = {"tokens": 700, "batch_size": 100, "kernels": 120, "bytes_per_token": 10_000}
    small, large = kernels.gpu_estimate(step, 1e-3, 100), kernels.gpu_estimate(step, 1e-3, 10**6)
    h100, fusion = kernels.H100, kernels.FUSION
    assert (small["eager"]["step_s"], small["eager"]["bound_by"]) == (1e-3, "host")
    assert small["cuda graphs"]["step_s"] == pytest.approx(120 / fusion * h100["graph_kernel_s"])
    memory_s = 7e6 * 10_000 / (h100["hbm_bytes_per_s"] * h100["bandwidth_efficiency"])  # 7 tokens a document
    assert (large["eager"]["step_s"], large["eager"]["bound_by"]) == (pytest.approx(memory_s), "memory")
    assert large["cuda graphs"]["tokens_per_s"] == pytest.approx(7e6 / (memory_s / fusion))


@pytest.mark.skipif(gpu_check.cuda_devices() != [], reason="this machine has CUDA: the check would run")
def test_gpu_check_says_in_one_line_that_there_is_no_cuda_and_exits_0(repo_root):
    done = subprocess.run([str(repo_root / "scripts" / "gpu_check.sh")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("gpu_check: no CUDA device")


def test_gpu_check_covers_every_part_and_reports_failures():
    names = [name for name, _, _ in gpu_check.checks("names.txt", 2)]
    assert names[:4] == ["CUDA tests", "compare_step --device cuda", "precision table", "data parallel on 2 GPU(s)"]
    assert {name.split(",")[1].strip() for name in names[4:]} == {"eager", "compiled", "cuda graphs"}
    results = [{"check": "CUDA tests", "status": "passed", "wall_s": 3.0},
               {"check": "throughput, eager, batch 4096", "status": "failed", "wall_s": 2.0, "error": "boom"},
               {"check": "precision table", "status": "skipped", "why": "out of time"}]
    text = gpu_check.summary(["H100"], results, 5.0)
    assert "(boom)" in text and "(out of time)" in text and "2 check(s) did not pass" in text


@pytest.mark.parametrize("flags", [["--only", "nothing"], ["--only", "scalar", "--job-steps", "0"]])
def test_bad_flags_end_in_one_line_and_exit_2(flags, tmp_path, capsys):
    try:
        status = cli.main([*flags, "--out", str(tmp_path / "b.json")])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def run_race_section(names_path, out) -> int:
    return cli.main(["--only", "race", "--data", str(names_path), "--out", str(out), "--race-batch-sizes", "8",
                     "--race-threads", "1", "--race-modes", "eager", "--race-rounds", "2",
                     "--race-window-seconds", "0.01", "--race-processes", "1"])  # groups: the test below


def test_race_section_writes_every_figure(names_path, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert run_race_section(names_path, out) == 0
    figures = json.loads(out.read_text())["sections"]["race"]
    (cell,) = figures["cells"]
    assert (cell["batch_size"], cell["threads"], cell["mode"]) == (8, 1, "eager")
    assert set(cell["rounds"]) == set(race.TRAINERS) and all(len(r) == 2 for r in cell["rounds"].values())
    assert cell["tokens_per_s"] == {name: max(r) for name, r in cell["rounds"].items()}
    assert cell["project_over_nanogpt"] == pytest.approx(race.median_ratio(cell["rounds"], "project", "nanoGPT"))
    assert len(cell["load_average_before"]) == len(cell["load_average_after"]) == 3
    best = figures["best_modes"]
    assert best["project"]["batch_size"] == best["previous"]["batch_size"] == 8 and len(best["project"]["rounds"]) == 2
    assert figures["flops_per_token"] == 25_920
    assert [(a["batch_size"], a["block"], a["mode"]) for a in figures["attention"]] == [(8, 8, "eager"), (8, 16, "eager")]
    assert all(set(a["ms"]) == {"sdpa", "block-diagonal"} for a in figures["attention"])
    table = capsys.readouterr().out
    assert "x nanoGPT" in table and "best modes, in turns" in table and "attention alone" in table


def test_race_fails_when_the_project_step_computes_another_loss(names_path, tmp_path, monkeypatch, capsys):
    from microgpt_torch import kernels as torch_kernels

    exact = torch_kernels.rms_norm
    monkeypatch.setattr(torch_kernels, "rms_norm", lambda x: 1.01 * exact(x))  # BatchedGPT's only
    out = tmp_path / "bench.json"
    assert run_race_section(names_path, out) == 1
    assert "the project's step computes another loss" in capsys.readouterr().err and not out.exists()


def test_turns_rotate_and_ratios_are_medians_of_rounds():
    class Recorder:
        def __init__(self, name, log):
            self.name, self.log, self.steps = name, log, 0

        def step(self, batch):
            self.log.append(self.name)
            self.steps += 1

    log = []
    batch = (None, None, 10)
    rates = race.take_turns({name: (Recorder(name, log), [batch], 1) for name in "abc"}, 3, 0.0)
    firsts = [log[i] for i in range(0, len(log), 2)]  # two steps a window
    assert firsts == list("abc" "bca" "cab") and all(len(r) == 3 for r in rates.values())
    assert race.median_ratio({"x": [2.0, 9.0, 4.0], "y": [1.0, 3.0, 1.0]}, "x", "y") == 3.0  # of 2, 3 and 4


def test_best_modes_run_in_processes_of_their_own_one_window_at_a_time(names_path, tmp_path):
    """Each trainer's fastest cell in a process of its own, and each trainer on two
    data-parallel processes (the project's in shared memory, the previous step's in
    DistributedDataParallel), taking turns: never two windows at once."""
    config, params, train_tokens, _, _, _ = common.torch_start(common.read_docs(str(names_path)), "microgpt",
                                                               common.SEED, num_steps=10**9)
    asked = []

    def batches_for(batch_size):
        asked.append(batch_size)
        return race.ready_batches(train_tokens, config.block_size, batch_size, 2)

    cells = [{"batch_size": 8, "threads": 1, "mode": "eager", "tokens_per_s": {"project": 1.0, "previous": 1.0}}]
    best = race.best_modes(cells, config, params, batches_for, 3, 0.01, 2, str(tmp_path))
    keys = ["project", "previous", "project_processes_8", "previous_processes_8"]
    assert asked == [8, 8, 16, 16]  # the groups: each process trains on half of batches twice as large
    assert [(best[k]["batch_size"], best[k]["processes"], best[k]["threads"]) for k in keys] == \
        [(8, 1, 1), (8, 1, 1), (16, 2, 1), (16, 2, 1)]
    pids = [pid for k in keys for pid in best[k]["pids"]]
    assert len(set(pids)) == 6 and os.getpid() not in pids
    windows = sorted((start, end, k) for k in keys for start, end in best[k]["windows"])
    assert [k for _, _, k in windows] == keys + keys[1:] + keys[:1] + keys[2:] + keys[:2]  # the order rotates
    assert all(start < end for start, end, _ in windows)
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(windows, windows[1:]))  # never at once
    assert all(len(best[k]["rounds"]) == 3 and min(best[k]["rounds"]) > 0 for k in keys)
    round_best = {name: [max(best[k]["rounds"][r] for k in (name, f"{name}_processes_8")) for r in range(3)]
                  for name in ("project", "previous")}
    assert best["project_over_previous"] == pytest.approx(race.median_ratio(round_best, "project", "previous"))
    assert best["one_process_project_over_previous"] == pytest.approx(race.median_ratio(
        {name: best[name]["rounds"] for name in ("project", "previous")}, "project", "previous"))
    for name in ("project", "previous"):
        assert best["best"][name] == max((name, f"{name}_processes_8"), key=lambda k: best[k]["tokens_per_s"])


CPUINFO = "processor\t: 0\ncpu MHz\t\t: {mhz}\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\ncpu MHz\t\t: 1500.0\n"


@pytest.mark.parametrize("flags, vector, per_cycle", [("avx avx2 fma avx512f", "avx512f", 64), ("avx avx2 fma", "avx2", 32),
                                                      ("", "sse", 16)])
def test_peak_flops_come_from_the_clock_and_the_widest_vector_unit(flags, vector, per_cycle):
    peak = race.cpu_peak(CPUINFO.format(mhz="2400.0", flags=flags))
    assert (peak["ghz"], peak["vector"], peak["flops_per_cycle"]) == (2.4, vector, per_cycle)
    assert peak["flops_per_s_per_core"] == pytest.approx(2.4e9 * per_cycle)
    # The machine: AVX2 at 2.4 GHz, 2 cores, 392k tokens/s of 26k FLOPs: about 6.6% of 154 GFLOP/s.
    if vector == "avx2":
        assert race.share_of_peak(392_000, 25_920, peak, 2) == pytest.approx(0.066, abs=0.001)
    assert race.cpu_peak("processor\t: 0\n") is None


def test_nanogpt_baseline_is_the_recipe_at_the_projects_sizes_and_learns(names_path):
    import torch

    from bench import nanogpt
    from microgpt_torch.train import PackedDocuments

    config = get_config("microgpt", vocab_size=27)
    model = nanogpt.NanoGPT(config)
    assert model.wte.weight is model.lm_head.weight  # tied
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes["h.0.attn.c_attn.weight"] == (48, 16) and shapes["h.0.mlp.c_fc.weight"] == (64, 16)
    assert not any(name.endswith("bias") for name in shapes)
    docs = load_docs(names_path)[:8]
    chars = sorted(set("".join(docs)))
    tokens = [[26] + [chars.index(c) for c in doc] + [26] for doc in docs]
    idx, targets, _ = PackedDocuments.of(tokens, config.block_size).batch(range(8))
    optimizer = nanogpt.adamw(model)
    losses = [nanogpt.train_step(model, optimizer, idx, targets, 100 + step) for step in range(20)]  # after warm-up
    assert losses[0] == pytest.approx(torch.tensor(27.0).log().item(), abs=0.05)  # small weights: near uniform
    assert losses[-1] < losses[0] - 0.5


def test_previous_step_is_the_fused_model_bit_for_bit():
    """The frozen step computes what FusedGPT (kept as it was, for the faithful run) computes."""
    import torch

    from bench import previous_step
    from microgpt_torch.fast import FusedGPT

    config = get_config("microgpt-v2", vocab_size=27)
    model = FusedGPT(config, generator=torch.Generator().manual_seed(5))
    previous = previous_step.PreviousGPT(config)
    previous.load_state_dict(model.state_dict())
    idx = torch.randint(27, (6, 16), generator=torch.Generator().manual_seed(1))
    targets = idx.roll(-1, 1).masked_fill(torch.arange(16) > 12, -1)
    (logits, loss), (old_logits, old_loss) = model(idx, targets), previous(idx, targets)
    assert torch.equal(logits, old_logits) and torch.equal(loss, old_loss)
    loss.backward()
    old_loss.backward()
    for (name, p), old in zip(model.named_parameters(), previous.parameters()):
        assert torch.equal(p.grad, old.grad), name


def test_the_machine_line_names_the_openmp_wait_policy_the_environment_set(monkeypatch):
    from bench.common import machine, machine_line

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert machine((0.0, 0.0, 0.0))["omp_wait_policy"] == "PASSIVE"
    assert ", OMP_WAIT_POLICY=PASSIVE;" in machine_line(machine((0.0, 0.0, 0.0)))
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert machine((0.0, 0.0, 0.0))["omp_wait_policy"] is None
    assert "OMP_WAIT_POLICY" not in machine_line(machine((0.0, 0.0, 0.0)))
