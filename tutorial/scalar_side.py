"""What the scalar engine computes for each exercise: the oracle the learner's torch code is checked
against, on the same weights and inputs.

Every function takes plain floats, builds `Value`s, runs the scalar model's own code and returns
plain floats: the outputs, and the gradients of `sum(output * coef)` (each output has a weight of
its own in `coef`, so a gradient sent to the wrong element cannot cancel out).
"""
from __future__ import annotations

import functools
import random

from microgpt_scalar.config import get_config
from microgpt_scalar.engine import Value
from microgpt_scalar.model import GPT, dot, init_params, linear, rmsnorm, softmax

SEED = 1234
LAYER = 0


def dense_config(**overrides):
    """microgpt's sizes, weights drawn wide enough (std 0.3, projections too) that no check is
    decided by numbers near 0."""
    return get_config(init_std=0.3, proj_init_std=0.3, **overrides)


def draw_params(config, seed: int = SEED) -> dict:
    """name -> [n_out][n_in] rows of floats, drawn as the scalar model draws them."""
    return init_params(config, random.Random(seed), value_cls=float)


def random_rows(rng: random.Random, *shape, low: float = -1.0, high: float = 1.0):
    """Nested lists of floats of `shape`, uniform in [low, high)."""
    if len(shape) == 1:
        return [rng.uniform(low, high) for _ in range(shape[0])]
    return [random_rows(rng, *shape[1:], low=low, high=high) for _ in range(shape[0])]


def to_values(nested):
    return [to_values(x) for x in nested] if isinstance(nested, list) else Value(nested)


def data_of(nested):
    return [data_of(x) for x in nested] if isinstance(nested, list) else nested.data


def grad_of(nested):
    return [grad_of(x) for x in nested] if isinstance(nested, list) else float(nested.grad)


def flat(nested):
    return [y for x in nested for y in flat(x)] if isinstance(nested, list) else [nested]


def backward_weighted(outputs, coef) -> None:
    """backward of sum(output * coef) over every element."""
    sum(o * c for o, c in zip(flat(outputs), flat(coef))).backward()


def scalar_loss(a, b):
    """Step 1's expression, as the exercise's docstring shows it."""
    terms = [(ai * bi + ai.exp()).relu() ** 2 for ai, bi in zip(a, b)]
    return sum(terms) / len(terms)


def gradient(a: list, b: list):
    """(loss, d loss / d a, d loss / d b) of scalar_loss."""
    va, vb = to_values(a), to_values(b)
    loss = scalar_loss(va, vb)
    loss.backward()
    return loss.data, grad_of(va), grad_of(vb)


def rows_op(op, x_rows, coef):
    """(op of each row, the rows' gradients) for an op on one position's list of Values."""
    x = to_values(x_rows)
    out = [op(row) for row in x]
    backward_weighted(out, coef)
    return data_of(out), grad_of(x)


def rmsnorm_rows(x_rows, coef):
    return rows_op(rmsnorm, x_rows, coef)


def linear_rows(x_rows, w_rows, coef):
    """(linear(x, w) for each row, x's gradient, w's gradient)."""
    w = to_values(w_rows)
    x = to_values(x_rows)
    out = [linear(row, w) for row in x]
    backward_weighted(out, coef)
    return data_of(out), grad_of(x), grad_of(w)


def scalar_model(config, params) -> GPT:
    return GPT(config, params=params)


def layer_grads(model: GPT, prefix: str) -> dict:
    """name -> gradient rows of the model's matrices whose name starts with `prefix`."""
    return {name: grad_of(rows) for name, rows in model.state_dict.items() if name.startswith(prefix)}


def per_position(config, params, x_docs, coef, run):
    """Run `run(model, x, keys, values)` for every position of every document (each document with
    its own cache), then backward: (outputs, x's gradient, layer 0's weight gradients)."""
    model = scalar_model(config, params)
    x = to_values(x_docs)
    out = []
    for document in x:
        keys, values = model.empty_cache()
        out.append([run(model, position, keys, values) for position in document])
    backward_weighted(out, coef)
    return data_of(out), grad_of(x), layer_grads(model, f"layer{LAYER}.")


def mlp(config, params, x_docs, coef):
    return per_position(config, params, x_docs, coef, lambda m, x, keys, values: m.mlp(x, LAYER))


def attention(config, params, x_docs, coef):
    return per_position(config, params, x_docs, coef,
                        lambda m, x, keys, values: m.attention(x, LAYER, keys[LAYER], values[LAYER]))


def block(config, params, x_docs, coef):
    return per_position(config, params, x_docs, coef,
                        lambda m, x, keys, values: m.block(x, LAYER, keys[LAYER], values[LAYER]))


def attention_head(q_rows, k_rows, v_rows, coef):
    """One head over one document: position p weighs the values of positions 0 .. p by the softmax
    of its query's scores against their keys (the scalar model's attention, one head, no projections).
    Returns (output rows, q's, k's and v's gradients)."""
    q, k, v = to_values(q_rows), to_values(k_rows), to_values(v_rows)
    head_dim = len(q_rows[0])
    out = []
    for p in range(len(q)):
        attn_logits = [dot(q[p], k[s]) / head_dim**0.5 for s in range(p + 1)]
        attn_weights = softmax(attn_logits)
        out.append([dot(attn_weights, [v[s][j] for s in range(p + 1)]) for j in range(head_dim)])
    backward_weighted(out, coef)
    return data_of(out), grad_of(q), grad_of(k), grad_of(v)


def gpt_logits(config, params, idx_docs, coef):
    """(logits of every position of every document, every parameter's gradient by scalar name)."""
    model = scalar_model(config, params)
    logits = []
    for tokens in idx_docs:
        keys, values = model.empty_cache()
        logits.append([model.forward(token, pos, keys, values) for pos, token in enumerate(tokens)])
    backward_weighted(logits, coef)
    return data_of(logits), {name: grad_of(rows) for name, rows in model.state_dict.items()}


def mean_cross_entropy(logit_rows, targets, ignore_index: int = -1):
    """(mean of -log softmax(logits)[target] over the targets that are not ignore_index, the
    logits' gradient) for (B, T, V) logits as floats and (B, T) targets."""
    logits = to_values(logit_rows)
    losses = [-softmax(row)[t].log() for doc, doc_targets in zip(logits, targets)
              for row, t in zip(doc, doc_targets) if t != ignore_index]
    loss = (1 / len(losses)) * sum(losses)
    loss.backward()
    return loss.data, grad_of(logits)


def document_losses(config, params, token_lists):
    """The loss of each position of each document ([BOS] + ids + [BOS], cut at block_size), as the
    scalar trainer computes it: one list of floats per document."""
    model = scalar_model(config, params)
    out = []
    for tokens in token_lists:
        keys, values = model.empty_cache()
        n = min(config.block_size, len(tokens) - 1)
        out.append([-softmax(model.forward(tokens[p], p, keys, values))[tokens[p + 1]].log().data for p in range(n)])
    return out


def log_line(step: int, num_steps: int, loss: float) -> str:
    """A line of the original program's training log."""
    return f"step {step + 1:4d} / {num_steps:4d} | loss {loss:.4f}"


@functools.lru_cache(maxsize=None)
def training_losses(steps: int) -> tuple:
    """The scalar engine's losses of the first `steps` steps of the original program's run (the
    names file shuffled by seed 42, one document a step), from its own train_step."""
    from microgpt_scalar.data import Corpus, default_data_path
    from microgpt_scalar.train import start_run, train_step

    docs, tokenizer, model, optimizer, _ = start_run(Corpus.from_file(default_data_path()), get_config(), 42)
    return tuple(train_step(model, optimizer, tokenizer.encode(docs[step]), step) for step in range(steps))


def sample_names(config, params, chars, rng: random.Random, count: int, temperature: float = 0.5) -> list[str]:
    """`count` names from the scalar model's own sample, drawing from `rng`."""
    from microgpt_scalar.data import Tokenizer
    from microgpt_scalar.train import sample

    model = scalar_model(config, params)
    return [sample(model, Tokenizer(chars), rng, temperature) for _ in range(count)]
