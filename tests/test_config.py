from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.qlearning import QLearningConfig
from toolkit.config import RunSettings, build, load_yaml, parse_assignments, split
from toolkit.errors import ConfigError


def test_parse_assignments_reads_yaml_scalars() -> None:
    values = parse_assignments(["alpha=0.2", "steps=100", "update=expected_sarsa", "x=true"])
    assert values == {"alpha": 0.2, "steps": 100, "update": "expected_sarsa", "x": True}


@pytest.mark.parametrize("bad", ["alpha", "=3", "alpha0.2"])
def test_parse_assignments_rejects_missing_equals(bad: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments([bad])


@pytest.mark.parametrize(("values", "field"), [
    ({"alpha": -0.1}, "alpha"),
    ({"gamma": 1.5}, "gamma"),
    ({"epsilon": -1}, "epsilon"),
    ({"alpha": "fast"}, "alpha"),
    ({"steps_per_call": 1.5}, "steps_per_call"),
    ({"update": "sarsa"}, "update"),
    ({"decay_every": "minute"}, "decay_every"),
    ({"alpha_min": 0.5, "alpha": 0.1}, "alpha_min"),
])
def test_bad_values_name_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(QLearningConfig, values)
    assert str(info.value).startswith(field)
    assert "\n" not in str(info.value)


def test_exponent_floats_and_nan() -> None:
    values = parse_assignments(["alpha=5e-1"])
    assert values == {"alpha": "5e-1"}  # YAML 1.1 reads this as a string
    assert build(QLearningConfig, values).alpha == 0.5
    with pytest.raises(ConfigError, match="alpha must be a finite number"):
        build(QLearningConfig, parse_assignments(["alpha=.nan"]))


def test_unknown_key_suggests_close_match() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'gama'.*did you mean: gamma"):
        build(QLearningConfig, {"gama": 0.9})


@given(st.integers(min_value=0, max_value=1))
def test_integers_are_accepted_for_float_fields(value: int) -> None:
    cfg = build(QLearningConfig, {"gamma": value})
    assert cfg.gamma == float(value) and isinstance(cfg.gamma, float)


def test_split_routes_keys_to_plugin_and_run_settings() -> None:
    plugin, run = split({"alpha": 0.2, "seed": 3, "steps": 10}, QLearningConfig, RunSettings)
    assert plugin == {"alpha": 0.2}
    assert run == {"seed": 3, "steps": 10}
    with pytest.raises(ConfigError, match="unknown config key 'sead'"):
        split({"sead": 3}, QLearningConfig, RunSettings)


def test_plugin_config_fields_do_not_shadow_run_settings() -> None:
    assert not set(QLearningConfig.field_names()) & set(RunSettings.field_names())


def test_run_settings_budget_needs_exactly_one_unit() -> None:
    assert RunSettings(steps=5).budget() == ("steps", 5)
    with pytest.raises(ConfigError, match="exactly one"):
        RunSettings(steps=5, episodes=3).budget()
    with pytest.raises(ConfigError, match="steps must be positive"):
        RunSettings(steps=-5)
    with pytest.raises(ConfigError, match="device"):
        RunSettings(device="tpu")
    with pytest.raises(ConfigError, match="seed must be in"):
        RunSettings(seed=-1)


def test_load_yaml(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("alpha: 0.3\nupdate: expected_sarsa\n")
    assert load_yaml(good) == {"alpha": 0.3, "update": "expected_sarsa"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")


def test_every_field_has_help() -> None:
    assert all(QLearningConfig.help().values())
    assert all(RunSettings.help().values())
