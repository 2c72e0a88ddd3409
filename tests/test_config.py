"""The configuration against docs/reference.md: the presets' table, the parameter shapes and counts,
and a ValueError with a clear one-line message for every impossible value.

    pytest tests/test_config.py
"""
from __future__ import annotations

import dataclasses
import math

import pytest

from microgpt_scalar.config import (
    PRESETS,
    GPTConfig,
    field_names,
    field_types,
    get_config,
    init_std_of,
    num_params,
    param_shapes,
)


def reference_shapes(vocab: int, n_embd: int, block_size: int, n_layer: int) -> list:
    """docs/reference.md "Parameters", written out: the names, [n_out][n_in] shapes and order."""
    shapes = [("wte", (vocab, n_embd)), ("wpe", (block_size, n_embd)), ("lm_head", (vocab, n_embd))]
    for i in range(n_layer):
        for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo"):
            shapes.append((f"layer{i}.{name}", (n_embd, n_embd)))
        shapes.append((f"layer{i}.mlp_fc1", (4 * n_embd, n_embd)))
        shapes.append((f"layer{i}.mlp_fc2", (n_embd, 4 * n_embd)))
    return shapes


def count(shapes) -> int:
    return sum(n_out * n_in for _, (n_out, n_in) in shapes)


@pytest.mark.parametrize("preset, published", [("microgpt", 4064), ("microgpt-v2", 4192)])
def test_preset_param_counts_match_published_figures_and_reference_shapes(preset, published):
    """4,064 and 4,192 (docs/reference.md's table) for the names file's vocab of 27; the count is also
    recomputed from docs/reference.md's shapes so the two oracles check each other."""
    config = get_config(preset)
    assert config.vocab_size == 27
    expected = count(reference_shapes(27, 16, config.block_size, 1))
    assert expected == published
    assert num_params(config) == published


@pytest.mark.parametrize("overrides", [
    {}, {"n_layer": 3}, {"n_embd": 32, "n_head": 8}, {"block_size": 5, "vocab_size": 4}, {"n_layer": 8, "n_embd": 32},
])
def test_param_shapes_match_reference_names_shapes_and_order(overrides):
    config = get_config("microgpt", **overrides)
    assert param_shapes(config) == reference_shapes(config.vocab_size, config.n_embd, config.block_size, config.n_layer)
    assert num_params(config) == count(reference_shapes(config.vocab_size, config.n_embd, config.block_size, config.n_layer))


def test_presets_match_reference_table():
    v1, v2 = get_config("microgpt"), get_config("microgpt-v2")
    table = {  # docs/reference.md's table, column by column
        "microgpt": dict(n_embd=16, n_head=4, n_layer=1, block_size=8, activation="relu2", init_std=0.02,
                         proj_init_std=0.0, learning_rate=1e-2, beta1=0.9, beta2=0.95, eps_adam=1e-8,
                         num_steps=500, lr_schedule="cosine"),
        "microgpt-v2": dict(n_embd=16, n_head=4, n_layer=1, block_size=16, activation="relu", init_std=0.08,
                            proj_init_std=0.08, learning_rate=1e-2, beta1=0.85, beta2=0.99, eps_adam=1e-8,
                            num_steps=1000, lr_schedule="linear"),
    }
    for config, (preset, fields) in zip((v1, v2), table.items()):
        assert config.preset == preset
        assert {name: getattr(config, name) for name in fields} == fields, preset
    assert v1 == GPTConfig()  # the default config is the seeds' revision


def test_init_std_is_zero_only_for_the_microgpt_projections():
    v1, v2 = get_config("microgpt"), get_config("microgpt-v2")
    for name, _ in param_shapes(v1):
        projection = name.split(".")[-1] in ("attn_wo", "mlp_fc2")
        assert init_std_of(v1, name) == (0.0 if projection else 0.02), name
        assert init_std_of(v2, name) == 0.08, name


def test_config_is_frozen_and_presets_are_not_changed_by_overrides():
    config = get_config("microgpt", n_layer=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_layer = 4  # type: ignore[misc]
    assert config.n_layer == 3 and config.preset == "microgpt"
    assert PRESETS["microgpt"].n_layer == 1


def test_none_overrides_are_ignored_like_unset_flags():
    assert get_config("microgpt-v2", n_layer=None, beta1=None) == PRESETS["microgpt-v2"]


def test_to_dict_from_dict_round_trip():
    config = get_config("microgpt-v2", n_layer=2, vocab_size=30, learning_rate=3e-3)
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_field_types_name_every_field_with_the_type_of_its_value():
    types = field_types()
    assert list(types) == field_names()
    for name, kind in types.items():
        assert type(getattr(GPTConfig(), name)) is kind, name
    assert types["n_layer"] is int and types["learning_rate"] is float and types["activation"] is str


def test_head_dim_is_n_embd_over_n_head():
    assert get_config(n_embd=32, n_head=8).head_dim == 4


IMPOSSIBLE = [  # (overrides, words the message must contain)
    ({"n_embd": 16, "n_head": 3}, ["n_embd (16)", "divisible", "n_head (3)"]),
    ({"n_embd": 16, "n_head": 32}, ["divisible"]),
    ({"n_layer": 0}, ["n_layer", "positive integer", "0"]),
    ({"n_layer": -1}, ["n_layer", "positive integer"]),
    ({"n_embd": 0}, ["n_embd", "positive integer"]),
    ({"n_head": 0}, ["n_head", "positive integer"]),
    ({"block_size": 0}, ["block_size", "positive integer"]),
    ({"vocab_size": 0}, ["vocab_size"]),
    ({"vocab_size": 1}, ["vocab_size", "at least 2"]),
    ({"num_steps": 0}, ["num_steps", "positive integer"]),
    ({"n_layer": 1.5}, ["n_layer", "positive integer", "1.5"]),
    ({"n_layer": "2"}, ["n_layer", "positive integer", "'2'"]),
    ({"n_layer": True}, ["n_layer", "positive integer"]),
    ({"activation": "gelu"}, ["activation", "'gelu'", "relu2"]),
    ({"lr_schedule": "step"}, ["lr_schedule", "'step'", "cosine"]),
    ({"beta1": 1.0}, ["beta1", "[0, 1)"]),
    ({"beta1": -0.1}, ["beta1", "[0, 1)"]),
    ({"beta2": 1.5}, ["beta2", "[0, 1)"]),
    ({"beta2": math.nan}, ["beta2", "nan"]),
    ({"init_std": -0.02}, ["init_std", ">= 0"]),
    ({"proj_init_std": -1.0}, ["proj_init_std", ">= 0"]),
    ({"init_std": math.inf}, ["init_std", "inf"]),
    ({"init_std": math.nan}, ["init_std", "nan"]),
    ({"learning_rate": 0.0}, ["learning_rate", "> 0"]),
    ({"learning_rate": -1e-2}, ["learning_rate", "> 0"]),
    ({"learning_rate": math.inf}, ["learning_rate", "inf"]),
    ({"learning_rate": "0.01"}, ["learning_rate"]),
    ({"eps_adam": 0.0}, ["eps_adam", "> 0"]),
    ({"eps_adam": math.nan}, ["eps_adam", "nan"]),
]


@pytest.mark.parametrize("overrides, words", IMPOSSIBLE, ids=[repr(o) for o, _ in IMPOSSIBLE])
def test_impossible_values_raise_value_error_with_one_line_message(overrides, words):
    with pytest.raises(ValueError) as raised:
        get_config("microgpt", **overrides)
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    with pytest.raises(ValueError):  # the dataclass itself checks, not just get_config
        GPTConfig(**overrides)


def test_unknown_override_raises_value_error_naming_it():
    with pytest.raises(ValueError, match=r"unknown config field\(s\): dropout, n_layers"):
        get_config("microgpt", n_layers=2, dropout=0.1)


def test_unknown_field_in_dict_raises_value_error_naming_it():
    fields = {**GPTConfig().to_dict(), "bias": True}
    with pytest.raises(ValueError, match="unknown config field.*bias"):
        GPTConfig.from_dict(fields)


def test_unknown_preset_raises_value_error_listing_the_presets():
    with pytest.raises(ValueError, match=r"unknown preset 'microgpt-v3'.*microgpt, microgpt-v2"):
        get_config("microgpt-v3")


def test_config_flags_cover_every_overridable_field_and_parse_into_a_config():
    import argparse

    from microgpt_scalar.cli import add_config_flags, config_overrides
    from microgpt_scalar.config import field_names

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    flags = {option for action in parser._actions for option in action.option_strings} - {"-h", "--help"}
    expected = {f"--{name.replace('_', '-')}" for name in field_names() if name not in ("preset", "vocab_size")}
    assert flags == expected | {"--steps"}
    args = parser.parse_args(["--n-layer", "2", "--steps", "7", "--init-std", "0.1"])
    config = get_config("microgpt-v2", **config_overrides(args))
    assert (config.n_layer, config.num_steps, config.init_std, config.block_size) == (2, 7, 0.1, 16)
    assert config_overrides(parser.parse_args([])) == {name: None for name in field_names()
                                                       if name not in ("preset", "vocab_size")}
