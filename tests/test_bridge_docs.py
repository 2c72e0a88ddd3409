"""docs/bridge.md quotes the source through scripts/bridge_docs.py; stale quotes are caught."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from helpers import load_script, replace_once


@pytest.fixture(scope="module")
def bridge():
    return load_script("bridge_docs")


@pytest.fixture(scope="module")
def guide(repo_root):
    return (repo_root / "docs" / "bridge.md").read_text(encoding="utf-8")


@pytest.fixture
def source_copy(bridge, guide, repo_root, tmp_path):
    """A copy of every file the guide quotes, at the same relative paths under tmp_path."""
    for path in {bridge.parse_spec(spec).path for spec in bridge.quote_specs(guide)}:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root / path, tmp_path / path)
    return tmp_path


def edit(path, old, new):
    path.write_text(replace_once(path.read_text(), old, new))


def test_every_quote_in_the_guide_matches_the_source_regenerated_in_memory(bridge, guide):
    assert bridge.render(guide) == guide, "docs/bridge.md is stale: run python scripts/bridge_docs.py"
    assert bridge.stale_quotes(guide) == []


def test_a_changed_quoted_function_makes_exactly_its_quote_stale(bridge, guide, source_copy):
    assert bridge.stale_quotes(guide, source_copy) == []
    edit(source_copy / "microgpt_scalar" / "model.py", "scale = (ms + 1e-5) ** -0.5", "scale = (ms + 1e-6) ** -0.5")
    assert bridge.stale_quotes(guide, source_copy) == ["microgpt_scalar/model.py:rmsnorm"]
    assert "(ms + 1e-6) ** -0.5" in bridge.render(guide, source_copy)


def test_a_changed_line_inside_a_narrowed_quote_makes_it_stale(bridge, guide, source_copy):
    edit(source_copy / "microgpt_torch" / "train.py", "optimizer.zero_grad(set_to_none=True)\n    loss = batch_loss",
         "optimizer.zero_grad()\n    loss = batch_loss")
    stale = bridge.stale_quotes(guide, source_copy)
    assert 'microgpt_torch/train.py:train_step from="optimizer.zero_grad" to="optimizer.zero_grad"' in stale


def test_quotes_follow_their_symbol_when_lines_move(bridge, guide, source_copy):
    model = source_copy / "microgpt_scalar" / "model.py"
    edit(model, "def rmsnorm(x):", "def moved_down():\n    return None\n\n\ndef rmsnorm(x):")
    assert bridge.stale_quotes(guide, source_copy) == []


def test_a_removed_symbol_is_an_error_naming_the_quote(bridge, guide, source_copy):
    edit(source_copy / "microgpt_scalar" / "model.py", "def rmsnorm(x):", "def rms_norm(x):")
    with pytest.raises(bridge.QuoteError, match="microgpt_scalar/model.py has no rmsnorm"):
        bridge.stale_quotes(guide, source_copy)


SAMPLE = '''"""A module."""


@staticmethod
def helper(a):
    """Doc
    string."""
    b = a + 1
    c = b * 2
    return c


class Box:
    def get(self):
        return 1
'''


def test_options_narrow_the_span_and_drop_the_docstring(bridge, tmp_path):
    (tmp_path / "m.py").write_text(SAMPLE)

    def body(spec):
        return bridge.quote_body(tmp_path, bridge.parse_spec(spec)).split("```python\n")[1].removesuffix("\n```\n")

    assert body("m.py:helper").startswith("@staticmethod\ndef helper(a):\n    \"\"\"Doc")
    assert body("m.py:helper nodoc") == "@staticmethod\ndef helper(a):\n    b = a + 1\n    c = b * 2\n    return c"
    assert body('m.py:helper from="b = " to="c = "') == "b = a + 1\nc = b * 2"
    assert body('m.py:helper from="return"') == "return c"
    assert body("m.py:Box.get") == "def get(self):\n    return 1"
    for spec, message in [('m.py:helper from="nowhere"', "no line of helper contains"),
                          ('m.py:helper from="return" to="b = "', "from the start contains"),
                          ("m.py:Box.put", "has no Box.put"), ("m.py:helper lines=3", "unknown option"),
                          ("missing.py:helper", "no file missing.py"), ("m.py", "FILE:SYMBOL")]:
        with pytest.raises(bridge.QuoteError, match=message):
            bridge.quote_body(tmp_path, bridge.parse_spec(spec))


def test_check_flag_exits_1_on_a_stale_guide_and_0_on_the_shipped_one(repo_root, guide, tmp_path):
    script = [sys.executable, str(repo_root / "scripts" / "bridge_docs.py"), "--check", "--guide"]
    fresh = subprocess.run([*script, str(repo_root / "docs" / "bridge.md")], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    stale_guide = tmp_path / "bridge.md"
    wrong = guide.replace("scale = (ms + 1e-5) ** -0.5", "scale = (ms + 1e-5) ** 0.5", 1)
    stale_guide.write_text(wrong)
    stale = subprocess.run([*script, str(stale_guide)], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "stale quote: microgpt_scalar/model.py:rmsnorm" in stale.stderr
    assert stale_guide.read_text() == wrong  # --check writes nothing


def test_guide_pairs_scalar_and_torch_code_for_every_piece(bridge, guide):
    specs = {spec.split()[0] for spec in bridge.quote_specs(guide)}
    pieces = {
        "Value and tensor": ["microgpt_scalar/engine.py:Value.__init__", "microgpt_torch/model.py:GPT.__init__"],
        "backward": ["microgpt_scalar/engine.py:Value.backward", "microgpt_torch/train.py:train_step"],
        "linear": ["microgpt_scalar/model.py:linear", "microgpt_torch/model.py:Attention.forward"],
        "softmax": ["microgpt_scalar/model.py:softmax", "microgpt_torch/model.py:softmax"],
        "rmsnorm": ["microgpt_scalar/model.py:rmsnorm", "microgpt_torch/model.py:rmsnorm"],
        "cache and mask": ["microgpt_scalar/model.py:GPT.attention", "microgpt_torch/model.py:Attention.forward"],
        "cross-entropy": ["microgpt_scalar/train.py:forward_loss", "microgpt_torch/model.py:cross_entropy"],
        "adam": ["microgpt_scalar/optim.py:Adam.step", "microgpt_torch/optim.py:make_optimizer"],
    }
    for piece, addresses in pieces.items():
        assert set(addresses) <= specs, piece
    assert "optimizer.zero_grad(set_to_none=True)" in guide and "p.grad = 0" in guide
