"""The GPT of microgpt on tensors: every position of a batch of sequences at once.

`microgpt_scalar/model.py` reads one token at a time with a key/value cache; this model
reads a whole (B, T) batch and gets the same causality from a mask, so row p of the
attention sees positions 0 .. p only. The readable forward writes RMSNorm, attention and
the MLP as explicit tensor ops in the scalar code's order and with its names; `fused=True`
swaps in torch's fused kernels for speed.

    model = GPT.from_scalar_params(config, scalar_model.params_as_floats())  # same weights
    logits, loss = model(idx, targets)             # idx, targets: (B, T) token ids
    trace = {}; model(idx, targets, trace=trace)   # the scalar trace's layout, batch row 0
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from microgpt_scalar.config import GPTConfig, init_std_of, param_shapes

IGNORE_INDEX = -1  # a target that adds nothing to the loss (padding after a document's end)

_LAYER_NAME = re.compile(r"layer(0|[1-9][0-9]*)\.(attn_wq|attn_wk|attn_wv|attn_wo|mlp_fc1|mlp_fc2)")
_TORCH_LAYER_NAME = re.compile(r"layers\.(0|[1-9][0-9]*)\.(attn_wq|attn_wk|attn_wv|attn_wo|mlp_fc1|mlp_fc2)\.weight")
_TOP_NAMES = ("wte", "wpe", "lm_head")


def torch_name(scalar_name: str) -> str:
    """"layer0.attn_wq" -> "layers.0.attn_wq.weight"; "wte" -> "wte.weight"."""
    if scalar_name in _TOP_NAMES:
        return f"{scalar_name}.weight"
    match = _LAYER_NAME.fullmatch(scalar_name)
    if match is None:
        raise ValueError(f"unknown scalar parameter name {scalar_name!r}")
    return f"layers.{match[1]}.{match[2]}.weight"


def scalar_name(torch_name: str) -> str:
    """"layers.0.attn_wq.weight" -> "layer0.attn_wq"; "wte.weight" -> "wte"."""
    top = torch_name.removesuffix(".weight")
    if top in _TOP_NAMES and torch_name.endswith(".weight"):
        return top
    match = _TORCH_LAYER_NAME.fullmatch(torch_name)
    if match is None:
        raise ValueError(f"unknown torch parameter name {torch_name!r}")
    return f"layer{match[1]}.{match[2]}"


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, written as the scalar code writes it."""
    max_val = logits.max(dim=-1, keepdim=True).values.detach()  # a plain float there: stability only
    exps = (logits - max_val).exp()
    total = exps.sum(dim=-1, keepdim=True)
    return exps / total


def rmsnorm(x: torch.Tensor) -> torch.Tensor:
    ms = (x * x).mean(dim=-1, keepdim=True)  # mean of squares, (B, T, 1)
    scale = (ms + 1e-5) ** -0.5
    return x * scale


def fused_rmsnorm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),), eps=1e-5)


class Block(nn.Module):
    """One layer's weights; the maths that uses them is `GPT.attention` and `GPT.mlp`,
    as in the scalar model, so the two files line up."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        e = config.n_embd
        self.attn_wq = nn.Linear(e, e, bias=False)
        self.attn_wk = nn.Linear(e, e, bias=False)
        self.attn_wv = nn.Linear(e, e, bias=False)
        self.attn_wo = nn.Linear(e, e, bias=False)
        self.mlp_fc1 = nn.Linear(e, 4 * e, bias=False)
        self.mlp_fc2 = nn.Linear(4 * e, e, bias=False)


class GPT(nn.Module):
    """Parameters and the forward pass. Weights are [n_out][n_in], the scalar layout."""

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None):
        """Draw every matrix from gauss(0, std) with `generator` (seeded 0 if none is given,
        so building a model never depends on torch's global random state)."""
        super().__init__()
        self.config = config
        # Registered in the scalar creation order, so parameters() walks the flat scalar order.
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        if generator is None:
            generator = torch.Generator("cpu").manual_seed(0)
        with torch.no_grad():
            for name, param in self.named_parameters():
                # Drawn on the CPU whatever the default device (a CPU generator cannot fill a
                # CUDA tensor), so the same seed gives the same weights on every device.
                values = torch.empty(param.shape, dtype=param.dtype, device="cpu")
                param.copy_(values.normal_(0.0, init_std_of(config, scalar_name(name)), generator=generator))

    @classmethod
    def from_scalar_params(cls, config: GPTConfig, params: dict, dtype=torch.float64, device=None) -> "GPT":
        """A model holding exactly `params` (scalar name -> [n_out][n_in] rows of floats)."""
        model = cls(config).to(dtype=dtype, device=device)  # the dtype first: float64 values stay exact
        model.load_scalar_params(params)
        return model

    def load_scalar_params(self, params: dict) -> None:
        """Copy scalar name -> rows into the weights, checking every name and shape."""
        expected = dict(param_shapes(self.config))
        missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
        if missing or extra:
            raise ValueError(f"parameters do not fit the config: missing {missing}, unexpected {extra}")
        with torch.no_grad():
            for name, param in self.named_parameters():
                key = scalar_name(name)
                value = torch.tensor(params[key], dtype=torch.float64)
                if tuple(value.shape) != expected[key]:
                    raise ValueError(f"{key} has shape {list(value.shape)}, the config needs {list(expected[key])}")
                param.copy_(value)  # casts to the model's dtype and device

    def scalar_params(self) -> dict:
        """scalar name -> [n_out][n_in] rows of Python floats (a copy, exact in float64)."""
        return {scalar_name(name): param.detach().cpu().double().tolist() for name, param in self.named_parameters()}

    def scalar_grads(self) -> dict:
        """scalar name -> [n_out][n_in] rows of gradients; zeros where there is no gradient."""
        grads = {}
        for name, param in self.named_parameters():
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            grads[scalar_name(name)] = grad.detach().cpu().double().tolist()
        return grads

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, trace=None, fused: bool = False):
        """Logits (B, T, vocab_size) for the token after each position, and the mean loss
        over targets that are not IGNORE_INDEX (None without targets).

        A `trace` dict receives every stage of trace_stage_names(config) for batch row 0,
        laid out as the scalar trace: one flat list per position ("loss" only for the
        positions whose target is not IGNORE_INDEX).
        """
        if fused and trace is not None:
            raise ValueError("the fused path keeps no intermediates: trace the readable path (fused=False)")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        norm = fused_rmsnorm if fused else rmsnorm
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        record(trace, "embed", x)
        x = norm(x)
        record(trace, "embed_norm", x)
        for i, layer in enumerate(self.layers):
            x_residual = x
            x = norm(x)
            record(trace, f"layer{i}.attn_norm", x)
            x = self.attention(x, i, trace, fused)
            x = layer.attn_wo(x) + x_residual
            record(trace, f"layer{i}.attn_residual", x)
            x_residual = x
            x = norm(x)
            record(trace, f"layer{i}.mlp_norm", x)
            x = self.mlp(x, i, trace) + x_residual
            record(trace, f"layer{i}.mlp_residual", x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        record(trace, "logits", logits)
        if trace is not None:
            record(trace, "probs", softmax(logits))
        loss = None
        if targets is not None:
            loss = fused_cross_entropy(logits, targets) if fused else cross_entropy(logits, targets, trace)
        return logits, loss

    def attention(self, x: torch.Tensor, i: int, trace=None, fused: bool = False) -> torch.Tensor:
        """Causal self-attention of every position over positions 0 .. itself, head by head."""
        B, T, C = x.shape
        layer, n_head, head_dim = self.layers[i], self.config.n_head, self.config.head_dim
        q = layer.attn_wq(x)  # (B, T, C)
        k = layer.attn_wk(x)
        v = layer.attn_wv(x)
        for name, vec in (("q", q), ("k", k), ("v", v)):
            record(trace, f"layer{i}.{name}", vec)
        # Head h is the slice h * head_dim .. (h + 1) * head_dim of the embedding.
        q, k, v = (t.view(B, T, n_head, head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        if fused:
            x_attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hd)
        else:
            attn_logits = (q @ k.transpose(-2, -1)) / head_dim**0.5  # (B, nh, T, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            attn_logits = attn_logits.masked_fill(~causal, float("-inf"))  # the cache holds 0 .. p only
            attn_weights = softmax(attn_logits)  # (B, nh, T, T), zero above the diagonal
            x_attn = attn_weights @ v  # (B, nh, T, hd)
            record_attention(trace, f"layer{i}.attn_logits", attn_logits)
            record_attention(trace, f"layer{i}.attn_weights", attn_weights)
        x_attn = x_attn.transpose(1, 2).reshape(B, T, C)  # the heads side by side
        record(trace, f"layer{i}.attn_out", x_attn)
        return x_attn

    def mlp(self, x: torch.Tensor, i: int, trace=None) -> torch.Tensor:
        """Widen to 4 * n_embd, apply the activation, project back."""
        layer = self.layers[i]
        x = layer.mlp_fc1(x)  # (B, T, 4C)
        record(trace, f"layer{i}.mlp_hidden", x)
        if self.config.activation == "relu2":
            x = F.relu(x) ** 2
        else:
            x = F.relu(x)
        record(trace, f"layer{i}.mlp_act", x)
        return layer.mlp_fc2(x)  # (B, T, C)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor | None = None, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend each row of idx (B, T0), by default one BOS, until it draws BOS or fills
        block_size positions; a finished row is padded with BOS. Returns (B, T).

        BOS is the last token id. Draws happen on the CPU, so a CPU generator gives the
        same tokens on any device.
        """
        bos = self.config.vocab_size - 1
        if idx is None:
            idx = torch.full((1, 1), bos, dtype=torch.long, device=self.wte.weight.device)
        done = torch.zeros(idx.size(0), dtype=torch.bool)
        while idx.size(1) <= self.config.block_size and not done.all():
            logits, _ = self(idx)
            probs = softmax(logits[:, -1, :].double().cpu() / temperature)  # (B, vocab_size)
            next_id = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (B,)
            next_id = next_id.masked_fill(done, bos)
            done |= next_id == bos
            idx = torch.cat([idx, next_id.unsqueeze(1).to(idx.device)], dim=1)
        return idx


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, trace=None) -> torch.Tensor:
    """Mean of -log(probs[target]) over the targets that are not IGNORE_INDEX."""
    probs = softmax(logits)  # (B, T, vocab_size)
    valid = targets != IGNORE_INDEX  # (B, T)
    target_probs = probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    losses = -target_probs.log()
    if trace is not None:
        trace.setdefault("loss", []).extend([loss_t] for loss_t in losses[0][valid[0]].tolist())
    return losses[valid].mean()


def fused_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def record(trace, name: str, x: torch.Tensor) -> None:
    """Append batch row 0's numbers for `name`, one flat list per position, if tracing."""
    if trace is not None:
        trace.setdefault(name, []).extend(row.flatten().tolist() for row in x[0].detach())


def record_attention(trace, name: str, att: torch.Tensor) -> None:
    """att (B, nh, T, T): position p keeps the nh rows over positions 0 .. p, head by head."""
    if trace is not None:
        att = att[0].detach()  # (nh, T, T)
        trace.setdefault(name, []).extend(att[:, p, : p + 1].flatten().tolist() for p in range(att.size(1)))
