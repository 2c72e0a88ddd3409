"""Checks of steps 1-7, the model: each runs the learner's piece and the scalar engine's on the
same inputs and weights, and compares outputs and gradients element by element.

A check returns the lines of its report when everything agrees and raises `Wrong` otherwise.
The typical mistakes each check names are computed here in torch, on the same numbers: a
learner's result that matches one of them is told which one.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from microgpt_torch.model import softmax, torch_name

from . import scalar_side
from .scalar_side import LAYER, SEED, dense_config, draw_params, random_rows
from .verdict import Learner, Wrong, as_float64, expect_close, leaf, load_weights

DOCS, POSITIONS = 2, 5  # the batch every model check runs: (B, T) = (2, 5)
BATCH_AXES = ("document", "position", "element")
MATRIX_AXES = ("row", "column")


def weight(params: dict, name: str) -> torch.Tensor:
    return torch.tensor(params[name], dtype=torch.float64)


def backward_weighted(out, coef) -> None:
    """backward of sum(out * coef), the same weighted sum the scalar side takes."""
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Wrong("the output does not record its gradient (it has no grad_fn)",
                    "compute it from the inputs and weights with tensor operations, outside torch.no_grad(), "
                    "without .detach(), .item() or .tolist() on the way")
    (out * torch.as_tensor(coef, dtype=out.dtype)).sum().backward()


def grad_line(name: str, tensor: torch.Tensor, expected, axes=MATRIX_AXES, mistakes=()) -> str:
    return expect_close(f"{name}.grad", tensor.grad, expected, axes, mistakes,
                        hint_none=f"no gradient reached {name}: is it used in the output, and is the output "
                                  "computed without .detach() or torch.no_grad()?")


# Step 1 -----------------------------------------------------------------------------------------

def check_gradient(learner: Learner) -> list[str]:
    rng = random.Random(SEED)
    a, b = random_rows(rng, 6, low=-2.0, high=1.0), random_rows(rng, 6, low=-3.0, high=3.0)
    loss, grad_a, grad_b = scalar_side.gradient(a, b)
    result = learner.call("loss_and_gradients(a, b)", learner.get("loss_and_gradients"), list(a), list(b), hints=[
        ("does not require grad", "backward found nothing to differentiate: make a and b with requires_grad=True"),
        ("only be implicitly created for scalar", "backward starts from one number: take the mean of the terms first")])
    if not isinstance(result, tuple) or len(result) != 3:
        raise Wrong(f"loss_and_gradients returned {type(result).__name__}, expected a tuple (loss, a.grad, b.grad)")
    got_loss, got_a, got_b = result
    sum_instead = ("the sum of the terms, not their mean: divide by the number of terms (or use .mean())",)
    lines = [expect_close("a.grad", got_a, grad_a, mistakes=[(sum_instead[0], lambda: as_float64(grad_a) * len(a))],
                          hint_none="a.grad is None: make a with requires_grad=True and call loss.backward() "
                                    "before reading it"),
             expect_close("b.grad", got_b, grad_b, hint_none="b.grad is None: make b with requires_grad=True")]
    if isinstance(got_loss, torch.Tensor):
        raise Wrong(f"the loss is a tensor of shape {tuple(got_loss.shape)}, expected a Python float",
                    "return loss.item(), the number inside a one-element tensor (your Value's .data)")
    lines.insert(0, expect_close("loss", torch.tensor(float(got_loss), dtype=torch.float64), loss, ("value",),
                                 mistakes=[(sum_instead[0], lambda: as_float64(loss * len(a)))]))
    return lines


# Step 2 -----------------------------------------------------------------------------------------

def check_rmsnorm(learner: Learner) -> list[str]:
    rng = random.Random(SEED)
    config = dense_config()
    x_rows = random_rows(rng, DOCS, POSITIONS, config.n_embd)
    coef = random_rows(rng, DOCS, POSITIONS, config.n_embd)
    flat_rows = [row for doc in x_rows for row in doc]
    out, x_grad = scalar_side.rmsnorm_rows(flat_rows, [row for doc in coef for row in doc])
    out, x_grad = as_float64(out).view(DOCS, POSITIONS, -1), as_float64(x_grad).view(DOCS, POSITIONS, -1)
    x = leaf(x_rows)
    got = learner.call("rmsnorm(x)", learner.get("rmsnorm"), x, hints=[
        ("must match the size of tensor", "the shapes do not broadcast: keep the averaged axis with keepdim=True, "
                                          "so the scale has shape (B, T, 1)")])
    plain = x.detach()
    mistakes = [
        ("the mean over every number of the batch, not over each position's n_embd numbers: "
         "(x * x).mean(dim=-1, keepdim=True)", lambda: plain * ((plain * plain).mean() + 1e-5) ** -0.5),
        ("multiplying by (ms + 1e-5) ** 0.5 instead of ** -0.5", lambda: plain * ((plain * plain).mean(-1, True) + 1e-5) ** 0.5),
        ("the root of the sum of squares, not of their mean", lambda: plain * ((plain * plain).sum(-1, True) + 1e-5) ** -0.5),
    ]
    lines = [expect_close("rmsnorm(x)", got, out, BATCH_AXES, mistakes)]
    backward_weighted(got, coef)
    lines.append(grad_line("x", x, x_grad, BATCH_AXES))
    return lines


# Step 3 -----------------------------------------------------------------------------------------

def check_linear(learner: Learner) -> list[str]:
    Linear = learner.get("Linear")
    lines = []
    for n_in, n_out in ((16, 64), (16, 16)):  # one not square, so a transpose cannot hide; one square
        rng = random.Random(SEED + n_out)
        w_rows = random_rows(rng, n_out, n_in)
        x_rows = random_rows(rng, DOCS * POSITIONS, n_in)
        coef = random_rows(rng, DOCS * POSITIONS, n_out)
        out, x_grad, w_grad = scalar_side.linear_rows(x_rows, w_rows, coef)
        what = f"Linear({n_in}, {n_out})"
        layer = learner.call(what, Linear, n_in, n_out)
        load_weights(what, layer, {"weight": torch.tensor(w_rows, dtype=torch.float64)},
                     "name the weight `weight`, an nn.Parameter of shape (n_out, n_in), as nn.Linear does")
        x = leaf(x_rows).view(DOCS, POSITIONS, n_in)
        x.retain_grad()
        got = learner.call(f"{what}(x)", layer, x, hints=[
            ("cannot be multiplied", "x is (..., n_in) and the weight (n_out, n_in): multiply x by weight.T")])
        w = torch.tensor(w_rows, dtype=torch.float64)
        mistakes = [("x @ weight without .T: the weight is (n_out, n_in), so y = x @ weight.T",
                     lambda: x.detach() @ w)]
        lines.append(expect_close(f"{what}(x)", got, as_float64(out).view(DOCS, POSITIONS, n_out), BATCH_AXES,
                                  mistakes))
        backward_weighted(got, as_float64(coef).view(DOCS, POSITIONS, n_out))
        lines.append(grad_line("x", x, as_float64(x_grad).view(DOCS, POSITIONS, n_in), BATCH_AXES))
        lines.append(grad_line(f"{what}.weight", dict(layer.named_parameters())["weight"], w_grad))
    return lines


# Steps 4-6: a sublayer, run on a batch of positions ----------------------------------------------

def sublayer_case(seed_offset: int):
    """(config, params, x as nested floats (B, T, C), coef of the output)."""
    config = dense_config()
    rng = random.Random(SEED + seed_offset)
    return config, draw_params(config), random_rows(rng, DOCS, POSITIONS, config.n_embd), \
        random_rows(rng, DOCS, POSITIONS, config.n_embd)


def layer_state_dict(params: dict, prefix: str, names) -> dict:
    """Module names -> tensors, from the scalar names of layer 0: ('fc1', ...) -> {'fc1.weight': ...}."""
    return {f"{module}.weight": weight(params, f"layer{LAYER}.{prefix}{module.replace('.', '_')}") for module in names}


def compare_sublayer(learner, what, module, params, x_rows, coef, expected, state_dict, mistakes, naming, hints=()):
    """Load the weights, run the module on x, compare the output, x's gradient and each weight's."""
    load_weights(what, module, state_dict, naming)
    out, x_grad, weight_grads = expected
    x = leaf(x_rows)
    got = learner.call(f"{what}(x)", module, x, hints=hints)
    lines = [expect_close(f"{what}(x)", got, out, BATCH_AXES, [(d, lambda m=m: m(x.detach())) for d, m in mistakes])]
    backward_weighted(got, coef)
    lines.append(grad_line("x", x, x_grad, BATCH_AXES))
    parameters = dict(module.named_parameters())
    for name in state_dict:
        scalar = f"layer{LAYER}." + torch_name_to_layer_name(name)
        lines.append(grad_line(name.removesuffix(".weight"), parameters[name], weight_grads[scalar]))
    return lines


def torch_name_to_layer_name(name: str) -> str:
    """'fc1.weight' -> 'mlp_fc1', 'attn.wq.weight' -> 'attn_wq', 'wq.weight' -> 'attn_wq'."""
    parts = name.removesuffix(".weight").split(".")
    if len(parts) == 2:
        return f"{parts[0]}_{parts[1]}"
    return ("attn_" if parts[0].startswith("w") else "mlp_") + parts[0]


def mlp_reference(params, squared=True):
    fc1, fc2 = weight(params, f"layer{LAYER}.mlp_fc1"), weight(params, f"layer{LAYER}.mlp_fc2")
    return lambda x: ((F.relu(x @ fc1.T) ** 2) if squared else F.relu(x @ fc1.T)) @ fc2.T


def check_mlp(learner: Learner) -> list[str]:
    config, params, x_rows, coef = sublayer_case(4)
    module = learner.call("MLP(config)", learner.get("MLP"), config)
    mistakes = [("relu without the square: microgpt's activation is relu(x) ** 2", mlp_reference(params, squared=False))]
    return compare_sublayer(learner, "MLP", module, params, x_rows, coef,
                            scalar_side.mlp(config, params, x_rows, coef),
                            layer_state_dict(params, "mlp_", ("fc1", "fc2")), mistakes,
                            "the project names them fc1 and fc2, each an nn.Linear(..., bias=False)",
                            hints=[("cannot be multiplied", "fc1 is nn.Linear(n_embd, 4 * n_embd) and fc2 "
                                                            "nn.Linear(4 * n_embd, n_embd)")])


def attention_reference(params, n_head: int, mask="tril", scale=True, split="view-transpose", merge="transpose"):
    """The attention of layer 0 in torch, right by default; each argument can plant one mistake."""
    wq, wk, wv, wo = (weight(params, f"layer{LAYER}.attn_{n}") for n in ("wq", "wk", "wv", "wo"))

    def run(x):
        B, T, C = x.shape
        hd = C // n_head

        def heads(t):
            if split == "view-transpose":
                return t.view(B, T, n_head, hd).transpose(1, 2)
            return t.reshape(B, n_head, T, hd)  # the wrong cut: positions and heads mixed

        q, k, v = heads(x @ wq.T), heads(x @ wk.T), heads(x @ wv.T)
        return wo_of(merge_heads(head_attention(q, k, v, mask, scale), B, T, C, merge), wo)

    return run


def head_attention(q, k, v, mask="tril", scale=True, softmax_dim=-1):
    """softmax(q k^T / sqrt(hd), masked) v over the last two axes (..., T, hd)."""
    T, hd = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / hd**0.5
    if mask == "tril":
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    elif mask == "triu":
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).triu(), float("-inf"))
    weights = softmax(scores) if softmax_dim == -1 else torch.softmax(scores, dim=softmax_dim)
    return weights @ v


def merge_heads(x, B, T, C, merge):
    return x.transpose(1, 2).reshape(B, T, C) if merge == "transpose" else x.reshape(B, T, C)


def wo_of(x, wo):
    return x @ wo.T


def check_attention_head(learner: Learner) -> list[str]:
    rng = random.Random(SEED + 5)
    T, hd = 6, 4
    q_rows, k_rows, v_rows, coef = (random_rows(rng, T, hd, low=-2.0, high=2.0) for _ in range(4))
    out, q_grad, k_grad, v_grad = scalar_side.attention_head(q_rows, k_rows, v_rows, coef)
    q, k, v = leaf(q_rows), leaf(k_rows), leaf(v_rows)
    got = learner.call("attention_head(q, k, v)", learner.get("attention_head"), q, k, v, hints=[
        ("cannot be multiplied", "q is (T, hd) and k (T, hd): the scores are q @ k.transpose(-2, -1), (T, T)")])
    plain = [t.detach() for t in (q, k, v)]
    mistakes = [
        ("no causal mask: every position also reads the positions after it (masked_fill the scores above "
         "the diagonal with -inf)", lambda: head_attention(*plain, mask=None)),
        ("the mask hides the past instead of the future: keep the lower triangle, tril(), positions 0 .. p",
         lambda: head_attention(*plain, mask="triu")),
        ("the scores are not divided by sqrt(head_dim)", lambda: head_attention(*plain, scale=False)),
        ("softmax over the wrong axis: each row (one query) sums to 1, softmax(..., dim=-1)",
         lambda: head_attention(*plain, softmax_dim=-2)),
    ]
    lines = [expect_close("attention_head(q, k, v)", got, out, ("position", "element"), mistakes)]
    backward_weighted(got, coef)
    for name, tensor, expected in (("q", q, q_grad), ("k", k, k_grad), ("v", v, v_grad)):
        lines.append(grad_line(name, tensor, expected, ("position", "element")))
    return lines


def check_attention(learner: Learner) -> list[str]:
    lines = check_attention_head(learner)
    config, params, x_rows, coef = sublayer_case(6)
    module = learner.call("Attention(config)", learner.get("Attention"), config)
    n = config.n_head
    mistakes = [
        ("no causal mask: every position also reads the positions after it", attention_reference(params, n, mask=None)),
        ("the heads are cut with view(B, nh, T, hd), which mixes positions into heads: "
         "view(B, T, nh, hd).transpose(1, 2)", attention_reference(params, n, split="reshape")),
        ("the heads are put back with view/reshape(B, T, C) without transpose(1, 2) first",
         attention_reference(params, n, merge="reshape")),
        ("the scores are not divided by sqrt(head_dim)", attention_reference(params, n, scale=False)),
        ("the mask hides the past instead of the future: tril() keeps positions 0 .. p",
         attention_reference(params, n, mask="triu")),
    ]
    return lines + compare_sublayer(
        learner, "Attention", module, params, x_rows, coef, scalar_side.attention(config, params, x_rows, coef),
        layer_state_dict(params, "attn_", ("wq", "wk", "wv", "wo")), mistakes,
        "the project names them wq, wk, wv and wo, each an nn.Linear(n_embd, n_embd, bias=False)",
        hints=[("cannot be multiplied", "scores are q @ k.transpose(-2, -1): (B, nh, T, hd) @ (B, nh, hd, T)"),
               ("view size is not compatible", "after transpose(1, 2) the tensor is not contiguous: use reshape")])


def block_reference(params, config, attn_residual=True, mlp_residual=True, norm=True):
    from microgpt_torch.model import rmsnorm

    attention, mlp = attention_reference(params, config.n_head), mlp_reference(params)
    normed = rmsnorm if norm else (lambda x: x)

    def run(x):
        a = attention(normed(x))
        x = x + a if attn_residual else a
        m = mlp(normed(x))
        return x + m if mlp_residual else m

    return run


def check_block(learner: Learner) -> list[str]:
    config, params, x_rows, coef = sublayer_case(7)
    module = learner.call("Block(config)", learner.get("Block"), config)
    names = ("attn.wq", "attn.wk", "attn.wv", "attn.wo", "mlp.fc1", "mlp.fc2")
    state_dict = {f"{n}.weight": weight(params, f"layer{LAYER}." + n.replace(".", "_")) for n in names}
    mistakes = [
        ("no residual around attention: x = x + self.attn(rmsnorm(x)), not x = self.attn(...)",
         block_reference(params, config, attn_residual=False)),
        ("no residual around the MLP: x = x + self.mlp(rmsnorm(x))", block_reference(params, config, mlp_residual=False)),
        ("the sublayers read x itself: each reads rmsnorm(x)", block_reference(params, config, norm=False)),
    ]
    return compare_sublayer(learner, "Block", module, params, x_rows, coef,
                            scalar_side.block(config, params, x_rows, coef), state_dict, mistakes,
                            "the project names the sublayers attn (Attention) and mlp (MLP)")


# Step 7 -----------------------------------------------------------------------------------------

def project_state_dict(params: dict) -> dict:
    """The project's torch names -> float64 tensors: what a saved microgpt_torch model holds."""
    return {torch_name(name): weight(params, name) for name in params}


def gpt_reference(params, config, norm=True, positions=True):
    from microgpt_torch.model import GPT, rmsnorm

    model = GPT.from_scalar_params(config, params)

    def run(idx):
        x = model.wte(idx) + (model.wpe(torch.arange(idx.shape[1])) if positions else 0)
        x = rmsnorm(x) if norm else x
        for block in model.layers:
            x = block(x)
        return model.lm_head(x)

    return run


def check_gpt(learner: Learner) -> list[str]:
    config = dense_config()
    params = draw_params(config)
    rng = random.Random(SEED + 8)
    idx_rows = [[rng.randrange(config.vocab_size) for _ in range(config.block_size)] for _ in range(DOCS)]
    coef = random_rows(rng, DOCS, config.block_size, config.vocab_size)
    logits, grads = scalar_side.gpt_logits(config, params, idx_rows, coef)
    model = learner.call("GPT(config)", learner.get("GPT"), config)
    load_weights("GPT", model, project_state_dict(params),
                 "the project names them wte, wpe, lm_head and layers (an nn.ModuleList of Block): "
                 "model.state_dict() must hold the same names for the project's weights to load")
    idx = torch.tensor(idx_rows)
    got = learner.call("GPT(idx)", model, idx)
    if isinstance(got, tuple):
        got = got[0]
    mistakes = [("no rmsnorm after adding the token and position embeddings", gpt_reference(params, config, norm=False)),
                ("the position embedding is left out: x = wte(idx) + wpe(positions)",
                 gpt_reference(params, config, positions=False))]
    with torch.no_grad():
        lines = [expect_close("logits", got, logits, ("document", "position", "token"),
                              [(d, lambda m=m: m(idx)) for d, m in mistakes])]
    backward_weighted(got, coef)
    parameters = dict(model.named_parameters())
    for name, expected in grads.items():
        lines.append(grad_line(torch_name(name).removesuffix(".weight"), parameters[torch_name(name)], expected))
    return lines
