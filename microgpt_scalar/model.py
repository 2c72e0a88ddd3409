"""The GPT of microgpt, one scalar `Value` at a time.

The model reads one token at a time and keeps the keys and values of the positions it has
seen in a cache, so attention at position p looks at positions 0 .. p. Every number goes
through the engine's public operators (+ - * / **, log, exp, relu), so any class with that
interface can run it:

    model = GPT(get_config(), random.Random(42))          # the project's engine
    model = GPT(get_config(), random.Random(42), MyValue)  # a learner's engine
    keys, values = model.empty_cache()
    logits = model.forward(token_id, pos_id, keys, values)
    loss = model.loss(logits, target_id)

The forward pass calls its pieces through the model (`self.linear`, `self.rmsnorm`,
`self.softmax`, `self.attention`, ...), as the torch model calls its modules, so code outside
can swap a piece for a faster one (`microgpt_scalar.fused.FusedGPT`) or watch it (a checker's
trace) without a line of this file knowing. `microgpt_torch/model.py` is the same model on
tensors, all positions at once.
"""
from __future__ import annotations

import random

from .config import GPTConfig, init_std_of, param_shapes
from .engine import Value


def dot(a, b):
    """sum(a[j] * b[j]) over j ascending, built as the built-in `sum` builds it (from 0)."""
    return sum(ai * bi for ai, bi in zip(a, b))


def linear(x, w):
    """y[r] = sum_j w[r][j] * x[j]: w is [n_out][n_in], like nn.Linear's weight."""
    return [dot(w_row, x) for w_row in w]


def softmax(logits):
    max_val = max(val.data for val in logits)  # a plain float: shifting is for stability only
    exps = [(val - max_val).exp() for val in logits]
    total = sum(exps)
    return [e / total for e in exps]


def relu_squared(x):
    """The microgpt preset's activation, entry by entry."""
    return [xi.relu() ** 2 for xi in x]


def rmsnorm(x):
    ms = dot(x, x) / len(x)  # mean of squares
    scale = (ms + 1e-5) ** -0.5
    return [xi * scale for xi in x]


class GPT:
    """Parameters and the forward pass. `state_dict[name]` is a [n_out][n_in] list of rows."""

    # The pieces the forward pass is built from, the functions above.
    dot = staticmethod(dot)
    linear = staticmethod(linear)
    softmax = staticmethod(softmax)
    relu_squared = staticmethod(relu_squared)
    rmsnorm = staticmethod(rmsnorm)

    def __init__(self, config: GPTConfig, rng: random.Random | None = None, value_cls=Value, params=None):
        """Draw the parameters from `rng`, or take them from `params` (name -> rows of floats)."""
        if (rng is None) == (params is None):
            raise ValueError("give exactly one of rng (a fresh initialisation) or params")
        self.config = config
        self.value_cls = value_cls
        if params is None:
            self.state_dict = init_params(config, rng, value_cls)
        else:
            self.state_dict = {name: [[value_cls(float(x)) for x in row] for row in params[name]]
                               for name, _ in param_shapes(config)}

    def params_as_floats(self) -> dict:
        """name -> [n_out][n_in] list of plain floats (a copy)."""
        return {name: [[p.data for p in row] for row in matrix] for name, matrix in self.state_dict.items()}

    def parameters(self) -> list:
        """Every parameter, matrix by matrix and row by row (the optimizer's order)."""
        return [p for matrix in self.state_dict.values() for row in matrix for p in row]

    def empty_cache(self):
        """Per layer, the keys and the values of the positions seen so far."""
        return [[] for _ in range(self.config.n_layer)], [[] for _ in range(self.config.n_layer)]

    def forward(self, token_id: int, pos_id: int, keys, values):
        """The logits for the token after `token_id` at `pos_id`; appends to the cache."""
        sd = self.state_dict
        x = [t + p for t, p in zip(sd["wte"][token_id], sd["wpe"][pos_id])]  # (n_embd,)
        x = self.rmsnorm(x)
        for i in range(self.config.n_layer):
            x = self.block(x, i, keys[i], values[i])
        return self.linear(x, sd["lm_head"])  # (vocab_size,)

    def block(self, x, i: int, keys, values):
        """Layer i: each sublayer reads the normalised stream and adds its output to it."""
        x = [a + r for a, r in zip(self.attention(self.rmsnorm(x), i, keys, values), x)]  # (n_embd,)
        x = [m + r for m, r in zip(self.mlp(self.rmsnorm(x), i), x)]  # (n_embd,)
        return x

    def attention(self, x, i: int, keys, values):
        """Causal self-attention of the current position over the cached ones, head by head."""
        sd, head_dim = self.state_dict, self.config.head_dim
        q = self.linear(x, sd[f"layer{i}.attn_wq"])  # (n_embd,)
        k = self.linear(x, sd[f"layer{i}.attn_wk"])
        v = self.linear(x, sd[f"layer{i}.attn_wv"])
        keys.append(k)
        values.append(v)
        x_attn = []
        for h in range(self.config.n_head):
            hs = h * head_dim  # this head's slice of the embedding
            q_h = q[hs:hs + head_dim]
            k_h = [k_s[hs:hs + head_dim] for k_s in keys]  # (positions, head_dim)
            v_h = [v_s[hs:hs + head_dim] for v_s in values]
            attn_logits = [self.dot(q_h, k_h[s]) / head_dim**0.5 for s in range(len(k_h))]
            attn_weights = self.softmax(attn_logits)  # (positions,)
            head_out = [self.dot(attn_weights, [v_h[s][j] for s in range(len(v_h))]) for j in range(head_dim)]
            x_attn.extend(head_out)  # (n_embd,) when every head is done, the heads side by side
        return self.linear(x_attn, sd[f"layer{i}.attn_wo"])  # (n_embd,)

    def mlp(self, x, i: int):
        """Widen to 4 * n_embd, apply the activation, project back."""
        sd = self.state_dict
        x = self.linear(x, sd[f"layer{i}.mlp_fc1"])  # (4 * n_embd,)
        if self.config.activation == "relu2":
            x = self.relu_squared(x)
        else:
            x = [xi.relu() for xi in x]
        return self.linear(x, sd[f"layer{i}.mlp_fc2"])  # (n_embd,)

    def loss(self, logits, target_id: int):
        """-log(probability of target_id): the cross-entropy of one position's prediction."""
        probs = self.softmax(logits)
        return -probs[target_id].log()


def init_params(config: GPTConfig, rng: random.Random, value_cls=Value) -> dict:
    """Every matrix filled row by row from gauss(0, std), in the reference's draw order."""
    state_dict = {}
    for name, (n_out, n_in) in param_shapes(config):
        std = init_std_of(config, name)
        state_dict[name] = [[value_cls(rng.gauss(0, std)) for _ in range(n_in)] for _ in range(n_out)]
    return state_dict

