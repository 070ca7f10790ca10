"""Behaviour that mutation testing (`make mutate`, docs/testing.md) found no test for.

Each test checks one promise of runner.py, checkpoint.py, config.py or qlearning.py that the
rest of the suite exercised without asserting: exact messages, boundaries, the checkpoint the
summary prefers, the schedule of evaluations, what happens when writing the error report fails.
"""

from __future__ import annotations

import errno
import io
import json
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import pytest
import torch
from rich.console import Console

from agents.qlearning import QLearning, QLearningConfig
from toolkit.checkpoint import check_state, load_checkpoint, save_checkpoint
from toolkit.config import (
    RunSettings,
    TrainerConfig,
    build,
    check_range,
    coerce,
    load_yaml,
    param,
    parse_assignments,
    split,
)
from toolkit.environments import EnvSource, resolve_env
from toolkit.errors import CheckpointError, ConfigError, GymkitError, PluginError
from toolkit.logger import RunLogger
from toolkit.rundir import RunDir
from toolkit.runner import Runner, RunResult
from toolkit.testing import make_trainer
from toolkit.trainer import Budget, GenerativeTrainer, TrainerContext

# -- checkpoint.py: what a checkpoint cannot hold, and why a file cannot be read ---------------


@pytest.mark.parametrize(("value", "message"), [
    ({1.5: 2}, "checkpoint['q'] has a key 1.5 of type float; use strings or integers as keys"),
    ({1, 2}, "checkpoint['q'] holds a set, which a checkpoint cannot hold; store its state as "
             "tensors, numbers, strings, lists or dicts instead"),
    (np.zeros(3), "checkpoint['q'] holds a numpy.ndarray, which a checkpoint cannot hold; "
                  "convert it with torch.from_numpy(array) or array.tolist()"),
    (np.float32(1.0), "checkpoint['q'] holds a numpy.float32, which a checkpoint cannot hold; "
                      "convert it with float(x) or int(x)"),
    (np.ma.array([1.0, 2.0]), "checkpoint['q'] holds a numpy.ma.MaskedArray, which a checkpoint "
                              "cannot hold; convert it with torch.from_numpy(array) or "
                              "array.tolist()"),
])
def test_an_unsavable_state_gets_its_whole_message(tmp_path: Path, value: object,
                                                   message: str) -> None:
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.pt", {"q": value})
    assert str(info.value) == message


def _unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> str:
    """The one-line error for a file that torch.load fails on with `error`."""
    path = tmp_path / "c.pt"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    prefix = f"{path} is corrupted or not a gymkit checkpoint ("
    suffix = "); use another checkpoint or start a new run"
    message = str(info.value)
    assert message.startswith(prefix) and message.endswith(suffix), message
    return message[len(prefix):-len(suffix)]


def test_a_corrupted_checkpoint_names_the_first_line_of_the_cause_without_colours(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    error = RuntimeError("\x1b[1mPytorchStreamReader failed\x1b[0m reading zip archive\n"
                         "  at frame 2")
    assert _unreadable(tmp_path, monkeypatch, error) == \
        "PytorchStreamReader failed reading zip archive"


def test_a_cause_without_a_message_is_named_by_its_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _unreadable(tmp_path, monkeypatch, EOFError()) == "EOFError"


def test_a_long_cause_is_cut_at_a_word_before_100_characters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exactly_100 = "x" * 100
    assert _unreadable(tmp_path, monkeypatch, RuntimeError(exactly_100)) == exactly_100
    one_more = "x" * 50 + " " + "y" * 50
    assert _unreadable(tmp_path, monkeypatch, RuntimeError(one_more)) == "x" * 50 + " …"
    # The 100th character ends a word, a space follows it, and two spaces precede that word:
    # the cut keeps the first 100 characters up to their last space, that space included.
    long = "a" * 40 + " " + "b" * 56 + "  c " + "d" * 30
    assert _unreadable(tmp_path, monkeypatch, RuntimeError(long)) == \
        "a" * 40 + " " + "b" * 56 + "  …"



@pytest.mark.filterwarnings("ignore:Detected pickle protocol 5:UserWarning")
def test_a_torch_file_with_python_objects_is_named_as_such(tmp_path: Path) -> None:
    # Pickled with protocol 5, as other tools may write it: torch's weights_only loader
    # refuses the file without naming an "Unsupported global".
    path = tmp_path / "set.pt"
    torch.save({"format": "gymkit-checkpoint", "q": {1, 2}}, path, pickle_protocol=5)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (
        f"{path} holds Python objects that are not plain data, so it cannot be loaded safely; "
        "the plugin that wrote it must keep its state_dict to tensors, numbers, strings, lists "
        "and dicts")


def test_a_corrupted_json_checkpoint_says_where_it_broke(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_text('{"format": "gymkit-checkpoint", "steps": ')
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"{path} is corrupted (Expecting value: line 1 column 42 "
                               "(char 41)); use another checkpoint or start a new run")


def test_a_list_of_tensors_goes_to_a_torch_file_and_back(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"weights": [torch.tensor(1.5)]})
    assert path.read_bytes()[:1] != b"{"  # not JSON: JSON cannot hold a tensor
    assert load_checkpoint(path)["weights"][0].item() == 1.5


def test_every_checkpoint_records_its_format_version(tmp_path: Path) -> None:
    plain = save_checkpoint(tmp_path / "plain.pt", {"steps": 1})
    assert json.loads(plain.read_text())["format_version"] == 1
    tensors = save_checkpoint(tmp_path / "tensors.pt", {"w": torch.zeros(1)})
    assert torch.load(tensors, weights_only=True)["format_version"] == 1


def test_torch_state_dicts_and_lists_are_checked_item_by_item() -> None:
    check_state({"net": torch.nn.Linear(2, 2).state_dict()}, "checkpoint")  # an OrderedDict
    with pytest.raises(CheckpointError) as info:
        check_state({"q": [1, {1, 2}]}, "checkpoint")
    assert str(info.value).startswith("checkpoint['q'][1] holds a set,")


def test_a_checkpoint_without_a_format_version_loads_and_a_newer_one_is_refused(
        tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    old.write_text(json.dumps({"format": "gymkit-checkpoint", "steps": 3}))
    assert load_checkpoint(old)["steps"] == 3
    newer = tmp_path / "newer.pt"
    newer.write_text(json.dumps({"format": "gymkit-checkpoint", "format_version": 2}))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(newer)
    assert str(info.value) == (f"{newer} was written by a newer gymkit (format 2); "
                               "upgrade gymkit")


def test_a_checkpoint_without_a_required_entry_is_refused_by_name(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", {"trainer": {}})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, require=("trainer", "loop", "rng"))
    assert str(info.value) == (f"{path} is incomplete (no 'loop', 'rng'); use another "
                               "checkpoint or start a new run")


def test_a_checkpoint_creates_the_folders_it_goes_in(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "a" / "b" / "last.pt", {"steps": 1})
    assert load_checkpoint(path)["steps"] == 1

# -- config.py: param(), help(), interval messages, config files ---------------------------------


def test_param_defaults_are_deep_copies_and_every_field_keeps_its_help() -> None:
    # Declared here rather than at import time, so that param() runs inside the test.
    @dataclass
    class Layers(TrainerConfig):
        sizes: list[list[int]] = param([[64, 64]], "hidden sizes per tower")
        rate: float = param(0.1, "learning rate")
        plain: int = 3
        bare: int = field(default=4)

    a, b = Layers(), Layers()
    a.sizes[0].append(32)
    assert b.sizes == [[64, 64]] and Layers().sizes == [[64, 64]]
    assert Layers.help() == {"sizes": "hidden sizes per tower", "rate": "learning rate",
                             "plain": "", "bare": ""}


@pytest.mark.parametrize(("value", "low", "high", "message"), [
    (2.5, 0, 2.0, "x must be in [0, 2], got 2.5"),
    (-1, 0, 2**32 - 1, "x must be in [0, 4294967295], got -1"),
    (0.0001, 0.001, 0.5, "x must be in [0.001, 0.5], got 0.0001"),
])
def test_interval_ends_are_written_as_given(value: float, low: float, high: float,
                                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_range(SimpleNamespace(x=value), "x", low, high)
    assert str(info.value) == message


def test_a_seed_out_of_range_names_the_32_bit_limit() -> None:
    with pytest.raises(ConfigError) as info:
        RunSettings(seed=2**32)
    assert str(info.value) == "seed must be in [0, 4294967295], got 4294967296"


def _yaml_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    return str(info.value)


def test_config_file_errors_are_whole_sentences(tmp_path: Path) -> None:
    assert _yaml_error(tmp_path) == f"config file {tmp_path} is a directory; pass a YAML file"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"alpha: 0.2\nnote: caf\xe9\n")
    assert _yaml_error(latin1) == (f"config file {latin1} is not UTF-8 text (byte 20); "
                                   "save it as UTF-8")
    numbers = tmp_path / "numbers.yaml"
    numbers.write_text("alpha: 0.2\n3: x\n")
    assert _yaml_error(numbers) == (f"config file {numbers}: key 3 is not a config name; "
                                    "write names like alpha: 0.2")
    broken = tmp_path / "broken.yaml"
    broken.write_text("alpha: [0.2\ngamma: 0.9\n")
    message = _yaml_error(broken)
    assert message.startswith(f"config file {broken} is not valid YAML: while parsing")
    assert "\n" not in message


def test_an_unreadable_config_file_says_why(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.yaml"
    path.write_text("alpha: 0.2\n")

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    assert _yaml_error(path) == f"cannot read config file {path}: Permission denied"



@pytest.mark.parametrize(("values", "message"), [
    ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
    ({"alpha": 1.5}, "alpha must be in (0, 1], got 1.5"),
    ({"alpha_min": -0.1}, "alpha_min must be in [0, 1], got -0.1"),
    ({"alpha_min": 1.5}, "alpha_min must be in [0, 1], got 1.5"),
    ({"alpha_decay": 0.0}, "alpha_decay must be in (0, 1], got 0.0"),
    ({"alpha_decay": 1.5}, "alpha_decay must be in (0, 1], got 1.5"),
    ({"gamma": -0.1}, "gamma must be in [0, 1], got -0.1"),
    ({"gamma": 1.5}, "gamma must be in [0, 1], got 1.5"),
    ({"epsilon": -0.1}, "epsilon must be in [0, 1], got -0.1"),
    ({"epsilon": 1.5}, "epsilon must be in [0, 1], got 1.5"),
    ({"epsilon_min": -0.1}, "epsilon_min must be in [0, 1], got -0.1"),
    ({"epsilon_min": 1.5}, "epsilon_min must be in [0, 1], got 1.5"),
    ({"epsilon_decay": 0.0}, "epsilon_decay must be in (0, 1], got 0.0"),
    ({"epsilon_decay": 1.5}, "epsilon_decay must be in (0, 1], got 1.5"),
    ({"decay_fraction": 0.0}, "decay_fraction must be in (0, 1], got 0.0"),
    ({"decay_fraction": 1.5}, "decay_fraction must be in (0, 1], got 1.5"),
    ({"steps_per_call": 0}, "steps_per_call must be in [1, inf], got 0"),
    ({"alpha": 0.1, "alpha_min": 0.2}, "alpha_min (0.2) must not exceed alpha (0.1)"),
    ({"epsilon": 0.1, "epsilon_min": 0.2}, "epsilon_min (0.2) must not exceed epsilon (0.1)"),
])
def test_q_learning_hyperparameters_are_refused_just_outside_their_ranges(
        values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        QLearningConfig(**values)
    assert str(info.value) == message


def test_q_learning_hyperparameters_are_accepted_at_their_closed_ends() -> None:
    QLearningConfig(alpha=1.0, alpha_min=0.0, alpha_decay=1.0, gamma=0.0, epsilon=0.0,
                    epsilon_min=0.0, epsilon_decay=1.0, decay_fraction=1.0, steps_per_call=1)
    QLearningConfig(alpha=1.0, alpha_min=1.0, gamma=1.0, epsilon=1.0, epsilon_min=1.0)


@pytest.mark.parametrize(("values", "message"), [
    ({"steps": 0}, "steps must be positive, got 0"),
    ({"episodes": 0}, "episodes must be positive, got 0"),
    ({"epochs": 0}, "epochs must be positive, got 0"),
    ({"eval_every": 0}, "eval_every must be in [1, inf], got 0"),
    ({"eval_episodes": 0}, "eval_episodes must be in [1, inf], got 0"),
    ({"final_eval_episodes": 0}, "final_eval_episodes must be in [1, inf], got 0"),
    ({"checkpoint_every": 0}, "checkpoint_every must be in [1, inf], got 0"),
    ({"threads": 0}, "threads must be in [1, inf], got 0"),
    ({"checkpoint_every_s": -1.0}, "checkpoint_every_s must be in [0, inf], got -1.0"),
])
def test_run_settings_are_refused_just_outside_their_ranges(values: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunSettings(**values)
    assert str(info.value) == message


def test_the_budget_error_lists_what_was_set() -> None:
    for settings, got in [(RunSettings(), "none"), (RunSettings(steps=5, epochs=2),
                                                    "steps, epochs")]:
        with pytest.raises(ConfigError) as info:
            settings.budget()
        assert str(info.value) == ("set exactly one training budget: --steps, --episodes or "
                                   f"--epochs (got {got})")
    assert RunSettings(episodes=1, checkpoint_every_s=0.0).budget() == ("episodes", 1)


def test_an_empty_assignment_is_an_empty_string() -> None:
    assert parse_assignments(["note=", "tag=  "]) == {"note": "", "tag": ""}


def test_range_messages_for_open_upper_ends_and_missing_lower_ends() -> None:
    holder = SimpleNamespace(x=1.0)
    with pytest.raises(ConfigError) as info:
        check_range(holder, "x", 0, 1, high_open=True)
    assert str(info.value) == "x must be in [0, 1), got 1.0"
    check_range(SimpleNamespace(x=0.5), "x", 0, 1, high_open=True)
    with pytest.raises(ConfigError) as info:
        check_range(SimpleNamespace(x=2), "x", high=1)
    assert str(info.value) == "x must be in [-inf, 1], got 2"


def test_build_lists_the_valid_keys_and_unions_may_put_none_first() -> None:
    with pytest.raises(ConfigError) as info:
        build(_Kinds, {"zzz": 2})
    assert str(info.value).endswith(
        "; valid keys: flag, count, name, sizes, pair, table, anything")
    assert coerce("x", 3, None | int) == 3  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        coerce("mode", "c", Literal["a", "b"])
    assert str(info.value) == "mode must be one of a, b, got 'c'"


def test_a_value_may_hold_equals_signs_and_text_that_is_not_yaml() -> None:
    assert parse_assignments(["expr=a=b", "raw=[1, 2"]) == {"expr": "a=b", "raw": "[1, 2"}


def test_an_unknown_key_lists_every_valid_key_of_every_class() -> None:
    with pytest.raises(ConfigError) as info:
        split({"zzz": 1}, _ScriptConfig, _ScriptConfig)
    assert str(info.value) == "unknown config key 'zzz'; valid keys: stride, stride"


@dataclass
class _Kinds(TrainerConfig):
    flag: bool = param(False, "a switch")
    count: int | None = param(None, "a count, or none")
    name: str = param("x", "a name")
    sizes: list[int] = param([1], "layer sizes")
    pair: tuple[int, int] = param((1, 2), "two numbers")
    table: dict[str, float] = param({}, "a mapping")
    anything: Any = param(None, "not checked")


def test_values_are_checked_against_each_kind_of_annotation() -> None:
    cfg = build(_Kinds, {"flag": True, "count": 3, "name": "n", "sizes": [4, 5],
                         "pair": [6, 7], "table": {"a": 1.0}, "anything": [8]})
    assert (cfg.flag, cfg.count, cfg.name, cfg.sizes, cfg.pair, cfg.table, cfg.anything) == \
        (True, 3, "n", [4, 5], (6, 7), {"a": 1.0}, [8])
    assert build(_Kinds, {"count": None, "anything": {"b": 2}}).anything == {"b": 2}


@pytest.mark.parametrize(("values", "message"), [
    ({"flag": "yes"}, "flag expects true or false, got 'yes'"),
    ({"count": "many"}, "count expects an integer, got 'many'"),
    ({"name": 3}, "name expects a string, got 3"),
    ({"sizes": 4}, "sizes expects a list, got 4"),
    ({"sizes": [4, "five"]}, "sizes expects an integer, got 'five'"),
    ({"table": [1]}, "table expects a mapping, got [1]"),
])
def test_a_value_of_the_wrong_kind_is_refused_by_name(values: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(_Kinds, values)
    assert str(info.value) == message

# -- qlearning.py: the Q-table's image, summary, panels and old checkpoints -----------------------


class _Chain(gym.Env):
    """A row of states that is not a grid map: actions move left or right, or stay."""

    def __init__(self, n_states: int = 10, n_actions: int = 2) -> None:
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.state = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        move = {0: -1, 1: 1}.get(int(action), 0)
        self.state = min(max(self.state + move, 0), self.observation_space.n - 1)
        done = self.state == self.observation_space.n - 1
        return self.state, float(done), done, False, {}


@pytest.fixture
def chain() -> Iterator[str]:
    gym.register("gymkit-tests/Chain-v0", entry_point=_Chain, max_episode_steps=50)
    yield "gymkit-tests/Chain-v0"
    del gym.registry["gymkit-tests/Chain-v0"]


def _context() -> TrainerContext:
    return TrainerContext("cpu", 0, Budget("steps", 10**6))


@pytest.mark.parametrize(("n_states", "n_actions", "shape"), [
    (1, 1, (256, 256, 3)),    # one 256-pixel cell
    (10, 2, (250, 50, 3)),    # 25-pixel cells: as many as fit in 256
    (300, 2, (300, 2, 3)),    # more rows than pixels: one pixel each
])
def test_a_q_table_that_is_no_grid_is_drawn_within_256_pixels(
        chain: str, n_states: int, n_actions: int, shape: tuple[int, int, int]) -> None:
    source = EnvSource("chain", chain, {"n_states": n_states, "n_actions": n_actions})
    trainer = QLearning(QLearningConfig(), source, _context())
    assert trainer.images()["images/q_table"].shape == shape
    assert trainer.panels() == []  # no map to draw the policy on


def test_the_q_table_is_float_even_when_initial_q_is_an_integer() -> None:
    trainer = QLearning(QLearningConfig(initial_q=0), EnvSource("fl", "FrozenLake-v1"),
                        _context())
    table = trainer.q_table()
    assert table.dtype == np.float64 and table.shape == (16, 4)


def test_the_summary_states_the_optimum_within_the_time_limit() -> None:
    # Taxi: -1 a step and +20 for the drop-off, so the optimal return (7.93) and the optimal
    # success rate (1.0) differ, and its episodes are cut at 200 steps.
    taxi = make_trainer(QLearning, "taxi")
    assert taxi.summary() == {"optimal_mean_return": pytest.approx(7.93),
                              "optimum_horizon": 200, "optimal_success_rate": 1.0}
    assert taxi.panels() == []  # Taxi's states are not the cells of its map


def test_a_checkpoint_with_a_tensor_q_table_still_loads() -> None:
    trainer = make_trainer(QLearning, "frozenlake")
    state = trainer.state_dict()
    expected = [[float(4 * s + a) for a in range(4)] for s in range(16)]
    trainer.load_state_dict({**state, "q": torch.tensor(expected, dtype=torch.float64)})
    assert trainer.q == expected
    assert all(type(v) is float for row in trainer.q for v in row)


@pytest.mark.parametrize(("q", "shape"), [([], "(0, 0)"), ([[0.0] * 4] * 9, "(9, 4)")])
def test_a_q_table_of_the_wrong_shape_is_refused_with_both_shapes(q: list, shape: str) -> None:
    trainer = make_trainer(QLearning, "frozenlake")
    with pytest.raises(ConfigError) as info:
        trainer.load_state_dict({**trainer.state_dict(), "q": q})
    assert str(info.value) == f"checkpoint Q-table has shape {shape}, this env needs (16, 4)"


def test_a_checkpoint_taken_in_mid_episode_resumes_at_the_start_of_a_new_one() -> None:
    trainer = make_trainer(QLearning, "frozenlake")
    trainer.load_state_dict({**trainer.state_dict(), "obs": 5, "episode_done": False})
    assert trainer.episode_done is True
    assert trainer.state_dict()["episode_done"] is True


def test_the_reported_td_error_is_the_mean_absolute_error_of_the_call() -> None:
    # Deterministic 4x4: from state 14, RIGHT (2) reaches the goal with reward 1. Q(14, RIGHT)
    # = 3 overestimates it: the TD error is 1 - 3 = -2, reported as its size.
    trainer = make_trainer(QLearning, "frozenlake-deterministic",
                           {"steps_per_call": 1, "epsilon": 0.0, "epsilon_min": 0.0})
    trainer.q[14] = [0.0, 0.0, 3.0, 0.0]
    trainer.env.unwrapped.s = 14  # type: ignore[attr-defined]
    trainer.obs = 14
    metrics = trainer.train_step()
    assert trainer.steps == 1 and metrics["losses/td_error"] == pytest.approx(2.0)


def test_a_new_trainer_is_at_the_start_of_an_episode_with_a_plain_flag() -> None:
    assert make_trainer(QLearning, "frozenlake").state_dict()["episode_done"] is False


def test_the_incompatibility_is_stated_in_full() -> None:
    box = gym.spaces.Box(-1.0, 1.0, (2,))
    assert QLearning.incompatibility(box, gym.spaces.Discrete(2)) == (
        "needs Discrete observation and action spaces (a table row per state)")


def test_a_unique_greedy_action_draws_no_random_number() -> None:
    # Only a tie is broken at random; a unique best action leaves the RNG where it was,
    # so the exploration that follows is the same as if no greedy step had happened.
    trainer = make_trainer(QLearning, "frozenlake", {"epsilon": 0.0, "epsilon_min": 0.0})
    assert isinstance(trainer, QLearning)
    trainer.rng.seed(7)
    trainer.rng.random()  # what _explore's epsilon test draws
    expected = trainer.rng.getstate()
    trainer.rng.seed(7)
    assert trainer._explore([0.0, 2.0, 1.0, 0.5]) == 1
    assert trainer.rng.getstate() == expected


def test_the_exploring_policy_draws_an_action_per_env_even_unseeded() -> None:
    trainer = make_trainer(QLearning, "frozenlake")
    assert isinstance(trainer, QLearning)
    trainer.epsilon = 1.0
    policy = trainer.policy(deterministic=False)
    actions = policy.act(np.zeros(64, dtype=np.int64), np.ones(64, dtype=bool))  # no reset
    assert len(actions) == 64 and len(set(actions.tolist())) == 4


def test_episode_metrics_and_td_error_are_means_over_the_call(chain: str) -> None:
    # A 2-state chain: RIGHT from state 0 ends the episode with reward 1, so each greedy
    # episode is one step long and returns 1. Q(0, RIGHT) starts at 3: TD errors 1 - 3 = -2,
    # then (after Q += 0.1 * td) -1.8 and -1.62; the call reports their mean size.
    source = EnvSource("chain", chain, {"n_states": 2, "n_actions": 2})
    trainer = QLearning(QLearningConfig(epsilon=0.0, epsilon_min=0.0, steps_per_call=3), source,
                        _context())
    trainer.q[0] = [0.0, 3.0]
    metrics = trainer.train_step()
    assert (trainer.steps, trainer.episodes) == (3, 3)
    assert metrics["charts/episodic_return"] == 1.0
    assert metrics["charts/episodic_length"] == 1.0
    assert metrics["losses/td_error"] == pytest.approx((2.0 + 1.8 + 1.62) / 3)


def test_an_episode_budget_counts_episodes_not_steps() -> None:
    # One episode a call: steps soon outnumber the 6 episodes of the budget, and a budget
    # read in the wrong counter would stop training early.
    budget = Budget("episodes", 6)
    trainer = QLearning(QLearningConfig(steps_per_call=1), resolve_env("frozenlake")[0],
                        TrainerContext("cpu", 0, budget))
    for call in range(1, 7):
        trainer.train_step()
        assert trainer.episodes == call
    assert trainer.steps > 6 and trainer.budget_left() == 0


def test_a_budget_that_ends_in_mid_episode_leaves_a_plain_false_flag(chain: str) -> None:
    # A 3-state chain walked greedily RIGHT: episodes of 2 steps. A 3-step budget ends one
    # step into the second episode, after the reset that started it.
    source = EnvSource("chain", chain, {"n_states": 3, "n_actions": 2})
    trainer = QLearning(QLearningConfig(epsilon=0.0, epsilon_min=0.0), source,
                        TrainerContext("cpu", 0, Budget("steps", 3)))
    trainer.q = [[0.0, 1.0] for _ in range(3)]
    trainer.train_step()
    assert (trainer.steps, trainer.episodes) == (3, 1)
    assert trainer.state_dict()["episode_done"] is False


# -- runner.py: a scripted trainer makes every evaluation's score known in advance ---------------


@dataclass
class _ScriptConfig(TrainerConfig):
    stride: int = param(1, "steps per train_step")


class _Scripted(GenerativeTrainer):
    """Counts steps; `evaluate` reads its score off `script` at the current count (no entry:
    no score). Lower scores are better, as for a loss."""

    Config = _ScriptConfig
    cfg: _ScriptConfig
    progress_unit = "steps"
    budget_units = ("steps",)
    uses_torch = False
    script: ClassVar[dict[int, float]] = {}

    def __init__(self, cfg: _ScriptConfig, source: Any, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.steps = self.calls = 0
        self.evaluated_at: list[int] = []

    def train_step(self) -> dict[str, float]:
        self.steps += self.cfg.stride
        self.calls += 1
        return {"losses/steps": float(self.steps)}

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        self.evaluated_at.append(self.steps)
        score = self.script.get(self.steps)
        return {} if score is None else {self.eval_metric: score}

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "calls": self.calls}

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.calls = state["steps"], state["calls"]


class _ScriptedReward(_Scripted):
    eval_metric = "eval/mean_return"
    eval_higher_is_better = True


def _runner(tmp_path: Path, cls: type[_Scripted] = _Scripted, *, steps: int = 4,
            stride: int = 1, every: int = 1, **kwargs: Any) -> Runner:
    settings = RunSettings(steps=steps, eval_every=every, checkpoint_every=every,
                           checkpoint_every_s=0, eval_episodes=1, final_eval_episodes=1)
    trainer = cls(_ScriptConfig(stride=stride), None,
                  TrainerContext("cpu", 0, Budget("steps", steps)))
    spec = {"kind": "generative", "plugin": "scripted", "target": "script",
            "config": {"stride": stride}}
    return Runner(trainer, settings, RunDir.create(tmp_path, "scripted", "script", 0), spec,
                  **{"quiet": True, **kwargs})


def test_evaluations_come_at_the_first_count_past_each_multiple(tmp_path: Path) -> None:
    # Counts 3, 6, 9, ...: an evaluation is due at 5, 10, 15, ... and happens at the first
    # count that reaches it; the last count (30) gets the final evaluation instead.
    runner = _runner(tmp_path, steps=30, stride=3, every=5)
    runner.run()
    assert runner.trainer.evaluated_at[:5] == [6, 12, 15, 21, 27]


@pytest.mark.parametrize(("cls", "script", "better", "best_step"), [
    (_Scripted, {1: 3.0, 2: 1.0, 3: 2.0, 4: 5.0}, "best", 2),
    # The final model (step 4) scores best on the periodic episodes: it is best.pt.
    (_Scripted, {1: 3.0, 2: 1.0, 3: 2.0, 4: 0.5}, "equal", 4),
    (_Scripted, {1: 3.0, 2: 1.0, 3: 2.0, 4: 1.0}, "equal", 2),  # a tie keeps the first
    (_Scripted, {1: 3.0, 2: 1.0, 3: 2.0}, "equal", 2),  # last.pt reported no score
    (_ScriptedReward, {1: 1.0, 2: 4.0, 3: 2.0, 4: 3.0}, "best", 2),
    (_ScriptedReward, {1: 1.0, 2: 4.0, 3: 2.0, 4: 5.0}, "equal", 4),
])
def test_the_summary_names_the_checkpoint_that_scored_better(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[_Scripted],
        script: dict[int, float], better: str, best_step: int) -> None:
    monkeypatch.setattr(cls, "script", script)
    result = _runner(tmp_path, cls).run()
    assert _best_step(result) == best_step
    assert json.loads((result.rundir.path / "summary.json").read_text())["better_checkpoint"] \
        == better
    assert result.summary["final_eval_best"] == {cls.eval_metric: script[best_step]}


def test_an_interrupted_run_returns_its_summary(tmp_path: Path) -> None:
    def stop_at_2(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= 2:
            runner.request_stop()

    result = _runner(tmp_path, on_step=stop_at_2).run()
    assert result.interrupted
    assert result.summary["status"] == "interrupted"
    assert result.summary["progress"] == {"steps": 2, "calls": 2}


def test_a_full_disk_is_reported_even_when_the_summary_cannot_be_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    write_summary = RunDir.write_summary

    def full_for_the_failure(self: RunDir, summary: dict[str, Any]) -> None:
        if summary["status"] == "failed":
            full()
        write_summary(self, summary)

    monkeypatch.setattr("toolkit.runner.save_checkpoint", full)
    monkeypatch.setattr(RunDir, "write_summary", full_for_the_failure)
    runner = _runner(tmp_path)
    with pytest.raises(GymkitError) as info:
        runner.run()
    assert str(info.value) == (f"no space left on the device while writing {runner.rundir}; "
                               f"free some space, then `gymkit resume {runner.rundir}` "
                               "continues from the last checkpoint")
    assert json.loads(runner.rundir.summary_path.read_text())["status"] == "running"


def _crash(error: BaseException) -> Any:
    def on_step(runner: Runner) -> None:
        raise error
    return on_step


def test_a_crash_leaves_a_traceback_file_and_a_one_line_error(tmp_path: Path) -> None:
    runner = _runner(tmp_path, on_step=_crash(ZeroDivisionError("deep inside")))
    with pytest.raises(ZeroDivisionError):
        runner.run()
    summary = json.loads(runner.rundir.summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "ZeroDivisionError: deep inside"
    lines = (runner.rundir.path / "traceback.txt").read_text().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ZeroDivisionError: deep inside"
    assert all(line.startswith("  ") for line in lines[1:-1])


def test_a_traceback_that_cannot_be_written_does_not_hide_the_error(tmp_path: Path) -> None:
    def crash(runner: Runner) -> None:
        (runner.rundir.path / "traceback.txt").mkdir()  # writing the file will fail
        raise ZeroDivisionError("deep inside")

    runner = _runner(tmp_path, on_step=crash)
    with pytest.raises(ZeroDivisionError) as info:
        runner.run()
    assert not hasattr(info.value, "gymkit_traceback")
    summary = json.loads(runner.rundir.summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "ZeroDivisionError: deep inside"


class _NoNewAttributes(Exception):
    """An exception class that guards its public attributes, as some libraries' do."""

    def __init__(self, refuse_with: type[Exception]) -> None:
        super().__init__("no new attributes")
        self._refuse_with = refuse_with

    def __setattr__(self, name: str, value: object) -> None:
        if not name.startswith("_"):
            raise self._refuse_with(f"cannot set {name}")
        super().__setattr__(name, value)


@pytest.mark.parametrize("refuse_with", [AttributeError, TypeError])
def test_an_exception_that_refuses_new_attributes_is_raised_as_it_is(
        tmp_path: Path, refuse_with: type[Exception]) -> None:
    error = _NoNewAttributes(refuse_with)
    runner = _runner(tmp_path, on_step=_crash(error))
    with pytest.raises(_NoNewAttributes) as info:
        runner.run()
    assert info.value is error
    assert (runner.rundir.path / "traceback.txt").is_file()


def _best_step(result: RunResult) -> int:
    return load_checkpoint(result.rundir.checkpoint("best"))["trainer"]["steps"]


@pytest.mark.parametrize(("cls", "script", "best_step"), [
    (_Scripted, {1: math.nan, 2: 2.0, 3: -math.inf}, 2),
    (_Scripted, {2: 2.0}, 2),  # the evaluations at 1 and 3 report no score
    (_Scripted, {1: 3.0, 2: 1.0, 3: 1.0}, 2),  # a later tie does not replace best.pt
    (_ScriptedReward, {1: 1.0, 2: 4.0, 3: 4.0}, 2),
    (_ScriptedReward, {1: math.inf, 2: 4.0, 3: math.nan}, 2),
])
def test_best_pt_holds_the_first_best_finite_periodic_score(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[_Scripted],
        script: dict[int, float], best_step: int) -> None:
    monkeypatch.setattr(cls, "script", script)
    runner = _runner(tmp_path, cls)
    runner.settings.stop_on_nonfinite = False  # the non-finite scores are the point here
    result = runner.run()
    assert _best_step(result) == best_step
    assert result.summary["best"] == {cls.eval_metric: script[best_step]}


def test_an_evaluation_without_the_eval_prefix_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_Scripted, "evaluate",
                        lambda self, episodes, seed: {"charts/score": 1.0})
    with pytest.raises(PluginError) as info:
        _runner(tmp_path).run()
    assert str(info.value) == ("scripted's evaluate returned the key 'charts/score', which "
                               "lacks a tag prefix (eval/)")


class _ScriptedPicture(_Scripted):
    def images(self) -> dict[str, np.ndarray]:
        return {"images/count": np.full((2, 2, 3), self.steps, dtype=np.uint8)}


def test_images_are_logged_at_the_step_of_each_evaluation(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = _runner(tmp_path, _ScriptedPicture, steps=6, every=2).run()
    events = EventAccumulator(str(result.rundir.path), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("images/count")] == [2, 4, 6]  # 6: the final one


def test_an_error_closing_the_logs_does_not_hide_the_error_that_stopped_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def close(self: RunLogger) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunLogger, "close", close)
    runner = _runner(tmp_path, on_step=_crash(ZeroDivisionError("deep inside")))
    with pytest.raises(ZeroDivisionError):
        runner.run()


def test_the_summary_records_what_ran_for_how_long_and_when(tmp_path: Path) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    started = time.perf_counter()
    result = _runner(tmp_path, steps=6, stride=2).run()
    elapsed = time.perf_counter() - started
    summary = json.loads((result.rundir.path / "summary.json").read_text())
    assert {k: summary[k] for k in ("status", "kind", "plugin", "target", "seed", "progress",
                                    "budget", "run_dir")} == {
        "status": "completed", "kind": "generative", "plugin": "scripted", "target": "script",
        "seed": 0, "progress": {"steps": 6, "calls": 3}, "budget": {"steps": 6},
        "run_dir": str(result.rundir)}
    assert 0 < summary["wall_time_s"] <= elapsed
    assert summary["per_second"] == pytest.approx(6 / summary["wall_time_s"])
    assert before <= datetime.fromisoformat(summary["started_at"]) <= \
        datetime.fromisoformat(summary["updated_at"]) <= datetime.now(timezone.utc)


def test_each_training_line_of_metrics_jsonl_carries_the_other_counters(tmp_path: Path) -> None:
    result = _runner(tmp_path, steps=6, stride=2, every=100).run()
    lines = [json.loads(line) for line in (result.rundir.path / "metrics.jsonl").open()]
    training = [line for line in lines if "losses/steps" in line]
    assert [(line["step"], line["calls"]) for line in training] == [(2, 1), (4, 2), (6, 3)]
    assert set(training[0]) == {"step", "calls", "losses/steps"}


def test_checkpoints_fall_on_each_multiple_of_checkpoint_every(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[tuple[str, int]] = []
    save = save_checkpoint

    def spy(path: Path, payload: dict[str, Any]) -> Path:
        saved.append((Path(path).stem, payload["trainer"]["steps"]))
        return save(path, payload)

    monkeypatch.setattr("toolkit.runner.save_checkpoint", spy)
    runner = _runner(tmp_path, steps=6)
    runner.settings = RunSettings(steps=6, eval_every=100, checkpoint_every=2,
                                  checkpoint_every_s=0, eval_episodes=1, final_eval_episodes=1)
    runner.run()
    assert saved == [("last", 2), ("last", 4), ("last", 6), ("last", 6)]  # the last: the end


class _Sleepy(_Scripted):
    def train_step(self) -> dict[str, float]:
        time.sleep(0.02)
        return super().train_step()


def test_steps_per_second_are_the_steps_of_a_call_over_its_duration(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 1000 steps per call, each call at least 20 ms: at most 50,000 steps per second, and
    # more than 1,000 unless the machine stalls for a whole second.
    result = _runner(tmp_path, _Sleepy, steps=3000, stride=1000, every=10**6).run()
    events = EventAccumulator(str(result.rundir.path), size_guidance={"scalars": 0})
    events.Reload()
    sps = [e.value for e in events.Scalars("time/SPS")]
    assert len(sps) == 3 and all(1_000 < v < 50_000 for v in sps), sps


class _Reporting(_Scripted):
    script: ClassVar[dict[int, float]] = {1: 0.5}

    def train_step(self) -> dict[str, float]:
        super().train_step()
        return {"losses/loss": 0.25, "charts/episodic_return": 1.5, "charts/epsilon": 0.125,
                "losses/other": 7.0}


def test_the_progress_bar_shows_the_main_metrics_and_the_best_score(tmp_path: Path) -> None:
    out = io.StringIO()
    _runner(tmp_path, _Reporting, steps=2, console=Console(file=out, width=200),
            quiet=False).run()
    assert "2/2 steps" in out.getvalue()
    assert "loss 0.25  episodic_return 1.5  epsilon 0.125  best eval 0.5" in out.getvalue()


def test_a_periodic_checkpoint_records_the_time_trained_so_far(tmp_path: Path) -> None:
    # A run killed after this checkpoint resumes with this much wall time already spent.
    elapsed: list[float] = []

    def read_last(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] == 2000:
            elapsed.append(load_checkpoint(runner.rundir.checkpoint("last"))["loop"]["elapsed"])

    _runner(tmp_path, _Sleepy, steps=3000, stride=1000, every=1000, on_step=read_last).run()
    assert len(elapsed) == 1 and elapsed[0] >= 0.04  # two calls of at least 20 ms


def test_an_os_error_other_than_a_full_disk_fails_the_run_with_its_traceback(
        tmp_path: Path) -> None:
    error = PermissionError(errno.EACCES, "Permission denied")
    runner = _runner(tmp_path, on_step=_crash(error))
    with pytest.raises(PermissionError) as info:
        runner.run()
    assert info.value is error
    summary = json.loads(runner.rundir.summary_path.read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "PermissionError: [Errno 13] Permission denied"
    assert (runner.rundir.path / "traceback.txt").read_text().splitlines()[-1] == \
        "PermissionError: [Errno 13] Permission denied"


def test_a_second_ctrl_c_in_mid_step_leaves_an_interrupted_run_that_points_to_last_pt(
        tmp_path: Path) -> None:
    runner = _runner(tmp_path, on_step=_crash(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    summary = json.loads(runner.rundir.summary_path.read_text())
    assert summary["status"] == "interrupted"
    assert summary["error"] == "stopped at once; resume continues from the last checkpoint"


def test_the_hyperparameter_table_holds_the_run_settings_and_the_plugin_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables: list[dict[str, Any]] = []
    monkeypatch.setattr(RunLogger, "hparams", lambda self, table: tables.append(table))
    runner = _runner(tmp_path, stride=2)
    runner.run()
    assert len(tables) == 1 and set(tables[0]) == {"run", "scripted"}
    assert tables[0]["run"] == runner.settings.to_dict()
    assert tables[0]["scripted"] == {"stride": 2}


def test_an_error_closing_the_logs_of_a_completed_run_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def close(self: RunLogger) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(RunLogger, "close", close)
    with pytest.raises(OSError, match="Input/output error"):
        _runner(tmp_path).run()


def test_a_resumed_run_counts_the_time_trained_before_it(tmp_path: Path) -> None:
    def stop_at_2(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] >= 2:
            runner.request_stop()

    first = _runner(tmp_path, _Sleepy, steps=4, on_step=stop_at_2)
    first.run()
    checkpoint = load_checkpoint(first.rundir.checkpoint("last"))
    before = checkpoint["loop"]["elapsed"]
    summary = json.loads(first.rundir.summary_path.read_text())
    first.rundir.write_summary({**summary, "started_at": "2020-01-02T03:04:05+00:00"})
    assert 0.04 <= before < 60  # two calls of at least 20 ms
    settings = first.settings
    trainer = _Sleepy(_ScriptConfig(), None, TrainerContext("cpu", 0, Budget("steps", 4)))
    started = time.perf_counter()
    result = Runner(trainer, settings, first.rundir, first.spec, quiet=True).run(checkpoint)
    resumed_for = time.perf_counter() - started
    assert before < result.summary["wall_time_s"] <= before + resumed_for
    assert result.summary["started_at"] == "2020-01-02T03:04:05+00:00"  # kept from the first
    final = load_checkpoint(first.rundir.checkpoint("last"))["loop"]["elapsed"]
    assert before < final <= result.summary["wall_time_s"]


def test_the_first_checkpoint_and_only_the_first_is_read_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[tuple[str, tuple[str, ...]]] = []

    def spy(path: Path, *, require: tuple[str, ...] = ()) -> dict[str, Any]:
        reads.append((Path(path).name, require))
        return load_checkpoint(path, require=require)

    monkeypatch.setattr("toolkit.runner.load_checkpoint", spy)
    _runner(tmp_path, steps=4, every=1).run()
    verified = [read for read in reads if read[1]]
    assert verified == [("last.pt", ("spec", "trainer", "loop", "rng"))]


def test_only_last_pt_restarts_the_clock_of_checkpoints_by_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every step scores better, so best.pt is written every step; each step takes 5 fake
    # seconds, and last.pt is due every 10 s: at step 3 (10 s after the start, exactly on
    # time) and step 5, then at the end. A best.pt that restarted the clock would stop those.
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(time, "monotonic", lambda: clock.now)
    monkeypatch.setattr(_Scripted, "script", {k: 10.0 - k for k in range(1, 7)})
    saved: list[tuple[str, int]] = []
    save = save_checkpoint

    def spy(path: Path, payload: dict[str, Any]) -> Path:
        saved.append((Path(path).stem, payload["trainer"]["steps"]))
        return save(path, payload)

    def tick(runner: Runner) -> None:
        clock.now += 5.0

    monkeypatch.setattr("toolkit.runner.save_checkpoint", spy)
    runner = _runner(tmp_path, steps=6, every=1, on_step=tick)
    runner.settings = RunSettings(steps=6, eval_every=1, checkpoint_every=100,
                                  checkpoint_every_s=10, eval_episodes=1, final_eval_episodes=1)
    runner.run()
    assert [step for which, step in saved if which == "last"] == [3, 5, 6]
    assert [step for which, step in saved if which == "best"] == [1, 2, 3, 4, 5, 6]


class _SignalsWhileBestLoads(_Scripted):
    script: ClassVar[dict[int, float]] = {1: 1.0, 2: 3.0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state["steps"] == 1:  # best.pt, loaded for its final evaluation
            signal.raise_signal(signal.SIGINT)


def test_a_signal_between_the_two_final_evaluations_stops_the_run_cleanly(
        tmp_path: Path) -> None:
    result = _runner(tmp_path, _SignalsWhileBestLoads, steps=2).run()
    assert result.interrupted and result.signal == signal.SIGINT
    assert result.summary["status"] == "interrupted"
    assert result.rundir.checkpoint("last").is_file()


def test_the_progress_bar_names_the_plugin_and_shows_by_default(tmp_path: Path) -> None:
    out = io.StringIO()
    settings = RunSettings(steps=3, eval_every=10, checkpoint_every=10, checkpoint_every_s=0,
                           final_eval_episodes=1)
    trainer = _Scripted(_ScriptConfig(), None, TrainerContext("cpu", 0, Budget("steps", 3)))
    Runner(trainer, settings, RunDir.create(tmp_path, "scripted", "script", 0),
           {"kind": "generative", "plugin": "scripted", "target": "script", "config": {}},
           console=Console(file=out, width=100)).run()
    assert "scripted" in out.getvalue() and "3/3 steps" in out.getvalue()


class _StopsInFinalEvaluation(_Scripted):
    runner: ClassVar[Runner | None] = None

    def evaluate(self, episodes: int, seed: int) -> dict[str, float]:
        if self.steps == 2 and self.runner is not None:
            self.runner.request_stop()
        return super().evaluate(episodes, seed)


def test_resuming_a_run_whose_training_was_done_shows_a_full_bar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_StopsInFinalEvaluation, "script", {1: 1.0, 2: 3.0})
    first = _runner(tmp_path, _StopsInFinalEvaluation, steps=2, every=1)
    monkeypatch.setattr(_StopsInFinalEvaluation, "runner", first)
    assert first.run().interrupted
    monkeypatch.setattr(_StopsInFinalEvaluation, "runner", None)
    out = io.StringIO()
    trainer = _Scripted(_ScriptConfig(), None, TrainerContext("cpu", 0, Budget("steps", 2)))
    result = Runner(trainer, first.settings, first.rundir, first.spec, quiet=False,
                    console=Console(file=out, width=100)).run(
        load_checkpoint(first.rundir.checkpoint("last")))
    assert result.summary["status"] == "completed"
    bar = out.getvalue()
    assert "2/2 steps" in bar and "scripted" in bar
    assert "None" not in bar and "XX" not in bar


def test_a_signal_during_training_finishes_the_step_and_stops_cleanly(tmp_path: Path) -> None:
    def signal_at_2(runner: Runner) -> None:
        if runner.trainer.progress()["steps"] == 2:
            signal.raise_signal(signal.SIGTERM)

    result = _runner(tmp_path, steps=4, on_step=signal_at_2).run()
    assert result.interrupted and result.signal == signal.SIGTERM
    assert result.summary["progress"] == {"steps": 2, "calls": 2}
    assert load_checkpoint(result.rundir.checkpoint("last"))["trainer"]["steps"] == 2


def test_the_last_checkpoint_at_the_end_records_the_time_trained(tmp_path: Path) -> None:
    result = _runner(tmp_path, _Sleepy, steps=2, every=100).run()  # no periodic checkpoint
    elapsed = load_checkpoint(result.rundir.checkpoint("last"))["loop"]["elapsed"]
    assert 0.04 <= elapsed <= result.summary["wall_time_s"]  # two calls of at least 20 ms
