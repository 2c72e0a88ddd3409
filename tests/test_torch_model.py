"""The torch model against the scalar engine (float64, same weights), and its own invariants."""
from __future__ import annotations

import random

import pytest
import torch
from torch_checks import assert_float64_close, assert_results_close, forward_backward

from compare.step.trace import ScalarTracer, torch_trace, trace_stage_names
from microgpt_scalar.config import get_config, num_params, param_shapes
from microgpt_scalar.data import Tokenizer, default_data_path, load_docs
from microgpt_scalar.model import GPT as ScalarGPT
from microgpt_scalar.train import forward_loss as scalar_forward_loss
from microgpt_torch.fast import BatchedGPT, FusedGPT
from microgpt_torch.model import GPT, IGNORE_INDEX, scalar_name, torch_name
from microgpt_torch.train import make_batch

DATA = default_data_path()  # the names file shipped with the package

# Forward values differ from the scalar engine only in the order of float64 additions inside
# dot products and means (a matmul versus a left-to-right chain of +). Measured on these
# weights (entries up to |34|): worst |diff| 2.3e-14, and the worst entry used 1.2% of the
# budget atol + rtol * |expected| below. The budget stays ~1000x under the smallest real
# error the perturbation test plants (5e-10), and leaves room for another BLAS's order.
FORWARD_ATOL, FORWARD_RTOL = 1e-12, 1e-12
# Gradients sum one product per use of a weight, again in another order: measured worst
# |diff| 2.0e-14, 1.3% of this budget.
GRAD_ATOL, GRAD_RTOL = 1e-12, 1e-12

CONFIGS = {
    "microgpt": get_config("microgpt"),
    "microgpt-v2": get_config("microgpt-v2"),
    "deeper": get_config("microgpt", n_layer=3, n_head=2),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_docs(load_docs(DATA))


def random_params(config, seed: int, std: float = 0.3) -> dict:
    """gauss(0, std) everywhere, projections included, so no gradient is zero by construction
    (the microgpt preset starts attn_wo and mlp_fc2 at zero, which hides most gradients)."""
    rng = random.Random(seed)
    return {name: [[rng.gauss(0, std) for _ in range(n_in)] for _ in range(n_out)]
            for name, (n_out, n_in) in param_shapes(config)}


def assert_trace_close(label: str, got: list, expected: list, atol: float, rtol: float) -> None:
    """A stage of two traces, position by position (attention rows grow with the position)."""
    assert len(got) == len(expected), f"{label}: {len(got)} positions, expected {len(expected)}"
    for p, (got_row, expected_row) in enumerate(zip(got, expected)):
        assert_float64_close(f"{label}[{p}]", got_row, expected_row, atol, rtol)


def run_scalar(config, params, tokens):
    """The scalar engine's loss, trace and gradients for one document."""
    model = ScalarGPT(config, params=params)
    with ScalarTracer(model) as tracer:
        loss = scalar_forward_loss(model, tokens)
    loss.backward()
    grads = {name: [[p.grad for p in row] for row in matrix] for name, matrix in model.state_dict.items()}
    return loss.data, tracer.trace, grads


def run_torch(config, params, tokens, dtype=torch.float64):
    model = GPT.from_scalar_params(config, params, dtype=dtype)
    n = min(config.block_size, len(tokens) - 1)
    idx, targets = torch.tensor([tokens[:n]]), torch.tensor([tokens[1:n + 1]])
    trace = torch_trace(model, tokens)
    logits, loss = model(idx, targets)
    loss.backward()
    return loss.item(), trace, model.scalar_grads(), model


@pytest.fixture(scope="module", params=list(CONFIGS))
def both_engines(request, tokenizer):
    """Name, config, and the scalar and torch results on the longest name in the data."""
    config = CONFIGS[request.param]
    params = random_params(config, seed=7)
    tokens = tokenizer.encode("muhammadibrahim")  # 17 tokens: fills both block sizes
    return request.param, config, params, tokens, run_scalar(config, params, tokens), run_torch(config, params, tokens)


def test_trace_logits_and_loss_match_scalar_engine_float64(both_engines):
    name, config, _, tokens, (scalar_loss, scalar_trace, _), (torch_loss, torch_trace, _, _) = both_engines
    assert list(torch_trace) == trace_stage_names(config)
    assert list(scalar_trace) == list(torch_trace)
    n = min(config.block_size, len(tokens) - 1)
    for stage in trace_stage_names(config):
        assert len(torch_trace[stage]) == n, stage
        assert_trace_close(f"{name} {stage}", torch_trace[stage], scalar_trace[stage], FORWARD_ATOL, FORWARD_RTOL)
    assert_float64_close(f"{name} loss", torch_loss, scalar_loss, FORWARD_ATOL, FORWARD_RTOL)


def test_gradients_match_scalar_engine_float64(both_engines):
    name, config, _, _, (_, _, scalar_grads), (_, _, torch_grads, _) = both_engines
    for param_name, _ in param_shapes(config):
        assert_float64_close(f"{name} {param_name} grad", torch_grads[param_name], scalar_grads[param_name],
                     GRAD_ATOL, GRAD_RTOL)
    # A comparison of zeros proves nothing: rows of wte for characters absent from the name
    # are zero, and so may be a few relu-dead units; everything else must be checked for real.
    nonzero = sum(g != 0 for rows in scalar_grads.values() for row in rows for g in row)
    absent_chars = config.vocab_size - 1 - len(set("muhammadibrahim"))
    assert nonzero >= 0.9 * (num_params(config) - absent_chars * config.n_embd)


def test_scalar_comparison_fails_on_a_perturbed_weight(both_engines):
    name, config, params, tokens, (scalar_loss, scalar_trace, scalar_grads), _ = both_engines
    wrong = {k: [row[:] for row in rows] for k, rows in params.items()}
    wrong[f"layer{config.n_layer - 1}.attn_wv"][0][0] += 1e-9  # far below what a bug would do
    _, torch_trace, torch_grads, _ = run_torch(config, wrong, tokens)
    with pytest.raises(AssertionError, match=r"attn_residual\[0\]: Tensor-likes are not close!(.|\n)*index"):
        stage = f"layer{config.n_layer - 1}.attn_residual"
        assert_trace_close(stage, torch_trace[stage], scalar_trace[stage], FORWARD_ATOL, FORWARD_RTOL)
    with pytest.raises(AssertionError, match="wte grad"):
        assert_float64_close("wte grad", torch_grads["wte"], scalar_grads["wte"], GRAD_ATOL, GRAD_RTOL)


def test_trace_comparison_fails_when_heads_are_swapped(both_engines):
    """The layout check: head 0 and head 1 of the attention weights, exchanged."""
    name, config, _, _, (_, scalar_trace, _), (_, torch_trace, _, _) = both_engines
    stage, p = "layer0.attn_weights", 3
    row = torch_trace[stage][p]
    swapped = row[p + 1: 2 * (p + 1)] + row[: p + 1] + row[2 * (p + 1):]
    wrong = torch_trace[stage][:p] + [swapped] + torch_trace[stage][p + 1:]
    with pytest.raises(AssertionError, match=rf"{stage}\[{p}\]"):
        assert_trace_close(stage, wrong, scalar_trace[stage], FORWARD_ATOL, FORWARD_RTOL)


@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_parameter_names_shapes_and_counts_match_scalar_model(config_name):
    config = CONFIGS[config_name]
    model = GPT(config)
    got = [(scalar_name(name), tuple(p.shape)) for name, p in model.named_parameters()]
    assert got == param_shapes(config)  # same names, shapes and flat order
    assert sum(p.numel() for p in model.parameters()) == num_params(config)
    scalar_shapes = {name: (len(rows), len(rows[0])) for name, rows in
                     ScalarGPT(config, random.Random(0)).params_as_floats().items()}
    assert dict(got) == scalar_shapes


def test_parameter_counts_match_published_figures():
    assert sum(p.numel() for p in GPT(get_config("microgpt")).parameters()) == 4064
    assert sum(p.numel() for p in GPT(get_config("microgpt-v2")).parameters()) == 4192


@pytest.mark.parametrize("scalar, torch_style", [
    ("wte", "wte.weight"), ("wpe", "wpe.weight"), ("lm_head", "lm_head.weight"),
    ("layer0.attn_wq", "layers.0.attn.wq.weight"), ("layer12.mlp_fc2", "layers.12.mlp.fc2.weight"),
])
def test_name_mapping_round_trips(scalar, torch_style):
    assert torch_name(scalar) == torch_style
    assert scalar_name(torch_style) == scalar


@pytest.mark.parametrize("bad", ["wte.weight", "layer0.attn_wx", "layer01.attn_wq", "layers.0.attn_wq", "", "lm_head.bias",
                                 "layer0.attn_fc1"])
def test_torch_name_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match="unknown scalar parameter name"):
        torch_name(bad)


@pytest.mark.parametrize("bad", ["wte", "layer0.attn_wq", "layers.0.attn.wq.bias", "layers.x.mlp.fc1.weight", "wpe.bias",
                                 "layers.0.attn_wq.weight", "layers.0.mlp.wq.weight"])
def test_scalar_name_rejects_unknown_names(bad):
    with pytest.raises(ValueError, match="unknown torch parameter name"):
        scalar_name(bad)


def test_scalar_params_round_trip_exactly_in_float64():
    config = CONFIGS["deeper"]
    params = random_params(config, seed=3)
    assert GPT.from_scalar_params(config, params).scalar_params() == params


def test_float32_model_holds_the_float32_rounding_of_the_params():
    config = CONFIGS["microgpt"]
    params = random_params(config, seed=3)
    got = GPT.from_scalar_params(config, params, dtype=torch.float32).scalar_params()
    for name, rows in params.items():
        assert got[name] == torch.tensor(rows, dtype=torch.float32).double().tolist(), name
    assert got != params  # float32 really rounds, so the float64 test above is not vacuous


def test_from_scalar_params_rejects_a_wrong_shape_with_the_name():
    config = CONFIGS["microgpt"]
    params = random_params(config, seed=3)
    params["layer0.mlp_fc1"] = params["layer0.mlp_fc1"][:-1]
    with pytest.raises(ValueError, match=r"layer0.mlp_fc1 has shape \[63, 16\], the config needs \[64, 16\]"):
        GPT.from_scalar_params(config, params)
    del params["wpe"]
    with pytest.raises(ValueError, match="missing \\['wpe'\\]"):
        GPT.from_scalar_params(config, params)


def test_scalar_grads_are_zero_before_backward():
    config = CONFIGS["microgpt"]
    grads = GPT(config).scalar_grads()
    assert [name for name, _ in param_shapes(config)] == list(grads)
    assert all(g == 0.0 for rows in grads.values() for row in rows for g in row)


# Float32 runs of the same maths differ by rounding of ~6e-8 relative per operation, growing
# with depth: measured worst 2.4e-5 on logits up to |43| (deeper config, fused vs readable and
# float32 vs float64), which uses 5% of this budget.
FLOAT32_ATOL, FLOAT32_RTOL = 1e-4, 1e-5


MODELS = {"readable": GPT, "fused": FusedGPT, "batched": BatchedGPT}


def model_and_batch(tokenizer, config_name="microgpt-v2", dtype=torch.float64, num_docs=48, model_class=GPT):
    config = CONFIGS[config_name]
    model = model_class.from_scalar_params(config, random_params(config, seed=11), dtype=dtype)
    docs = load_docs(DATA)[1000:1000 + num_docs]
    idx, targets = make_batch([tokenizer.encode(doc) for doc in docs], config.block_size)
    return model, idx, targets


@pytest.mark.parametrize("path", ["readable", "fused", "batched"])
@pytest.mark.parametrize("config_name", ["microgpt", "microgpt-v2"])
def test_changing_a_later_token_never_changes_earlier_logits(tokenizer, path, config_name):
    model, idx, _ = model_and_batch(tokenizer, config_name, model_class=MODELS[path])
    base, _ = model(idx)
    for p in range(idx.size(1)):
        changed = idx.clone()
        changed[:, p] = (changed[:, p] + 1) % model.config.vocab_size
        logits, _ = model(changed)
        # Masked attention weights are exactly zero, so earlier positions are bit-identical.
        assert torch.equal(logits[:, :p], base[:, :p]), f"position < {p} changed"
        # The check can see a change: the changed position's own logits do move.
        assert not torch.equal(logits[:, p], base[:, p])


def test_causality_check_catches_attention_without_a_mask(tokenizer, monkeypatch):
    model, idx, _ = model_and_batch(tokenizer)
    base, _ = model(idx)
    monkeypatch.setattr(torch.Tensor, "tril", lambda self: torch.ones_like(self))  # every position sees all
    changed = idx.clone()
    changed[:, -1] = (changed[:, -1] + 1) % model.config.vocab_size
    logits, _ = model(changed)
    assert not torch.equal(logits[:, :-1], base[:, :-1])


def test_padded_batch_equals_sequences_run_one_by_one(tokenizer):
    model, idx, targets = model_and_batch(tokenizer, num_docs=12)
    logits, loss = model(idx, targets)
    loss_sum, count = 0.0, 0
    for b in range(idx.size(0)):
        n = int((targets[b] != IGNORE_INDEX).sum())
        assert (targets[b, n:] == IGNORE_INDEX).all() and n >= 1
        one_logits, one_loss = model(idx[b:b + 1, :n], targets[b:b + 1, :n])
        assert_float64_close(f"doc {b} logits", logits[b, :n], one_logits[0], FORWARD_ATOL, FORWARD_RTOL)
        loss_sum, count = loss_sum + one_loss.item() * n, count + n
    assert_float64_close("batch loss", loss, loss_sum / count, FORWARD_ATOL, FORWARD_RTOL)
    # Not vacuous: padding targets that are real tokens would change the loss.
    _, wrong_loss = model(idx, targets.masked_fill(targets == IGNORE_INDEX, 0))
    with pytest.raises(AssertionError, match="batch loss"):
        assert_float64_close("batch loss", wrong_loss, loss_sum / count, FORWARD_ATOL, FORWARD_RTOL)


@pytest.mark.parametrize("path", ["fused", "batched"])
@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_fused_and_batched_paths_equal_readable_path(tokenizer, path, config_name, dtype):
    atol, rtol = (FORWARD_ATOL, FORWARD_RTOL) if dtype == torch.float64 else (FLOAT32_ATOL, FLOAT32_RTOL)
    model, idx, targets = model_and_batch(tokenizer, config_name, dtype)
    fast, _, _ = model_and_batch(tokenizer, config_name, dtype, model_class=MODELS[path])
    assert type(fast) is MODELS[path] and type(model) is GPT
    readable = forward_backward(model, idx, targets)
    assert_results_close(path, forward_backward(fast, idx, targets), readable, atol, rtol)


def test_float32_model_follows_float64_model(tokenizer):
    model64, idx, targets = model_and_batch(tokenizer, "deeper")
    model32, _, _ = model_and_batch(tokenizer, "deeper", torch.float32)
    logits64, loss64 = model64(idx, targets)
    logits32, loss32 = model32(idx, targets)
    assert logits32.dtype == torch.float32
    assert_float64_close("float32 logits", logits32, logits64, FLOAT32_ATOL, FLOAT32_RTOL)
    assert_float64_close("float32 loss", loss32, loss64, FLOAT32_ATOL, FLOAT32_RTOL)


def test_gradients_match_finite_differences(tokenizer):
    """An oracle independent of both engines: (loss(w + h) - loss(w - h)) / 2h."""
    model, idx, targets = model_and_batch(tokenizer, "deeper", num_docs=6)
    _, loss = model(idx, targets)
    loss.backward()
    g = torch.Generator().manual_seed(0)
    h = 1e-6  # central differences: error ~ h**2 * f''' + eps / h, about 1e-10 here
    for name, param in model.named_parameters():
        for flat in torch.randint(param.numel(), (3,), generator=g).tolist():
            with torch.no_grad():
                original = param.view(-1)[flat].item()
                param.view(-1)[flat] = original + h
                up = model(idx, targets)[1].item()
                param.view(-1)[flat] = original - h
                down = model(idx, targets)[1].item()
                param.view(-1)[flat] = original
            # Measured worst |autograd - finite difference| 4.8e-9; 1e-7 still rejects a wrong
            # gradient, which is off by about the size of the gradient (most here are 1e-2 .. 2).
            assert_float64_close(f"{name}[{flat}] grad", param.grad.view(-1)[flat], (up - down) / (2 * h), 1e-7, 1e-5)


def test_trace_needs_the_readable_path(tokenizer):
    model, _, _ = model_and_batch(tokenizer, num_docs=2, model_class=FusedGPT)
    with pytest.raises(ValueError, match="a FusedGPT keeps no intermediates"):
        torch_trace(model, tokenizer.encode("emma"))


def test_tracing_leaves_no_hooks_and_changes_nothing(tokenizer):
    model, idx, targets = model_and_batch(tokenizer, num_docs=4)
    before = forward_backward(model, idx, targets)
    torch_trace(model, tokenizer.encode("emma"))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert_results_close("after a trace", forward_backward(model, idx, targets), before, 0.0, 0.0)


def test_sequence_longer_than_block_size_is_rejected():
    model = GPT(CONFIGS["microgpt"])
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_generate_is_driven_by_the_generator_alone():
    config = CONFIGS["microgpt"]
    model = GPT.from_scalar_params(config, random_params(config, seed=5, std=0.5))
    bos = config.vocab_size - 1
    torch.manual_seed(123)  # global state must not matter
    first = model.generate(torch.full((16, 1), bos), temperature=0.8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(456)
    again = model.generate(torch.full((16, 1), bos), temperature=0.8, generator=torch.Generator().manual_seed(1))
    other = model.generate(torch.full((16, 1), bos), temperature=0.8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.size(1) <= config.block_size + 1 and (first[:, 0] == bos).all()
    for row in first[:, 1:].tolist():  # after the first BOS a row holds only BOS
        if bos in row:
            assert set(row[row.index(bos):]) == {bos}
    assert model.generate(generator=torch.Generator().manual_seed(1)).size(0) == 1  # default: one BOS row
