"""Training on the scalar engine against the published figures of docs/reference.md, torch's Adam in
float64, and the script's contract: the original log on stdout and nothing else, one-line
errors, and a run whose loss stops being finite saves nothing.

    pytest tests/test_train_scalar.py             # includes the two full published runs
    pytest tests/test_train_scalar.py -m "not slow"

The full runs use the fused engine when `microgpt_scalar.fused` exists (same numbers, ~5x
faster), the per-op engine otherwise; there is one full run per preset in the whole suite.
"""
from __future__ import annotations

import fcntl
import importlib.util
import math
import os
import random
import re
import struct
import subprocess
import sys
import termios

import pytest
import reference
import torch

from microgpt_scalar.config import get_config
from microgpt_scalar.data import Tokenizer, load_docs
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam, learning_rate_at
from microgpt_scalar.train import NonFiniteLossError, sample, start_run, train_step

FULL_RUN_ENGINE = "fused" if importlib.util.find_spec("microgpt_scalar.fused") else "per-op"



def run_script(repo_root, args, cwd, **kwargs):
    return subprocess.run([sys.executable, str(repo_root / "scripts" / "train_scalar.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, **kwargs)


INFERENCE_HEADERS = {  # the original programs' lines before the samples, one per revision
    "microgpt": "--- inference ---",
    "microgpt-v2": "--- inference (new, hallucinated names) ---",
}


def assert_log_format(stdout: str, num_steps: int, num_samples: int, preset: str = "microgpt") -> None:
    """stdout is the original program's log, line for line, and nothing else."""
    assert "\r" not in stdout and "\x1b" not in stdout
    lines = stdout.split("\n")
    assert lines[-1] == "", "stdout must end with a newline"
    lines = lines[:-1]
    assert re.fullmatch(r"num docs: \d+", lines[0]) and re.fullmatch(r"vocab size: \d+", lines[1])
    assert re.fullmatch(r"num params: \d+", lines[2])
    steps = lines[3:3 + num_steps]
    assert steps == [f"step {s:4d} / {num_steps:4d} | loss {line[-6:]}" for s, line in enumerate(steps, 1)]
    assert all(re.fullmatch(r"step [ \d]{4} / [ \d]{4} \| loss \d\.\d{4}", line) for line in steps)
    rest = lines[3 + num_steps:]
    assert rest[:2] == ["", INFERENCE_HEADERS[preset]]
    assert len(rest) == 2 + num_samples
    assert all(re.fullmatch(rf"sample {i:2d}: [a-z]*", line) for i, line in enumerate(rest[2:], 1)), rest


# --- the published figures ---

@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_first_two_steps_print_published_losses(preset, names_path):
    docs, tokenizer, model, optimizer, _ = start_run(load_docs(names_path), get_config(preset), seed=42)
    losses = [train_step(model, optimizer, tokenizer.encode(docs[s]), s) for s in range(2)]
    assert [f"{loss:.4f}" for loss in losses] == reference.published(preset).first_losses


@pytest.fixture(scope="module", params=["microgpt", "microgpt-v2"])
def published_run(request, repo_root, names_path, tmp_path_factory):
    """One full run per preset; stderr is a pipe, not a terminal."""
    preset = request.param
    result = run_script(repo_root, ["--data", str(names_path), "--preset", preset, "--value-class", FULL_RUN_ENGINE],
                        cwd=tmp_path_factory.mktemp("run"))
    assert result.returncode == 0, result.stderr
    return preset, result


@pytest.mark.slow
def test_full_run_prints_published_param_count_and_losses(published_run):
    preset, result = published_run
    lines = result.stdout.splitlines()
    for line in reference.published(preset).lines:
        assert line in lines, f"{preset}: {line!r} not printed"


@pytest.mark.slow
def test_full_run_prints_published_first_samples(published_run):
    preset, result = published_run
    samples = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("sample ")]
    expected = reference.published(preset).samples
    assert samples[:len(expected)] == expected


@pytest.mark.slow
def test_full_run_stdout_is_the_log_without_progress_bar_when_stderr_is_not_a_terminal(published_run):
    preset, result = published_run
    assert_log_format(result.stdout, get_config(preset).num_steps, 20, preset)
    assert result.stdout.splitlines()[:2] == ["num docs: 32033", "vocab size: 27"]
    assert result.stderr == ""


SHORT_RUN = ["--value-class", "per-op", "--steps", "3", "--samples", "4"]


@pytest.fixture(scope="module")
def short_run(repo_root, names_path, tmp_path_factory):
    """A 3-step run with stderr a pipe, not a terminal (two tests read it)."""
    return run_script(repo_root, ["--data", str(names_path), *SHORT_RUN], cwd=tmp_path_factory.mktemp("short"))


def test_short_run_stdout_is_the_log_without_progress_bar_when_stderr_is_not_a_terminal(short_run):
    result = short_run
    assert result.returncode == 0, result.stderr
    assert_log_format(result.stdout, 3, 4)
    assert result.stdout.splitlines()[3] == "step    1 /    3 | loss 3.3630"  # the first step's lr is the base lr
    assert result.stderr == ""


def test_progress_bar_goes_to_a_terminal_stderr_and_leaves_stdout_unchanged(repo_root, names_path, tmp_path, short_run):
    args = ["--data", str(names_path), *SHORT_RUN]
    plain = short_run
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal of 80 columns
    try:
        with_tty = subprocess.run([sys.executable, str(repo_root / "scripts" / "train_scalar.py"), *args], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=slave, text=True, timeout=300)
        os.close(slave)
        terminal = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's writer has gone
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(master)
    assert with_tty.returncode == 0
    assert with_tty.stdout == plain.stdout
    assert b"3/3 steps (100%)" in terminal and b"\r" in terminal  # the bar was drawn, on the terminal only
    assert b"loss" not in terminal


def test_check_of_the_log_format_rejects_progress_bar_junk():
    good = ("num docs: 3\nvocab size: 6\nnum params: 100\nstep    1 /    1 | loss 1.7918\n\n"
            "--- inference ---\nsample  1: ab\n")
    assert_log_format(good, 1, 1)
    for bad in (good.replace("\n\n", "\n 50%|#####     | 1/2 [00:00<00:00]\n\n"),
                good.replace("loss 1.7918\n", "loss 1.7918\r\n"),
                good.replace("sample  1: ab", "sample  1: ab 3.2it/s")):
        with pytest.raises(AssertionError):
            assert_log_format(bad, 1, 1)


# --- Adam and the learning-rate schedules ---

@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_learning_rate_schedules_match_reference_formulas(preset):
    config = get_config(preset)
    n = config.num_steps
    for s in (0, 1, n // 4, n // 2, n - 1):
        if preset == "microgpt":
            expected = 1e-2 * 0.5 * (1 + math.cos(math.pi * s / n))
        else:
            expected = 1e-2 * (1 - s / n)
        assert learning_rate_at(s, config) == expected, s
    assert learning_rate_at(0, config) == 1e-2
    assert learning_rate_at(n // 2, config) == pytest.approx(0.5e-2, rel=1e-12)


# torch.optim.Adam computes the same update as lr * m_hat / (v_hat ** 0.5 + eps) but arranges
# the bias corrections differently (step size lr / bc1, denominator sqrt(v) / sqrt(bc2) + eps),
# so the two differ by a rounding here and there: measured worst 1.1e-16 (one ulp) on
# parameters of up to ~1 after 6 steps of ~1e-2. 1e-15 is 1e13 times smaller than one step.
ADAM_ATOL = 1e-15


def adam_trajectory_vs_torch(adam_cls, config, steps: int = 6):
    """Run `adam_cls` and torch.optim.Adam on the same parameters and gradients; return both."""
    rng = random.Random(5)
    start = [rng.uniform(-1, 1) for _ in range(40)]
    params = [Value(x) for x in start]
    optimizer = adam_cls(params, config)
    tensor = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Adam([tensor], lr=config.learning_rate, betas=(config.beta1, config.beta2),
                                 eps=config.eps_adam)
    for step in range(steps):
        grads = [rng.gauss(0, 1) * (0 if i % 7 == 0 else 1) for i in range(len(params))]  # some exactly 0
        for p, g in zip(params, grads):
            p.grad = g
        lr = learning_rate_at(step, config)
        optimizer.step(lr, step)
        assert all(p.grad == 0 for p in params), "Adam must reset every gradient (the reference's p.grad = 0)"
        reference.param_groups[0]["lr"] = lr
        tensor.grad = torch.tensor(grads, dtype=torch.float64)
        reference.step()
    return [p.data for p in params], tensor.detach().tolist()


@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_adam_matches_torch_adam_float64(preset):
    ours, torchs = adam_trajectory_vs_torch(Adam, get_config(preset, num_steps=6))
    worst = max(abs(a - b) for a, b in zip(ours, torchs))
    assert worst <= ADAM_ATOL, f"worst parameter difference {worst:.3g}"


def test_adam_check_catches_a_missing_bias_correction():
    """The comparison above fails on an Adam that forgets to correct v's bias."""
    class NoSecondBiasCorrection(Adam):
        def step(self, lr, step):
            for i, p in enumerate(self.params):
                self.m[i] = self.beta1 * self.m[i] + (1 - self.beta1) * p.grad
                self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * p.grad**2
                m_hat = self.m[i] / (1 - self.beta1 ** (step + 1))
                p.data -= lr * m_hat / (self.v[i] ** 0.5 + self.eps)
                p.grad = 0

    ours, torchs = adam_trajectory_vs_torch(NoSecondBiasCorrection, get_config(num_steps=6))
    assert max(abs(a - b) for a, b in zip(ours, torchs)) > ADAM_ATOL


# --- sampling ---

def test_sample_at_near_zero_temperature_is_greedy_decoding(names_path):
    """As the temperature goes to 0 the softmax puts all weight on the largest logit: the
    sample is the argmax chain, computed here without the sampler."""
    docs, tokenizer, model, optimizer, rng = start_run(load_docs(names_path), get_config(), seed=42)
    for s in range(5):
        train_step(model, optimizer, tokenizer.encode(docs[s]), s)
    keys, values = model.empty_cache()
    token, greedy = tokenizer.BOS, []
    for pos in range(model.config.block_size):
        logits = [v.data for v in model.forward(token, pos, keys, values)]
        token = logits.index(max(logits))
        if token == tokenizer.BOS:
            break
        greedy.append(token)
    assert sample(model, tokenizer, rng, temperature=1e-4) == tokenizer.decode(greedy)
    assert len(greedy) > 0


def test_samples_stop_at_block_size_when_bos_never_comes():
    """docs/reference.md: a sample runs positions 0 .. block_size - 1 and stops there without BOS."""
    class NeverBOS:  # the interface `sample` uses, with logits that all but rule out BOS
        config = get_config(vocab_size=3, block_size=4)
        positions = []

        def empty_cache(self):
            return [[]], [[]]

        def forward(self, token_id, pos_id, keys, values):
            self.positions.append(pos_id)
            return [Value(0.0), Value(0.0), Value(-1000.0)]

    model = NeverBOS()
    names = [sample(model, Tokenizer(["a", "b"]), random.Random(1), temperature=0.5) for _ in range(3)]
    assert [len(name) for name in names] == [4, 4, 4]
    assert model.positions == [0, 1, 2, 3] * 3


# --- a loss that is not finite ---

def test_huge_learning_rate_raises_non_finite_loss_error_before_updating(names_path):
    docs, tokenizer, model, optimizer, _ = start_run(load_docs(names_path), get_config(learning_rate=1e300), seed=42)
    train_step(model, optimizer, tokenizer.encode(docs[0]), 0)
    before = model.params_as_floats()
    with pytest.raises(NonFiniteLossError, match="step 2") as raised:
        for s in range(1, 5):
            train_step(model, optimizer, tokenizer.encode(docs[s]), s)
    assert "\n" not in str(raised.value)
    assert model.params_as_floats() == before  # the failing step did not reach the optimizer


@pytest.mark.parametrize("std", [10.0, 1e200])
def test_overflowing_weights_raise_non_finite_loss_error(std, names_path):
    """std 10: exp overflows in the forward pass; std 1e200: squares overflow to inf, the loss
    stays finite (uniform) but the gradients are nan, which must not reach the parameters."""
    config = get_config(init_std=std, proj_init_std=std)
    docs, tokenizer, model, optimizer, _ = start_run(load_docs(names_path), config, seed=42)
    before = model.params_as_floats()
    with pytest.raises(NonFiniteLossError, match="step 1"):
        train_step(model, optimizer, tokenizer.encode(docs[0]), 0)
    assert model.params_as_floats() == before


def test_script_stops_on_non_finite_loss_with_one_line_and_keeps_the_checkpoint(repo_root, names_path, tmp_path):
    checkpoint = tmp_path / "run.json"
    checkpoint.write_bytes(b'{"an": "earlier checkpoint"}')
    result = run_script(repo_root, ["--data", str(names_path), "--value-class", "per-op", "--steps", "5",
                                    "--learning-rate", "1e300", "--save", str(checkpoint), "--overwrite"], cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "step 2" in result.stderr
    assert result.stdout.splitlines()[-1] == "step    1 /    5 | loss 3.3630"
    assert checkpoint.read_bytes() == b'{"an": "earlier checkpoint"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_script_stops_when_gradients_overflow_on_the_last_step(repo_root, names_path, tmp_path):
    """A finite loss with nan gradients on the last step: nothing is saved, nothing sampled."""
    checkpoint = tmp_path / "run.json"
    checkpoint.write_bytes(b"{}")
    result = run_script(repo_root, ["--data", str(names_path), "--value-class", "per-op", "--steps", "1", "--init-std", "1e200",
                                    "--proj-init-std", "1e200", "--save", str(checkpoint), "--overwrite"], cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "gradient" in result.stderr
    assert "sample" not in result.stdout
    assert checkpoint.read_bytes() == b"{}"


# --- other bad input ---

@pytest.mark.parametrize("args, words", [
    (["--n-embd", "15"], ["n_embd (15)", "divisible"]),
    (["--steps", "0"], ["--steps", "out of range"]),
    (["--beta2", "1"], ["beta2"]),
    (["--activation", "gelu"], ["activation", "'gelu'"]),
    (["--temperature", "0"], ["--temperature"]),
    (["--samples", "-1"], ["--samples"]),
])
def test_script_reports_impossible_settings_in_one_line_and_exits_2(args, words, repo_root, names_path, tmp_path):
    result = run_script(repo_root, ["--data", str(names_path), "--value-class", "per-op", *args], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr


def test_script_reports_an_unwritable_save_path_in_one_line(repo_root, tmp_path):
    (tmp_path / "names.txt").write_text("anna\nbob\n")
    (tmp_path / "taken").mkdir()
    result = run_script(repo_root, ["--data", "names.txt", "--value-class", "per-op", "--steps", "1", "--save", "taken"],
                        cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --save taken: is not a regular file")
    assert list((tmp_path / "taken").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.txt", "taken"]
