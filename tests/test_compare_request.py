"""One request for a comparison, checked once before any engine starts: the script builds it
from its flags in one call, the API from its arguments, and both run the same comparison.

Oracle: the rules the flags document (each wrong combination gets one line), and the report
of the same comparison asked for both ways.
"""
from __future__ import annotations

import dataclasses

import pytest

from compare.check import compare_step
from compare.command import parse_args
from compare.report.saved import to_dict
from compare.request import CompareRequest

SMALL = {"docs": ["emma"], "overrides": {"n_embd": 8, "n_head": 2, "block_size": 4}}


@pytest.mark.parametrize("fields, words", [
    ({"docs": ["emma"], "data": "names.txt"}, "not both"),
    ({"steps": 0}, "steps must be a whole number >= 1"),
    ({"steps": True}, "steps must be a whole number >= 1"),
    ({"fd": -1}, "fd must be a whole number >= 0"),
    ({"dtype": "float16"}, "unknown dtype 'float16'"),
    ({"inject": "no-such-fault"}, "unknown fault 'no-such-fault'"),
    ({"inject": "mul-grad", "engine": "mine.py"}, "cannot be combined with --engine"),
    ({"overrides": {"n_embd": 8, "width": 3}}, "width is not a model size"),
    ({"overrides": {"n_layer": 2}, "weights": "saved.pt"}, "cannot change a checkpoint's model"),
    ({"preset": "gpt-5"}, "gpt-5"),
])
def test_a_wrong_request_is_refused_in_one_line_before_anything_runs(fields, words):
    with pytest.raises(ValueError) as caught:
        CompareRequest(**fields)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_request_is_frozen_and_keeps_only_the_sizes_given():
    request = CompareRequest(docs=["emma", "ava"], overrides={"n_layer": 2, "n_embd": None})
    assert request.docs == ("emma", "ava") and request.overrides == {"n_layer": 2}
    assert request.config.n_layer == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.steps = 3


def test_the_script_builds_its_request_from_its_flags_in_one_call():
    args = parse_args(["--doc", "emma", "--steps", "2", "--n-embd", "8", "--fd", "3", "--timeout", "9",
                       "--inject", "exp-grad"])
    assert CompareRequest.from_args(args) == CompareRequest(docs=["emma"], steps=2, overrides={"n_embd": 8}, fd=3,
                                                            timeout=9.0, inject="exp-grad")


def test_a_request_and_its_fields_ask_for_the_same_comparison():
    by_request = compare_step(CompareRequest(**SMALL, fd=2))
    by_fields = compare_step(**SMALL, fd=2)
    assert to_dict(by_request) == to_dict(by_fields)
    with pytest.raises(TypeError):
        compare_step(CompareRequest(), fd=2)
