"""Which operations to suspect when the engines part: those between the last number that
agreed and the first that did not, with any operator probe that failed among them.

    forward_suspects("layer0.mlp_norm")   -> ("rmsnorm", "x * x, sum, / n, + 1e-5, ** -0.5, x * scale", {...})
    backward_suspects("layer0.mlp_fc1")   -> what lies between mlp_fc1's gradient and the loss's end
"""
from __future__ import annotations

RMSNORM = ("rmsnorm", "x * x, sum, / n, + 1e-5, ** -0.5, x * scale", {"*", "+", "/", "**", "same node twice"})
LINEAR = ("linear", "w * x, sum (the built-in sum starts from 0: 0 + x)", {"*", "+"})
SOFTMAX = ("softmax", "x - max, exp, sum, e / total", {"-", "exp", "+", "/"})

# trace stage (without its layer prefix) -> (name, the operations that make it, probe operators)
FORWARD = {
    "embed": ("embedding", "wte[token] + wpe[position]", {"+"}),
    "embed_norm": RMSNORM,
    "attn_norm": RMSNORM,
    "q": LINEAR, "k": LINEAR, "v": LINEAR,
    "attn_logits": ("attention scores", "q * k, sum, / head_dim ** 0.5", {"*", "+", "/", "**"}),
    "attn_weights": SOFTMAX,
    "attn_out": ("attention output", "weights * v, sum", {"*", "+"}),
    "attn_residual": ("attn_wo and the residual", "w * x, sum, + x_residual", {"*", "+"}),
    "mlp_norm": RMSNORM,
    "mlp_hidden": LINEAR,
    "mlp_act": ("activation", "relu (and ** 2 under relu2)", {"relu", "**"}),
    "mlp_residual": ("mlp_fc2 and the residual", "w * x, sum, + x_residual", {"*", "+"}),
    "logits": ("lm_head", "w * x, sum", {"*", "+"}),
    "probs": SOFTMAX,
    "loss": ("loss", "-log(p), the mean (1 / n) * sum", {"log", "neg", "*", "+"}),
}

# the wrong gradient nearest the loss -> what backward passed through to reach it
BACKWARD = {
    "lm_head": ("loss and output softmax", "-log(p), (1 / n) * sum, x - max, exp, sum, e / total",
                {"log", "neg", "*", "+", "-", "exp", "/", "two paths", "backward twice"}),
    "mlp_fc2": ("lm_head's products and the residual", "w * x, sum, + x_residual", {"*", "+", "two paths"}),
    "mlp_fc1": ("activation", "relu (and ** 2 under relu2), mlp_fc2's w * x", {"relu", "**", "*"}),
    "attn_wo": ("rmsnorm before the MLP", "x * x, sum, / n, + 1e-5, ** -0.5, x * scale",
                {"*", "+", "/", "**", "same node twice"}),
    "attn_wv": ("attention", "weights * v, softmax (x - max, exp, e / total), q * k / head_dim ** 0.5",
                {"*", "-", "exp", "/", "**", "two paths"}),
    "wte": ("rmsnorm of the embedding", "x * x, sum, / n, + 1e-5, ** -0.5, x * scale",
            {"*", "+", "/", "**", "same node twice"}),
}
BACKWARD["attn_wq"] = BACKWARD["attn_wk"] = BACKWARD["attn_wv"]
BACKWARD["wpe"] = BACKWARD["wte"]


def forward_suspects(stage: str) -> tuple[str, str, set]:
    return FORWARD[stage.split(".")[-1]]


def backward_suspects(tensor: str) -> tuple[str, str, set]:
    return BACKWARD[tensor.split(".")[-1]]


def matching_probes(probes, operators: set) -> list:
    """The failing probes among `operators`: what the engine's operations already showed."""
    if probes is None:
        return []
    return [r for r in probes.faults if r.operator in operators]
