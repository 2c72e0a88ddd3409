"""A learner's own Value class: loaded from a file, checked for what the model needs, compared.

Oracles: torch (through the comparison), and the calls a real training step makes (recorded
by wrapping the project's Value) for the list of required operations.
"""
from __future__ import annotations

import sys

import pytest
from helpers import LEARNER_ENGINE as LEARNER
from helpers import edited_copy

from compare import EngineFailure, compare_step
from compare.engine.loader import REQUIRED_ATTRIBUTES, REQUIRED_METHODS, EngineError, load_engine, missing_operations
from microgpt_scalar import model as scalar_model
from microgpt_scalar import train as scalar_train
from microgpt_scalar.config import get_config, param_shapes
from microgpt_scalar.engine import Value
from microgpt_scalar.optim import Adam

OPERATOR_CANDIDATES = [
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__pow__", "__rpow__", "__neg__", "__pos__", "__abs__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__",
    "__float__", "__bool__", "log", "exp", "relu", "tanh", "backward",
]


def test_correct_learner_engine_in_its_own_file_agrees_with_torch():
    report = compare_step(engine=str(LEARNER), steps=2)
    assert report.agrees
    assert report.settings.engine == str(LEARNER)
    assert report.focus.coverage.zero_tensors == []


def test_engine_spec_names_the_class_after_a_colon():
    assert load_engine(f"{LEARNER}:Value").__name__ == "Value"
    with pytest.raises(EngineError, match="has no class Scalar .*classes there: Value"):
        load_engine(f"{LEARNER}:Scalar")


def test_engine_without_log_is_refused_naming_what_is_missing(tmp_path):
    """The learner's engine before they wrote `log`: refused up front, naming what is missing,
    rather than failing half-way through a step."""
    without_log = edited_copy(LEARNER, tmp_path / "engine.py", "    def log(self):", "    def not_yet_log(self):")
    with pytest.raises(EngineError) as error:
        load_engine(str(without_log))
    message = str(error.value)
    assert "lacks what the transformer needs: log (" in message
    assert "exp" not in message.split("needs:")[1].split("(")[0]  # only the missing one is named


def test_missing_attributes_are_named_too():
    class NoGrad:
        def __init__(self, data):
            self.data = data

    assert missing_operations(NoGrad) == list(REQUIRED_METHODS) + ["grad"]


def test_required_operations_are_the_ones_the_step_calls(monkeypatch):
    """Wrap every operator of the project's Value and record those that model.py and train.py
    call during a training step on both presets: exactly the required list."""
    called = set()
    callers = {scalar_model.__file__, scalar_train.__file__}
    for name in OPERATOR_CANDIDATES:
        original = getattr(Value, name, None)
        if original is None:
            continue

        def spy(*args, _name=name, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename in callers:
                called.add(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(Value, name, spy)
    for preset in ("microgpt", "microgpt-v2"):
        config = get_config(preset, vocab_size=4)
        model = scalar_model.GPT(config, params=_weights(config))
        scalar_train.train_step(model, Adam(model.parameters(), config), [3, 0, 1, 2, 3], 0)
    assert called == set(REQUIRED_METHODS)
    assert set(REQUIRED_ATTRIBUTES) == {"data", "grad"}  # read by the model and written by Adam


def _weights(config):
    """Weights without a zero, so every operation of the step really runs."""
    return {name: [[0.1 * (1 + (r + c) % 3) for c in range(n_in)] for r in range(n_out)]
            for name, (n_out, n_in) in param_shapes(config)}


def test_engine_that_raises_mid_step_is_a_one_line_failure(tmp_path):
    path = edited_copy(LEARNER, tmp_path / "engine.py", "out = Value(math.exp(self.data), (self,))",
                       "out = Value(math.exp(self.data), (self,)); 1 / 0")
    with pytest.raises(EngineFailure, match=r"raised ZeroDivisionError while training step 1") as error:
        compare_step(engine=str(path), docs=["emma"])
    assert "\n" not in str(error.value)


def test_an_error_with_a_message_of_many_lines_is_reported_in_one(tmp_path):
    path = edited_copy(LEARNER, tmp_path / "engine.py", "out = Value(math.exp(self.data), (self,))",
                       "out = Value(math.exp(self.data), (self,)); raise ValueError('first line\\nsecond line')")
    with pytest.raises(EngineFailure, match=r"raised ValueError while training step 1: first line$"):
        compare_step(engine=str(path), docs=["emma"])
    crashing = tmp_path / "crashing.py"
    crashing.write_text("class Value:\n    raise RuntimeError('cannot start\\nbecause of this')\n")  # a class body runs
    with pytest.raises(EngineError, match=r"line 2: RuntimeError: cannot start$"):
        load_engine(str(crashing))


def test_engine_file_that_fails_on_import_is_refused(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text("import numpyy\n")
    with pytest.raises(EngineError, match="has no class Value.*skipped while loading: line 1 `import numpyy` .ModuleNotFoundError"):
        load_engine(str(path))


def test_engine_class_that_cannot_be_built_from_a_float_is_refused(tmp_path):
    path = tmp_path / "engine.py"
    path.write_text("class Value:\n    def __init__(self, data, children):\n        pass\n")
    with pytest.raises(EngineError, match=r"Value\(1.0\) fails"):
        load_engine(str(path))
