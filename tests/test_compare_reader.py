"""What the engine's process sends is checked for what the comparison needs before it is
judged: a step's message with fewer documents traced than the batch had, or fewer
finite-difference estimates than were asked for, would leave numbers unchecked, and so ends
the check as a failure of the engine's process, never as agreement."""
from __future__ import annotations

import pytest

from compare.engine.process import EngineFailure
from compare.engine.protocol import Depth, FiniteDiffs, ProtocolError, Step
from compare.engine.reader import ScalarReader
from compare.judge.step import first_divergence
from compare.judge.tolerances import tolerances_for
from compare.report.report import DepthCheck


class Sends:
    """An engine's process that sends the given messages, one per request, in turn."""

    def __init__(self, *messages):
        self.messages = list(messages)

    def next_message(self, phase, expected, **limits):
        message = self.messages.pop(0)
        assert isinstance(message, expected)
        return message

    def protocol_failure(self, error: ProtocolError):
        raise EngineFailure(f"the scalar engine gave {error}")


def step_message(traces: list) -> Step:
    return Step(0, 3.3, {"wte": [[0.1]]}, {"wte": [[0.2]]}, {"wte": [[0.0]]}, {"wte": [[0.0]]}, traces)


def reader(*messages) -> ScalarReader:
    return ScalarReader(Sends(Depth(10, None, 1, 100), *messages), {"chain": None})


def test_a_step_with_every_document_traced_is_read_and_one_with_fewer_fails():
    batch = [[26, 1, 26], [26, 2, 3, 26]]
    trace = {"layer0.attn_weights": [[1.0]]}
    assert reader(step_message([trace, trace])).step(batch, 0, DepthCheck(None, None, None, None, 1)).loss == 3.3
    with pytest.raises(EngineFailure, match="1 traces for a batch of 2 documents"):
        reader(step_message([trace])).step(batch, 0, DepthCheck(None, None, None, None, 1))
    with pytest.raises(EngineFailure, match="0 traces for a batch of 2 documents"):
        reader(step_message([])).step(batch, 0, DepthCheck(None, None, None, None, 1))


def test_fewer_finite_difference_estimates_than_asked_for_fail():
    entry = {"name": "wte", "index": [0, 0], "estimate": 0.5}
    assert len(ScalarReader(Sends(FiniteDiffs(1e-6, [entry, entry])), {"chain": None}).finite_differences(2).entries) == 2
    with pytest.raises(EngineFailure, match="0 finite-difference estimates where 2 were asked for"):
        ScalarReader(Sends(FiniteDiffs(1e-6, [])), {"chain": None}).finite_differences(2)


def test_traces_of_another_layout_are_never_passed_over():
    stages = ["a", "b"]
    tolerance = tolerances_for("float64").values
    full = {"a": [[1.0], [2.0]], "b": [[3.0], [4.0]]}
    assert first_divergence([full], [full], stages, tolerance) is None
    assert first_divergence([dict(full, b=[[3.0], [5.0]])], [full], stages, tolerance).stage == "b"
    for wrong in ([], [{"a": full["a"]}], [dict(full, b=[[3.0]])]):
        with pytest.raises(RuntimeError, match="the traces differ in layout"):
            first_divergence(wrong, [full], stages, tolerance)


def test_a_backward_is_depth_limited_only_where_a_chain_made_it_fail():
    from compare.engine.depth import depth_limited

    assert depth_limited([5000, 5200]) is True
    assert depth_limited([100000, None]) is False  # survived every chain measured
    assert depth_limited(None) is False  # the measurement could not be made
