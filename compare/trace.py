"""Where the forward passes part: the first traced intermediate whose values differ.

Both models record the same named stages (`microgpt_scalar.config.trace_stage_names`), one
flat list of numbers per position. The scalar model computes position by position and
stage by stage, so walking documents, then positions, then stages in that order finds the
earliest computation that went wrong; everything after it inherits the error.
"""
from __future__ import annotations

from dataclasses import dataclass

from .diff import entry_difference
from .tolerances import Tolerance


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
    for index, (a, b) in enumerate(zip(scalar_values, torch_values)):
        if entry_difference(float(a), float(b), tolerance)[2] > 1:
            return index, float(a), float(b)
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
