"""The scalar GPT against docs/reference.md: the parameters' names, order and random draws (rebuilt
with an independent `random.Random(42)`), the traced stages, and logits, loss and gradients
against a small functional torch float64 model written here from docs/reference.md's description.

    pytest tests/test_scalar_model.py
"""
from __future__ import annotations

import random

import pytest
import torch
from torch_checks import assert_float64_close

from compare.step.trace import ScalarTracer, trace_stage_names
from microgpt_scalar.config import get_config
from microgpt_scalar.data import load_docs
from microgpt_scalar.model import GPT
from microgpt_scalar.train import forward_loss, start_run, train_step

# The scalar model and the torch model compute the same sums in different orders (torch's
# matmul and reductions block and vectorise them), so they differ by rounding only. Measured
# over the four configurations below: worst forward abs difference 1.3e-15 (rel up to 1e-12,
# but only on entries that cancel to near zero), worst gradient difference 9e-16 of the
# largest |gradient| of its tensor. A wrong formula anywhere moves results by far more.
FORWARD_RTOL = 1e-11
FORWARD_ATOL = 1e-13  # entries that are zero or cancel to near zero (tiny attention weights)
GRAD_ATOL_OF_MAX = 1e-12  # gradient tolerance, relative to the largest |gradient| of that tensor


def reference_matrices(n_layer: int) -> list[str]:
    """docs/reference.md "Parameters": the creation order of the matrices."""
    names = ["wte", "wpe", "lm_head"]
    for i in range(n_layer):
        names += [f"layer{i}.{m}" for m in ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")]
    return names


# --- parameters and the random number generator ---

@pytest.mark.parametrize("preset", ["microgpt", "microgpt-v2"])
def test_parameters_drawn_in_reference_rng_order(preset, names_path):
    """One Random(42) shuffles the documents, then fills wte, wpe, lm_head, wq, wk, wv, wo, fc1,
    fc2 row by row from gauss(0, std), drawing even where std is 0 (docs/reference.md)."""
    config = get_config(preset)
    e, block = config.n_embd, config.block_size
    docs = load_docs(names_path)
    rng = random.Random(42)
    expected_docs = list(docs)
    rng.shuffle(expected_docs)
    shapes = {"wte": (27, e), "wpe": (block, e), "lm_head": (27, e), "layer0.attn_wq": (e, e), "layer0.attn_wk": (e, e),
              "layer0.attn_wv": (e, e), "layer0.attn_wo": (e, e), "layer0.mlp_fc1": (4 * e, e), "layer0.mlp_fc2": (e, 4 * e)}
    stds = {"microgpt": lambda name: 0.0 if name in ("layer0.attn_wo", "layer0.mlp_fc2") else 0.02,
            "microgpt-v2": lambda name: 0.08}[preset]
    expected = {}
    for name in reference_matrices(1):
        n_out, n_in = shapes[name]
        expected[name] = [[rng.gauss(0, stds(name)) for _ in range(n_in)] for _ in range(n_out)]

    run_docs, _, model, _, run_rng = start_run(docs, config, seed=42)
    assert run_docs == expected_docs
    params = model.params_as_floats()
    assert list(params) == list(expected)
    for name in expected:
        assert params[name] == expected[name], name
    assert run_rng.getstate() == rng.getstate()  # sampling continues the same generator
    if preset == "microgpt":
        assert params["layer0.mlp_fc1"][0][:2] != [0.0, 0.0] and params["layer0.attn_wo"][0][0] == 0.0


def test_parameter_rng_check_fails_when_a_zero_std_matrix_skips_its_draws(names_path):
    """Had the std-0 attn_wo not drawn its numbers, every later matrix would be different."""
    config = get_config("microgpt")
    rng = random.Random(42)
    rng.shuffle(load_docs(names_path))
    for _ in range(27 * 16 + 8 * 16 + 27 * 16 + 3 * 16 * 16):  # wte, wpe, lm_head, wq, wk, wv
        rng.gauss(0, 0.02)
    skipped_first_fc1 = rng.gauss(0, 0.02)  # the draw right after wq, wk, wv: wrong if wo drew
    _, _, model, _, _ = start_run(load_docs(names_path), config, seed=42)
    assert model.params_as_floats()["layer0.mlp_fc1"][0][0] != skipped_first_fc1


def test_parameter_names_and_flat_order_follow_the_matrices_row_by_row():
    config = get_config("microgpt", n_layer=2, vocab_size=5)
    model = GPT(config, random.Random(0))
    assert list(model.state_dict) == reference_matrices(2)
    flat = [p for name in reference_matrices(2) for row in model.state_dict[name] for p in row]
    params = model.parameters()
    assert len(params) == len(flat) and all(p is q for p, q in zip(params, flat))
    for name, matrix in model.state_dict.items():
        rows = {"wte": 5, "wpe": 8, "lm_head": 5}.get(name, 64 if name.endswith("mlp_fc1") else 16)
        assert len(matrix) == rows and {len(r) for r in matrix} == {64 if name.endswith("mlp_fc2") else 16}, name


def test_model_from_params_reproduces_the_drawn_model():
    config = get_config("microgpt-v2", vocab_size=6)
    drawn = GPT(config, random.Random(3))
    copied = GPT(config, params=drawn.params_as_floats())
    tokens = [5, 0, 1, 2, 5]
    assert forward_loss(copied, tokens).data == forward_loss(drawn, tokens).data


def test_model_needs_exactly_one_of_rng_and_params():
    config = get_config(vocab_size=6)
    with pytest.raises(ValueError, match="exactly one"):
        GPT(config)
    with pytest.raises(ValueError, match="exactly one"):
        GPT(config, random.Random(0), params=GPT(config, random.Random(0)).params_as_floats())


# --- the trace ---

def test_trace_records_every_stage_for_every_position():
    config = get_config("microgpt-v2", n_layer=2, vocab_size=6)
    model = GPT(config, random.Random(1))
    tokens = [5, 0, 1, 2, 3, 4, 5]
    with ScalarTracer(model) as tracer:
        forward_loss(model, tokens)
    trace = tracer.trace
    n, e, h = len(tokens) - 1, config.n_embd, config.n_head
    assert list(trace) == trace_stage_names(config)
    for name, per_position in trace.items():
        assert len(per_position) == n, name
        stage = name.split(".")[-1]
        for p, numbers in enumerate(per_position):
            size = {"attn_logits": h * (p + 1), "attn_weights": h * (p + 1), "mlp_hidden": 4 * e, "mlp_act": 4 * e,
                    "logits": 6, "probs": 6, "loss": 1}.get(stage, e)
            assert len(numbers) == size and all(isinstance(x, (int, float)) for x in numbers), (name, p)


def test_trace_stops_at_block_size():
    config = get_config("microgpt", vocab_size=6)  # block_size 8
    model = GPT(config, random.Random(1))
    with ScalarTracer(model) as tracer:
        forward_loss(model, [5] + [0, 1, 2, 3, 4] * 3 + [5])
    assert {len(per_position) for per_position in tracer.trace.values()} == {8}


# --- against a torch float64 model written from docs/reference.md ---

def rmsnorm(x):  # (n, e) -> (n, e)
    return x * (x.pow(2).mean(dim=-1, keepdim=True) + 1e-5) ** -0.5


def torch_reference(weights: dict, config, tokens: list[int]):
    """docs/reference.md's forward for every position at once, with a causal mask; returns the loss
    and the traced stages, each a list over positions of flat tensors."""
    n = min(config.block_size, len(tokens) - 1)
    e, n_head, hd = config.n_embd, config.n_head, config.head_dim
    inputs, targets = torch.tensor(tokens[:n]), torch.tensor(tokens[1:n + 1])
    stages = {}

    def keep(name, x):  # x: (n, ...) -> one flat row per position
        stages[name] = [row.reshape(-1) for row in x]

    x = weights["wte"][inputs] + weights["wpe"][:n]  # (n, e)
    keep("embed", x)
    x = rmsnorm(x)
    keep("embed_norm", x)
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    for i in range(config.n_layer):
        w = {m: weights[f"layer{i}.{m}"] for m in ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")}
        residual = x
        x = rmsnorm(x)
        keep(f"layer{i}.attn_norm", x)
        q, k, v = x @ w["attn_wq"].T, x @ w["attn_wk"].T, x @ w["attn_wv"].T  # (n, e) each
        for name, t in (("q", q), ("k", k), ("v", v)):
            keep(f"layer{i}.{name}", t)
        q, k, v = (t.reshape(n, n_head, hd).transpose(0, 1) for t in (q, k, v))  # (n_head, n, hd)
        logits = (q @ k.transpose(1, 2)) / hd**0.5  # (n_head, n, n): query p, key s
        weights_ = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        stages[f"layer{i}.attn_logits"] = [logits[:, p, :p + 1].reshape(-1) for p in range(n)]
        stages[f"layer{i}.attn_weights"] = [weights_[:, p, :p + 1].reshape(-1) for p in range(n)]
        x = (weights_ @ v).transpose(0, 1).reshape(n, e)  # heads side by side
        keep(f"layer{i}.attn_out", x)
        x = x @ w["attn_wo"].T + residual
        keep(f"layer{i}.attn_residual", x)
        residual = x
        x = rmsnorm(x)
        keep(f"layer{i}.mlp_norm", x)
        x = x @ w["mlp_fc1"].T  # (n, 4e)
        keep(f"layer{i}.mlp_hidden", x)
        x = torch.relu(x) ** 2 if config.activation == "relu2" else torch.relu(x)
        keep(f"layer{i}.mlp_act", x)
        x = x @ w["mlp_fc2"].T + residual
        keep(f"layer{i}.mlp_residual", x)
    logits = x @ weights["lm_head"].T  # (n, vocab)
    keep("logits", logits)
    probs = torch.softmax(logits, dim=-1)
    keep("probs", probs)
    losses = -torch.log(probs[torch.arange(n), targets])  # (n,)
    keep("loss", losses.unsqueeze(1))
    return losses.mean(), stages


def trained_model(names_path, preset: str, steps: int, **overrides):
    """A model a few Adam steps into training, so no matrix is at its all-zero start."""
    docs, tokenizer, model, optimizer, _ = start_run(load_docs(names_path), get_config(preset, **overrides), seed=42)
    for step in range(steps):
        train_step(model, optimizer, tokenizer.encode(docs[step]), step)
    return model, tokenizer


def compare_with_torch(model, tokens):
    """Forward, trace and backward in both; returns how many gradients were not zero."""
    weights = {name: torch.tensor(rows, dtype=torch.float64, requires_grad=True)
               for name, rows in model.params_as_floats().items()}
    with ScalarTracer(model) as tracer:
        loss = forward_loss(model, tokens)
    trace = tracer.trace
    loss.backward()
    torch_loss, stages = torch_reference(weights, model.config, tokens)
    torch_loss.backward()
    assert_float64_close("loss", [loss.data], [torch_loss.item()], FORWARD_ATOL, FORWARD_RTOL)
    assert list(stages) == list(trace) == trace_stage_names(model.config)
    for name, per_position in trace.items():
        for p, numbers in enumerate(per_position):
            assert_float64_close(f"{name} at position {p}", numbers, stages[name][p].detach(), FORWARD_ATOL, FORWARD_RTOL)
    nonzero = 0
    for name, matrix in model.state_dict.items():
        grads = torch.tensor([[p.grad for p in row] for row in matrix], dtype=torch.float64)
        want = weights[name].grad
        assert_float64_close(f"{name}.grad", grads, want, GRAD_ATOL_OF_MAX * float(want.abs().max()), 0.0)
        assert (want != 0).any(), f"{name}: every gradient is zero, the comparison proves nothing"
        nonzero += int((want != 0).sum())
    return nonzero


@pytest.mark.parametrize("preset, overrides", [
    ("microgpt", {}), ("microgpt-v2", {}), ("microgpt", {"n_layer": 2}), ("microgpt-v2", {"n_layer": 2, "n_head": 2}),
])
def test_logits_loss_and_gradients_match_torch_float64_reference(preset, overrides, names_path):
    model, tokenizer = trained_model(names_path, preset, steps=3, **overrides)
    # 17 distinct letters and longer than either block: truncation, and most wte rows in play
    tokens = tokenizer.encode("christopherjamesonwyatt")
    nonzero = compare_with_torch(model, tokens)
    total = len(model.parameters())
    # the rows of wte for the 9 absent letters and, for microgpt, of wpe past position 8 are 0
    assert nonzero > 0.8 * total, f"only {nonzero} of {total} gradients are not zero"


def test_torch_reference_check_catches_a_small_weight_difference(names_path):
    """The comparison above fails, naming the stage, on a model one weight of which is off by 1e-9."""
    model, tokenizer = trained_model(names_path, "microgpt", steps=1)
    model.state_dict["layer0.attn_wk"][3][5].data += 1e-9
    weights = {name: torch.tensor(rows, dtype=torch.float64) for name, rows in model.params_as_floats().items()}
    weights["layer0.attn_wk"][3, 5] -= 1e-9
    tokens = tokenizer.encode("emma")
    with ScalarTracer(model) as tracer:
        forward_loss(model, tokens)
    trace = tracer.trace
    _, stages = torch_reference(weights, model.config, tokens)
    with pytest.raises(AssertionError, match=r"layer0.k at position 0: (.|\n)*at index \(3,\)"):
        for p, numbers in enumerate(trace["layer0.k"]):
            assert_float64_close(f"layer0.k at position {p}", numbers, stages["layer0.k"][p], FORWARD_ATOL, FORWARD_RTOL)


def test_gradient_check_catches_a_wrong_gradient():
    want = torch.tensor([[0.1, -0.2], [0.3, 0.0]], dtype=torch.float64)
    got = want.clone()
    got[1, 0] *= 1 + 1e-9
    with pytest.raises(AssertionError, match=r"wte.grad: (.|\n)*at index \(1, 0\)"):
        assert_float64_close("wte.grad", got, want, GRAD_ATOL_OF_MAX * 0.3, 0.0)
    with pytest.raises(AssertionError, match="wpe.grad: (.|\n)*shape"):
        assert_float64_close("wpe.grad", got[0], want, 1.0, 0.0)
