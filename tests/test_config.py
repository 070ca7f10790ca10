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


def test_load_yaml_rejects_text_that_is_not_utf8(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("update: expected_sarsa  # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text .*save it as UTF-8"):
        load_yaml(latin1)
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)


@pytest.mark.parametrize("text", ["1: 0.2\n", "alpha: 0.2\nnull: 1\n", "true: 1\n", "0.5: x\n"])
def test_load_yaml_rejects_keys_that_are_not_names(tmp_path: Path, text: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"keys.yaml: key .* is not a config name"):
        load_yaml(path)


def test_build_and_split_reject_keys_that_are_not_names() -> None:
    with pytest.raises(ConfigError, match="config key 1 is not a name"):
        build(QLearningConfig, {1: 0.2})
    with pytest.raises(ConfigError, match="config key None is not a name"):
        split({None: 3}, QLearningConfig, RunSettings)


def test_seed_is_a_32_bit_unsigned_integer() -> None:
    assert RunSettings(seed=2**32 - 1, steps=1).seed == 2**32 - 1
    for seed in (2**32, 99999999999999999999999, 10**400):
        with pytest.raises(ConfigError, match=r"seed must be in \[0, 4294967295\], got \d+$"):
            build(RunSettings, {"seed": seed, "steps": 1})


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_devices_that_are_accepted(device: str) -> None:
    assert RunSettings(device=device, steps=1).device == device


@pytest.mark.parametrize("device", ["tpu", "cuda:", "cuda:x", "cuda:0:1", "CPU", "cuda0", ""])
def test_devices_that_are_refused(device: str) -> None:
    with pytest.raises(ConfigError, match=r"device must be auto, cpu, cuda or cuda:N"):
        RunSettings(device=device, steps=1)


def test_a_huge_integer_for_a_float_field_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="alpha must be a finite number"):
        build(QLearningConfig, {"alpha": 10**400})
