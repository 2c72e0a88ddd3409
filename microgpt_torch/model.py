"""The GPT of microgpt on tensors: every position of a batch of sequences at once.

`microgpt_scalar/model.py` reads one token at a time with a key/value cache; this model
reads a whole (B, T) batch and gets the same causality from a mask, so row p of the
attention sees positions 0 .. p only. RMSNorm, attention, the MLP and the loss are written
as explicit tensor ops in the scalar code's order and with its names, so the two files read
side by side:

    model = GPT.from_scalar_params(config, scalar_model.params_as_floats())  # same weights
    logits, loss = model(idx, targets)             # idx, targets: (B, T) token ids

The forward keeps no intermediates; a checker reads them with forward hooks on the modules
(`attn.wq`'s output is q, `attn.softmax`'s input and output the attention logits and weights).
The trainer's faster models (`microgpt_torch/fast.py`) are this one with some pieces swapped
for torch's fused kernels, under the same parameter names.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from microgpt_scalar.config import GPTConfig, init_std_of, param_shapes

IGNORE_INDEX = -1  # a target that adds nothing to the loss (padding after a document's end)


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


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of -log(probs[target]) over the targets that are not IGNORE_INDEX."""
    return position_losses(logits, targets)[targets != IGNORE_INDEX].mean()


def position_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log(probs[target]) at every position (B, T); meaningless where the target is IGNORE_INDEX."""
    probs = softmax(logits)  # (B, T, vocab_size)
    target_probs = probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -target_probs.log()


class Softmax(nn.Module):
    """`softmax` as a module, so that a forward hook can read the attention weights."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return softmax(logits)


class Attention(nn.Module):
    """Causal self-attention of every position over positions 0 .. itself, head by head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        e = config.n_embd
        self.wq = nn.Linear(e, e, bias=False)
        self.wk = nn.Linear(e, e, bias=False)
        self.wv = nn.Linear(e, e, bias=False)
        self.wo = nn.Linear(e, e, bias=False)
        self.softmax = Softmax()
        self.n_head, self.head_dim = config.n_head, config.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.wq(x), self.wk(x), self.wv(x)  # (B, T, C) each
        # Head h is the slice h * head_dim .. (h + 1) * head_dim of the embedding.
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        attn_logits = (q @ k.transpose(-2, -1)) / self.head_dim**0.5  # (B, nh, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        attn_logits = attn_logits.masked_fill(~causal, float("-inf"))  # the cache holds 0 .. p only
        attn_weights = self.softmax(attn_logits)  # (B, nh, T, T), zero above the diagonal
        x_attn = attn_weights @ v  # (B, nh, T, hd)
        x_attn = x_attn.transpose(1, 2).reshape(B, T, C)  # the heads side by side
        return self.wo(x_attn)  # (B, T, C)


class MLP(nn.Module):
    """Widen to 4 * n_embd, apply the activation, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.fc2 = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.squared = config.activation == "relu2"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)  # (B, T, 4C)
        x = F.relu(x) ** 2 if self.squared else F.relu(x)
        return self.fc2(x)  # (B, T, C)


class Block(nn.Module):
    """One layer: each sublayer reads the normalised stream and adds its output to it."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.norm = rmsnorm  # no weights: a plain function
        self.attn = Attention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        x = x + self.attn(self.norm(x))
        x = x + self.mlp(self.norm(x))
        return x


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
        self.norm = rmsnorm
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
        """A model of this class holding exactly `params` (scalar name -> [n_out][n_in] rows of floats)."""
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

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab_size) for the token after each position, and the mean loss
        over targets that are not IGNORE_INDEX (None without targets)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        tokens = self.wte(idx)  # (B, T, C)
        x = self.norm(tokens + self.wpe(pos))  # (B, T, C)
        for block in self.layers:
            x = block(x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = self.loss(logits, targets)
        return logits, loss

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the predictions, over the targets that are not IGNORE_INDEX."""
        return cross_entropy(logits, targets)

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


_SCALAR_NAME = re.compile(r"layer(0|[1-9][0-9]*)\.(attn|mlp)_(wq|wk|wv|wo|fc1|fc2)")
_TORCH_NAME = re.compile(r"layers\.(0|[1-9][0-9]*)\.(attn|mlp)\.(wq|wk|wv|wo|fc1|fc2)\.weight")
_SUBLAYER_WEIGHTS = {"attn": ("wq", "wk", "wv", "wo"), "mlp": ("fc1", "fc2")}
_TOP_NAMES = ("wte", "wpe", "lm_head")


def torch_name(scalar_name: str) -> str:
    """"layer0.attn_wq" -> "layers.0.attn.wq.weight"; "wte" -> "wte.weight"."""
    if scalar_name in _TOP_NAMES:
        return f"{scalar_name}.weight"
    match = _SCALAR_NAME.fullmatch(scalar_name)
    if match is None or match[3] not in _SUBLAYER_WEIGHTS[match[2]]:
        raise ValueError(f"unknown scalar parameter name {scalar_name!r}")
    return f"layers.{match[1]}.{match[2]}.{match[3]}.weight"


def scalar_name(torch_name: str) -> str:
    """"layers.0.attn.wq.weight" -> "layer0.attn_wq"; "wte.weight" -> "wte"."""
    top = torch_name.removesuffix(".weight")
    if top in _TOP_NAMES and torch_name.endswith(".weight"):
        return top
    match = _TORCH_NAME.fullmatch(torch_name)
    if match is None or match[3] not in _SUBLAYER_WEIGHTS[match[2]]:
        raise ValueError(f"unknown torch parameter name {torch_name!r}")
    return f"layer{match[1]}.{match[2]}_{match[3]}"
