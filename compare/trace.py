"""The named intermediates of both forward passes, and where they part.

A trace holds every stage of `trace_stage_names(config)` for one document, one flat list of
numbers per position. The scalar model shows each stage to its `on_stage` callback
(`ScalarTracer`); the torch model's readable path is read with forward hooks on its modules
(`torch_trace`), so neither forward carries any tracing code of its own.

The scalar model computes position by position and stage by stage, so walking documents,
then positions, then stages in that order finds the earliest computation that went wrong;
everything after it inherits the error.
"""
from __future__ import annotations

from dataclasses import dataclass

from .diff import entry_difference
from .tolerances import Tolerance

LAYER_STAGES = ("attn_norm", "q", "k", "v", "attn_logits", "attn_weights", "attn_out", "attn_residual",
                "mlp_norm", "mlp_hidden", "mlp_act", "mlp_residual")


def trace_stage_names(config) -> list[str]:
    """The named intermediates a trace records for every position, in forward order.

    Each is a flat list of numbers per position; attention logits and weights hold the
    n_head rows over the positions 0 .. p seen so far, head by head.
    """
    names = ["embed", "embed_norm"]
    for i in range(config.n_layer):
        names += [f"layer{i}.{stage}" for stage in LAYER_STAGES]
    return names + ["logits", "probs", "loss"]


class ScalarTracer:
    """The scalar model's `on_stage` callback: keeps every stage's numbers, position after
    position, across the documents of a step (`by_document` cuts them apart)."""

    def __init__(self):
        self.trace = {}

    def __call__(self, name: str, values) -> None:
        self.trace.setdefault(name, []).append([float(v.data) for v in values])

    def by_document(self, lengths: list[int]) -> list[dict]:
        """One trace per document, the document of `lengths[d]` positions taking the next ones."""
        traces, start = [], 0
        for n in lengths:
            traces.append({name: rows[start:start + n] for name, rows in self.trace.items()})
            start += n
        return traces


def torch_trace(model, tokens: list[int]) -> dict:
    """Every stage of one document through a readable-path torch GPT, read by forward hooks."""
    import torch

    from microgpt_torch.model import position_losses, softmax

    if model.fused:
        raise ValueError("the fused path keeps no intermediates: trace a model built with fused=False")
    n = min(model.config.block_size, len(tokens) - 1)
    device = next(model.parameters()).device
    idx, targets = torch.tensor([tokens[:n]], device=device), torch.tensor([tokens[1:n + 1]], device=device)
    seen, handles = {}, []

    def output_of(module, name):
        handles.append(module.register_forward_hook(lambda _module, _args, out: seen.__setitem__(name, out)))

    def input_of(module, name):
        handles.append(module.register_forward_pre_hook(lambda _module, args: seen.__setitem__(name, args[0])))

    output_of(model.wte, "wte")
    output_of(model.wpe, "wpe")
    output_of(model.lm_head, "logits")
    for i, block in enumerate(model.layers):
        attn, mlp, layer = block.attn, block.mlp, f"layer{i}."
        input_of(block, layer + "input")
        input_of(attn, layer + "attn_norm")
        for name in ("q", "k", "v"):
            output_of(getattr(attn, f"w{name}"), layer + name)
        input_of(attn.softmax, layer + "attn_logits")
        output_of(attn.softmax, layer + "attn_weights")
        input_of(attn.wo, layer + "attn_out")
        output_of(attn, layer + "attn")
        input_of(mlp, layer + "mlp_norm")
        output_of(mlp.fc1, layer + "mlp_hidden")
        input_of(mlp.fc2, layer + "mlp_act")
        output_of(block, layer + "mlp_residual")
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for handle in handles:
            handle.remove()
    seen["embed"] = seen["wte"] + seen["wpe"]  # the model's own sum, done again: the same rounding
    seen["embed_norm"] = seen["layer0.input"]
    for i in range(model.config.n_layer):
        seen[f"layer{i}.attn_residual"] = seen[f"layer{i}.input"] + seen[f"layer{i}.attn"]
    seen["probs"] = softmax(seen["logits"])
    trace = {}
    for stage in trace_stage_names(model.config)[:-1]:
        x = seen[stage][0]  # batch row 0: (T, ...) or (nh, T, T) for attention
        if stage.endswith(("attn_logits", "attn_weights")):  # position p keeps the nh rows over 0 .. p
            trace[stage] = [x[:, p, :p + 1].flatten().tolist() for p in range(n)]
        else:
            trace[stage] = [row.flatten().tolist() for row in x]
    trace["loss"] = [[loss] for loss in position_losses(seen["logits"], targets)[0].tolist()]
    return trace


@dataclass
class Divergence:
    document: int  # index of the document in the batch
    stage: str  # trace stage name, e.g. "layer0.attn_weights"
    position: int  # token position in the document
    index: int  # entry within the stage's numbers at that position
    scalar: float
    torch: float


def first_divergence(scalar_traces: list, torch_traces: list, stages: list, tolerance: Tolerance) -> Divergence | None:
    """The earliest (document, position, stage, entry) outside the tolerance, or None."""
    for document, (scalar_trace, torch_trace) in enumerate(zip(scalar_traces, torch_traces)):
        for position in range(len(scalar_trace[stages[0]])):
            for stage in stages:
                found = _first_entry(scalar_trace[stage][position], torch_trace[stage][position], tolerance)
                if found is not None:
                    return Divergence(document, stage, position, *found)
    return None


def _first_entry(scalar_values: list, torch_values: list, tolerance: Tolerance):
    if len(scalar_values) != len(torch_values):  # both traces come from the project's models
        raise RuntimeError(f"the traces differ in layout: {len(scalar_values)} numbers against {len(torch_values)}")
    for index, (expected, got) in enumerate(zip(scalar_values, torch_values)):
        if entry_difference(float(got), float(expected), tolerance)[2] > 1:
            return index, float(expected), float(got)
    return None


def entry_meaning(stage: str, position: int, index: int, chars: list) -> str:
    """What entry `index` of a stage at `position` is, in words a learner can look up."""
    if stage.endswith(("attn_logits", "attn_weights")):
        head, key = divmod(index, position + 1)  # n_head rows over positions 0 .. position
        return f"head {head}, attending to position {key}"
    if stage == "logits":
        return f"the logit of {token_text(index, chars)}"
    if stage == "probs":
        return f"the probability of {token_text(index, chars)}"
    if stage == "loss":
        return "this position's loss"
    return f"entry {index}"


def token_text(token_id: int, chars: list) -> str:
    return repr(chars[token_id]) if token_id < len(chars) else "BOS"
