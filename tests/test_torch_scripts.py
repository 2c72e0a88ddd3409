"""scripts/train_torch.py and scripts/sample.py: their output against the scalar engine's,
data parallelism against one process, and every refusal (one line on stderr, exit code)."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_script
from torch_checks import assert_float64_close

from microgpt_scalar.checkpoint import save_checkpoint as save_scalar_checkpoint
from microgpt_scalar.config import get_config, num_params
from microgpt_scalar.data import Tokenizer, default_data_path, load_docs
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.optim import Adam
from microgpt_scalar.train import sample as scalar_sample
from microgpt_scalar.train import train_step as scalar_train_step
from microgpt_torch.checkpoint import checkpoint_of, load_checkpoint, save_checkpoint, to_scalar_checkpoint
from microgpt_torch.fast import FusedGPT
from microgpt_torch.optim import make_optimizer
from microgpt_torch.train import faithful_steps, reference_start

REPO = Path(__file__).resolve().parents[1]
DATA = default_data_path()  # the names file shipped with the package
# Data parallel and single-process runs add the same per-document gradients in another order
# (two half-batch sums, then an average): measured worst weight difference 1.7e-15 after the
# 30 float64 steps below. Averaging per-process means instead of taking the global mean
# (unequal token counts) already moves weights by 2e-2 after one step (measured).
DDP_ATOL = 1e-13
# What torchrun's processes print when they could not meet on localhost, not a training error.
LAUNCH_FAILURES = ("DistNetworkError", "Address already in use", "Connection refused", "Connection reset by peer",
                   "RendezvousConnectionError", "RendezvousTimeoutError")


train_script, sample_script = load_script("train_torch"), load_script("sample")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


def run_main(module, capsys, *argv):
    """(exit code, stdout, stderr) of a script's main() run in this process; stderr without the
    line in which the trainer says how it uses threads (checked on its own)."""
    try:
        code = module.main([str(arg) for arg in argv])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, "".join(line for line in err.splitlines(keepends=True) if not line.startswith("threads: "))


INFERENCE_HEADERS = {  # the original programs' lines before the samples, one per revision
    "microgpt": "--- inference ---",
    "microgpt-v2": "--- inference (new, hallucinated names) ---",
}


def scalar_program_output(preset: str, num_steps: int, num_samples: int) -> str:
    """What the scalar engine prints for the reference program with num_steps steps."""
    rng = random.Random(42)
    docs = load_docs(DATA)
    rng.shuffle(docs)
    tokenizer = Tokenizer.from_docs(docs)
    config = get_config(preset, vocab_size=tokenizer.vocab_size, num_steps=num_steps)
    model = ScalarGPT(config, rng)
    adam = Adam(model.parameters(), config)
    lines = [f"num docs: {len(docs)}", f"vocab size: {tokenizer.vocab_size}", f"num params: {num_params(config)}"]
    for step in range(num_steps):
        loss = scalar_train_step(model, adam, tokenizer.encode(docs[step % len(docs)]), step)
        lines.append(f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}")
    lines += ["", INFERENCE_HEADERS[preset]]
    lines += [f"sample {i + 1:2d}: {scalar_sample(model, tokenizer, rng, 0.5)}" for i in range(num_samples)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_faithful_script_prints_what_the_scalar_engine_prints(capsys, preset):
    code, out, err = run_main(train_script, capsys, "--preset", preset, "--data", DATA, "--steps", 4, "--samples", 5)
    assert (code, err) == (0, "")
    assert out == scalar_program_output(preset, num_steps=4, num_samples=5)


def test_printed_log_comparison_fails_for_another_seed(capsys):
    code, out, _ = run_main(train_script, capsys, "--data", DATA, "--steps", 2, "--samples", 1, "--seed", 1)
    assert code == 0 and out != scalar_program_output("microgpt", num_steps=2, num_samples=1)


def test_faithful_script_resumes_where_a_checkpoint_left_off(capsys, tmp_path):
    code, straight, _ = run_main(train_script, capsys, "--data", DATA, "--steps", 6, "--samples", 3)
    docs, tokenizer, config, params, _ = reference_start(load_docs(DATA), seed=42, num_steps=6)
    model = FusedGPT.from_scalar_params(config, params)
    optimizer = make_optimizer(model, config)
    steps = faithful_steps(model, optimizer, docs, tokenizer)
    for _ in range(3):
        next(steps)
    save_checkpoint(tmp_path / "half.pt", checkpoint_of(model, tokenizer.chars, optimizer, 3, seed=42))
    code, resumed, err = run_main(train_script, capsys, "--data", DATA, "--steps", 6, "--samples", 3,
                                  "--resume", tmp_path / "half.pt")
    assert (code, err) == (0, "")
    lines = straight.splitlines()
    assert resumed.splitlines() == lines[:3] + lines[6:]  # the header, steps 4-6 and the same samples


def test_checkpoints_are_written_every_n_steps_and_at_the_end(capsys, tmp_path):
    path = tmp_path / "run.pt"
    code, _, _ = run_main(train_script, capsys, "--data", DATA, "--steps", 5, "--samples", 0,
                          "--save", path, "--save-every", 2)
    assert code == 0 and load_checkpoint(path).step == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(capsys, tmp_path):
    path = tmp_path / "run.pt"
    assert run_main(train_script, capsys, "--data", DATA, "--steps", 2, "--samples", 0, "--save", path)[0] == 0
    good = path.read_bytes()
    # A step size of 1e308 sends the weights to inf after step 2; step 3's loss is nan.
    code, out, err = run_main(train_script, capsys, "--data", DATA, "--steps", 5, "--save", path, "--overwrite",
                              "--learning-rate", 1e307)
    assert code == 1
    assert err == f"error: loss is nan at step 3; the last good checkpoint {path} is kept\n"
    assert "step    2 /    5" in out and "step    3" not in out and "sample" not in out
    assert path.read_bytes() == good


def test_non_finite_weights_are_never_saved_over_a_good_checkpoint(capsys, tmp_path):
    path = tmp_path / "run.pt"
    code, _, err = run_main(train_script, capsys, "--data", DATA, "--steps", 5, "--save", path,
                            "--save-every", 1, "--learning-rate", 1e307)
    assert code == 1
    assert err == f"error: parameter wte.weight is not finite after step 2; the last good checkpoint {path} is kept\n"
    assert load_checkpoint(path).step == 1


def test_resume_refuses_a_checkpoint_of_another_preset_or_shape(capsys, tmp_path):
    path = tmp_path / "run.pt"
    assert run_main(train_script, capsys, "--data", DATA, "--steps", 1, "--samples", 0, "--save", path)[0] == 0
    code, out, err = run_main(train_script, capsys, "--data", DATA, "--preset", "microgpt-v2", "--resume", path)
    assert (code, out) == (2, "")
    assert err == f"error: checkpoint {path} was made with preset 'microgpt', not 'microgpt-v2'\n"
    code, _, err = run_main(train_script, capsys, "--data", DATA, "--steps", 1, "--n-layer", 2, "--resume", path)
    assert code == 2 and err == "error: checkpoint has n_layer=1, but n_layer=2 was asked for\n"


@pytest.mark.parametrize("argv, message", [
    (["--data", "/nonexistent/names.txt"], "error: data file not found: /nonexistent/names.txt\n"),
    (["--mode", "batched", "--batch-size", "0"],
     "error: argument --batch-size: 0 is out of range: expected a whole number from 1 to 10000000\n"),
    (["--temperature", "0"], "error: argument --temperature: 0 is out of range: expected a number from 0.001 to 1000\n"),
    (["--bf16"], "error: --bf16 needs --device cuda, --mode batched and float32 weights\n"),
    (["--group-by-length"], "error: --group-by-length needs --mode batched (faithful mode trains one document a step)\n"),
    (["--n-head", "5"], "error: n_embd (16) must be divisible by n_head (5)\n"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, argv, message):
    argv = argv if "--data" in argv else argv + ["--data", str(DATA)]
    assert run_main(train_script, capsys, *argv) == (2, "", message)


def test_impossible_save_is_refused_before_any_training(capsys, tmp_path):
    (tmp_path / "taken").mkdir()
    code, out, err = run_main(train_script, capsys, "--data", DATA, "--steps", 2, "--save", tmp_path / "taken")
    assert (code, out) == (2, "")  # not a step was trained that could not be kept
    assert err == f"error: --save {tmp_path / 'taken'}: is not a regular file (a directory); not replacing it\n"


def test_batch_larger_than_the_training_documents_draws_with_replacement_and_says_so(capsys, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("emma\nolivia\nava\n")  # two documents to train on, one held out
    code, out, _ = run_main(train_script, capsys, "--mode", "batched", "--data", small, "--steps", 2, "--samples", 0)
    assert code == 0
    assert out.splitlines()[1] == ("batch size 32 is more than the 2 training documents: "
                                   "each batch draws its documents at random, with replacement")
    code, out, err = run_main(train_script, capsys, "--mode", "batched", "--data", small, "--steps", 2,
                              "--group-by-length")
    assert (code, out) == (2, "")
    assert err == "error: --group-by-length needs --batch-size at most the 2 training documents\n"


def test_weights_that_overflow_on_the_last_step_are_reported_not_sampled(capsys):
    """No --save: the weights are still checked before sampling, so the error names them
    instead of the sampler failing on probabilities that are not numbers."""
    code, out, err = run_main(train_script, capsys, "--data", DATA, "--steps", 1, "--learning-rate", 1e308,
                              "--init-std", 100, "--proj-init-std", 100)  # the largest sizes the flags take
    assert code == 1 and "sample" not in out
    assert err == "error: parameter wte.weight is not finite after step 1\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_device_without_cuda_is_refused(capsys):
    assert run_main(train_script, capsys, "--device", "cuda", "--data", DATA) == \
        (2, "", "error: --device cuda: CUDA is not available on this machine (try --device cpu)\n")


def test_script_exit_code_and_stderr_from_the_command_line(tmp_path):
    result = subprocess.run([sys.executable, REPO / "scripts" / "train_torch.py", "--data", tmp_path / "none.txt"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: data file not found: {tmp_path / 'none.txt'}\n"


def test_batched_script_reports_validation_loss_and_samples(capsys, tmp_path):
    code, out, err = run_main(train_script, capsys, "--mode", "batched", "--data", DATA, "--steps", 20,
                              "--batch-size", 8, "--eval-every", 10, "--samples", 3, "--save", tmp_path / "b.pt")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("num params: 4064 | train docs 28830 | val docs 3203")
    assert lines[1].startswith("step   10 /   20 | loss ") and " | val loss " in lines[1]
    assert lines[2].startswith("step   20 /   20 | loss ")
    assert [line[:11] for line in lines[3:]] == ["sample  1: ", "sample  2: ", "sample  3: "]
    assert "20/20" not in err  # the progress bar shows on a terminal only, and stderr here is not one
    assert load_checkpoint(tmp_path / "b.pt").step == 20


def test_batched_script_groups_documents_by_length(capsys):
    code, out, _ = run_main(train_script, capsys, "--mode", "batched", "--data", DATA, "--steps", 4,
                            "--batch-size", 64, "--eval-every", 4, "--samples", 0, "--group-by-length")
    grouped_loss = out.splitlines()[1]
    code_plain, out_plain, _ = run_main(train_script, capsys, "--mode", "batched", "--data", DATA, "--steps", 4,
                                        "--batch-size", 64, "--eval-every", 4, "--samples", 0)
    assert (code, code_plain) == (0, 0)
    assert grouped_loss.startswith("step    4 /    4 | loss ")
    assert grouped_loss != out_plain.splitlines()[1]  # other batches, so another loss


def run_batched_pair(capsys, tmp_path):
    """One process and two data-parallel processes (torchrun, gloo) on the same global batches."""
    common = ["--mode", "batched", "--data", DATA, "--steps", 30, "--batch-size", 16, "--eval-every", 15,
              "--dtype", "float64", "--samples", 4, "--seed", 3, "--device", "cpu"]  # gloo, even beside a GPU
    code, single_out, _ = run_main(train_script, capsys, *common, "--save", tmp_path / "one.pt")
    assert code == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = torchrun + [str(REPO / "scripts" / "train_torch.py")] + [str(a) for a in common] + \
        ["--save", str(tmp_path / "two.pt")]
    for attempt in range(2):
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        if result.returncode == 0 or not any(sign in result.stderr for sign in LAUNCH_FAILURES):
            break  # a second attempt only after the processes could not meet (a busy port, a refused connection)
    assert result.returncode == 0, result.stderr[-2000:]
    return single_out, result.stdout, load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")


def test_two_data_parallel_processes_equal_one_process(capsys, tmp_path):
    single_out, ddp_out, one, two = run_batched_pair(capsys, tmp_path)
    assert ddp_out == single_out  # the same printed losses, validation losses and samples
    for name in one.model:
        assert_float64_close(f"{name} after 30 steps", two.model[name], one.model[name], DDP_ATOL, 0.0)
        assert_float64_close(f"{name} Adam v", two.adam["v"][name], one.adam["v"][name], DDP_ATOL, 0.0)
    # The comparison is not vacuous: one Adam step alone moves weights by ~1e-2.
    start = reference_start(load_docs(DATA), seed=3)[3]
    with pytest.raises(AssertionError, match="wte"):
        assert_float64_close("wte", two.model["wte.weight"], torch.tensor(start["wte"]), DDP_ATOL, 0.0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A short faithful run saved in both formats, once for the tests that sample from it."""
    return make_checkpoints(tmp_path_factory.mktemp("checkpoints"))


def make_checkpoints(tmp_path):
    """A short faithful run saved in both formats."""
    docs, tokenizer, config, params, _ = reference_start(load_docs(DATA), seed=42, num_steps=40)
    model = FusedGPT.from_scalar_params(config, params)
    optimizer = make_optimizer(model, config)
    for _ in faithful_steps(model, optimizer, docs, tokenizer):
        pass
    checkpoint = checkpoint_of(model, tokenizer.chars, optimizer, 40, 42)
    save_checkpoint(tmp_path / "model.pt", checkpoint)
    save_scalar_checkpoint(tmp_path / "model.json", to_scalar_checkpoint(checkpoint))
    return tmp_path / "model.pt", tmp_path / "model.json"


def test_sample_script_gives_the_same_names_for_both_engines_and_formats(capsys, checkpoints):
    torch_file, json_file = checkpoints
    outputs = {}
    for path in (torch_file, json_file):
        for engine in ("torch", "scalar"):
            code, out, err = run_main(sample_script, capsys, path, "--from", engine, "--samples", 12, "--seed", 5)
            assert (code, err) == (0, "")
            outputs[path.suffix, engine] = out
    assert len(set(outputs.values())) == 1, outputs
    names = [line.split(": ", 1)[1] for line in outputs[".pt", "torch"].splitlines()]
    assert len(names) == 12 and len(set(names)) > 6
    _, other, _ = run_main(sample_script, capsys, torch_file, "--samples", 12, "--seed", 6)
    assert other != outputs[".pt", "torch"]  # the seed matters, so equal outputs mean something


def test_sample_script_torch_sampler_and_refusals(capsys, tmp_path, checkpoints):
    torch_file, _ = checkpoints
    code, out, _ = run_main(sample_script, capsys, torch_file, "--sampler", "torch", "--samples", 3)
    assert code == 0 and len(out.splitlines()) == 3
    assert run_main(sample_script, capsys, tmp_path / "missing.pt") == \
        (2, "", f"error: checkpoint not found: {tmp_path / 'missing.pt'}\n")
    code, _, err = run_main(sample_script, capsys, torch_file, "--from", "scalar", "--sampler", "torch")
    assert code == 2 and err == "error: --sampler torch needs --from torch\n"


@pytest.mark.slow
def test_compiled_batched_run_equals_the_eager_run(capsys, tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on the CPU needs a C compiler")
    common = ["--mode", "batched", "--data", DATA, "--steps", 5, "--batch-size", 8, "--eval-every", 5,
              "--dtype", "float64", "--samples", 2]
    eager = run_main(train_script, capsys, *common, "--save", tmp_path / "eager.pt")
    compiled = run_main(train_script, capsys, *common, "--compile", "--save", tmp_path / "compiled.pt")
    assert eager[0] == compiled[0] == 0 and eager[1] == compiled[1]
    one, two = load_checkpoint(tmp_path / "eager.pt"), load_checkpoint(tmp_path / "compiled.pt")
    for name in one.model:  # kernels fused by the compiler round differently: float64 rounding only
        assert_float64_close(f"compiled {name}", two.model[name], one.model[name], 1e-12, 0.0)


def test_non_finite_loss_without_any_checkpoint_claims_none(capsys, tmp_path):
    code, _, err = run_main(train_script, capsys, "--data", DATA, "--steps", 5, "--save", tmp_path / "new.pt",
                            "--learning-rate", 1e307)
    assert (code, err) == (1, "error: loss is nan at step 3\n")
    assert not (tmp_path / "new.pt").exists()


def test_processes_flag_trains_as_one_process_does(capsys, tmp_path):
    """`--processes 2` (the project's launcher over torch's elastic one, gloo) prints and saves
    what one process does after the same steps; `--processes 1` trains in this process."""
    common = ["--mode", "batched", "--data", DATA, "--steps", 2, "--batch-size", 16, "--eval-every", 2,
              "--dtype", "float64", "--samples", 3, "--seed", 3, "--device", "cpu"]
    code, single_out, _ = run_main(train_script, capsys, *common, "--save", tmp_path / "one.pt")
    assert code == 0
    assert run_main(train_script, capsys, *common, "--processes", 1)[:2] == (0, single_out)
    command = [sys.executable, str(REPO / "scripts" / "train_torch.py"), *map(str, common),
               "--processes", "2", "--save", str(tmp_path / "two.pt")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.returncode, "Traceback" in result.stderr) == (0, False), result.stderr[-2000:]
    assert result.stdout == single_out  # the same losses, validation loss and samples, printed once
    one, two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    assert two.step == one.step == 2
    for name in one.model:
        assert_float64_close(f"{name} after 2 steps", two.model[name], one.model[name], DDP_ATOL, 0.0)
        assert_float64_close(f"{name} Adam v", two.adam["v"][name], one.adam["v"][name], DDP_ATOL, 0.0)
    start = reference_start(load_docs(DATA), seed=3)[3]  # not vacuous: two Adam steps move weights by ~1e-2
    with pytest.raises(AssertionError, match="wte"):
        assert_float64_close("wte", two.model["wte.weight"], torch.tensor(start["wte"]), DDP_ATOL, 0.0)


def test_processes_flag_refuses_what_one_process_could_not_split(capsys, tmp_path):
    """Checked once, before any process starts: one line each, exit 2."""
    refusals = {("--processes", 2): "faithful mode trains one document per step in one process",
                ("--processes", 2, "--mode", "batched", "--batch-size", 1): "--batch-size 1 is smaller than the 2",
                ("--processes", 2, "--mode", "batched", "--data", tmp_path / "none.txt"): "data file not found"}
    for flags, words in refusals.items():
        code, out, err = run_main(train_script, capsys, *flags, "--steps", 2)
        assert (code, out, len(err.splitlines())) == (2, "", 1) and words in err, err
    code, _, err = run_main(train_script, capsys, "--processes", 0)
    assert code == 2 and "--processes" in err and "out of range" in err


def test_each_process_gets_the_flags_without_processes():
    from microgpt_torch.launch import without_processes_flag

    given = ["--processes", "2", "--steps", "3", "--processes=2", "--proc", "2", "--preset", "microgpt"]
    assert without_processes_flag(given) == ["--steps", "3", "--preset", "microgpt"]
