"""Every env preset builds an env that passes gymnasium's own checker, as gymkit wraps it;
the project's wrappers, time limits, optional dependencies, and `gymkit list`'s time limits."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner, Result

from envs.wrappers import VELOCITY_INDICES, MaskVelocity
from toolkit import environments
from toolkit.cli import app
from toolkit.environments import (
    DEFAULT_MAX_EPISODE_STEPS,
    ENVS,
    EnvPreset,
    EnvSource,
    resolve_env,
    time_limit,
)
from toolkit.errors import GymkitError

#: Presets of this project that need an optional package (pyproject's extras); the rest need
#: gymnasium alone.
OPTIONAL = {"lunarlander": ["Box2D"], "pong": ["ale_py", "cv2"],
            "minatar-breakout": ["minatar"], "minatar-freeway": ["minatar"],
            "minatar-space-invaders": ["minatar"]}


def skip_unless_installed(name: str) -> None:
    for module in OPTIONAL.get(name, []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the {name} preset needs the optional module {module}, which is not "
                        "installed (see pyproject.toml's extras)")


def time_limits(env: gym.Env) -> list[int]:
    """The max_episode_steps of every TimeLimit in the wrapper chain, outermost first."""
    limits = []
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            limits.append(env._max_episode_steps)
        env = env.env
    return limits


def test_the_deep_rl_presets_are_registered() -> None:
    assert {"cartpole-masked", "pendulum", "lunarlander", "minatar-breakout",
            "minatar-freeway", "minatar-space-invaders", "pong"} <= set(ENVS.names())


@pytest.mark.parametrize("name", ENVS.names())
def test_every_preset_env_passes_gymnasiums_check_env(name: str) -> None:
    skip_unless_installed(name)
    env = resolve_env(name)[0].make()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a checker warning fails the test too
            # ...but for the one saying that the env is wrapped, which it is on purpose (time
            # limit, episode statistics, the preset's wrappers), CartPole-v1's own
            # observation space, which gymnasium registers with infinite bounds, and
            # Pendulum-v1's own action space, [-2, 2] rather than [-1, 1] (a recommendation).
            warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
            warnings.filterwarnings("ignore", message=".*Box observation space (min|max)imum "
                                                      "value is (-)?infinity")
            warnings.filterwarnings("ignore", message=".*we recommend using a symmetric and "
                                                      "normalized space")
            check_env(env, skip_render_check=True)
        # The one time limit the env runs under is the one `gymkit list` shows.
        assert time_limits(env) == [ENVS.get(name).time_limit()[0]]
    finally:
        env.close()


# -- MaskVelocity ------------------------------------------------------------------------------

def test_masked_cartpole_hides_velocities_and_keeps_positions() -> None:
    masked = resolve_env("cartpole-masked")[0].make()
    plain = resolve_env("cartpole")[0].make()
    assert masked.observation_space == plain.observation_space
    obs, _ = masked.reset(seed=3)
    full, _ = plain.reset(seed=3)
    velocities = []
    for action in [0, 1, 1, 0, 0, 0, 1, 1]:
        assert obs.dtype == full.dtype and masked.observation_space.contains(obs)
        assert np.array_equal(obs[[0, 2]], full[[0, 2]])  # cart position, pole angle
        assert np.all(obs[[1, 3]] == 0)
        velocities.append(full[[1, 3]])
        obs, *_ = masked.step(action)
        full, *_ = plain.step(action)
    assert np.any(np.abs(velocities) > 0.01)  # there were velocities to hide


@pytest.mark.parametrize("env_id", sorted(VELOCITY_INDICES))
def test_mask_velocity_zeroes_each_known_envs_velocities(env_id: str) -> None:
    if env_id.startswith("LunarLander") and importlib.util.find_spec("Box2D") is None:
        pytest.skip("LunarLander needs the optional module Box2D, which is not installed")
    env = MaskVelocity(gym.make(env_id))
    obs, _ = env.reset(seed=0)
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
    unwrapped: Any = env.unwrapped
    full = unwrapped.state if env_id.startswith(("CartPole", "MountainCar")) else None
    indices = list(VELOCITY_INDICES[env_id])
    assert np.all(obs[indices] == 0) and env.observation_space.contains(obs)
    if full is not None:  # the env's own state: the other entries are untouched
        kept = [i for i in range(len(obs)) if i not in indices]
        assert np.allclose(obs[kept], np.asarray(full)[kept])
    env.close()


def test_mask_velocity_names_the_envs_it_knows_for_any_other() -> None:
    env = gym.make("Acrobot-v1")
    with pytest.raises(GymkitError) as info:
        MaskVelocity(env)
    message = str(info.value)
    assert "Acrobot-v1" in message and "CartPole-v1" in message and "\n" not in message
    source = EnvSource("acrobot-masked", "Acrobot-v1",
                       wrappers=(("envs.wrappers:MaskVelocity", {}),))
    with pytest.raises(GymkitError, match="no velocity mask for Acrobot-v1"):
        source.make()
    # Acrobot's angular velocities are entries 4 and 5: given, they are masked.
    masked = MaskVelocity(env, indices=[4, 5])
    obs, _ = masked.reset(seed=0)
    assert np.all(obs[4:] == 0) and np.any(obs[:4] != 0)


class _PositiveBox(gym.Env[np.ndarray, np.int64]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(1.0, 2.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)


def test_mask_velocity_refuses_a_mask_outside_the_space() -> None:
    with pytest.raises(GymkitError, match="0 lies outside"):
        MaskVelocity(_PositiveBox(), indices=[1])
    with pytest.raises(GymkitError, match="out of range"):
        MaskVelocity(_PositiveBox(), indices=[2])
    with pytest.raises(GymkitError, match="made without an id"):
        MaskVelocity(_PositiveBox())


# -- time limits -------------------------------------------------------------------------------

def test_minatar_games_are_not_cut_at_gymkits_default_limit() -> None:
    skip_unless_installed("minatar-freeway")
    env = resolve_env("minatar-freeway")[0].make()
    assert time_limits(env) == [10_000] != [DEFAULT_MAX_EPISODE_STEPS]
    env.reset(seed=0)
    env.action_space.seed(0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
    # Freeway ends by itself when its 2,500-frame timer runs out (on the 2,501st step): the
    # game's end, not a cut.
    assert (steps, terminated, truncated) == (2501, True, False)
    assert info["episode"]["l"] == 2501
    env.close()


def test_minatar_is_reproducible_from_the_reset_seed() -> None:
    skip_unless_installed("minatar-breakout")
    source = resolve_env("minatar-breakout")[0]
    runs = []
    for _ in range(2):
        env = source.make()
        obs, _ = env.reset(seed=11)
        frames = [obs]
        for step in range(300):
            obs, _, terminated, truncated, _ = env.step(step % 3)
            frames.append(obs)
            if terminated or truncated:
                obs, _ = env.reset()
        runs.append(np.stack(frames))
        env.close()
    assert runs[0].shape == (301, 4, 10, 10)
    assert np.array_equal(runs[0], runs[1])


@pytest.fixture
def limitless_env() -> Iterator[str]:
    env_id = "GymkitTest/NoTimeLimit-v0"
    gym.register(env_id, entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    try:
        yield env_id
    finally:
        del gym.registry[env_id]


def test_time_limit_comes_from_the_preset_then_gymnasium_then_gymkit(limitless_env: str) -> None:
    assert time_limit("CartPole-v1", {}) == (500, "gymnasium")
    assert time_limit("CartPole-v1", {"max_episode_steps": 50}) == (50, "preset")
    assert time_limit(limitless_env, {}) == (DEFAULT_MAX_EPISODE_STEPS, "gymkit default")
    assert time_limit("NoSuchNamespace/Game-v0", {}) == (None, "unknown")
    assert time_limits(EnvSource("x", limitless_env).make()) == [DEFAULT_MAX_EPISODE_STEPS]


def env_rows(output: str, names: set[str]) -> dict[str, str]:
    """`gymkit list`'s environment table: name -> the text of its row, all lines."""
    table = output.split("environments")[1]
    rows: dict[str, str] = {}
    name = None
    for line in table.splitlines():
        first = line.split(maxsplit=1)[0] if line.strip() else ""
        if line and not line[0].isspace() and first in names:
            name = first
        if name is not None:
            rows[name] = rows.get(name, "") + line + "\n"
    return rows


def invoke_list() -> Result:
    return CliRunner().invoke(app, ["list", "envs"], env={"COLUMNS": "200"})


def test_list_shows_the_time_limit_of_each_env(limitless_env: str) -> None:
    presets = [EnvPreset("test-limitless", limitless_env, description="no limit"),
               EnvPreset("test-set-up", "GymkitTestSetup/Game-v0", setup=("no_such_module",),
                         description="registered by its setup")]
    for preset in presets:
        ENVS.add(preset.name, preset, description=preset.description)
    names = set(ENVS.names())
    try:
        result = invoke_list()
    finally:
        for preset in presets:
            ENVS.remove(preset.name)
    assert result.exit_code == 0, result.output
    rows = env_rows(result.stdout, names)
    expected = {"cartpole": "max 500 steps", "cartpole-masked": "max 500 steps",
                "cliffwalking": "max 200 steps", "lunarlander": "max 1,000 steps",
                "pendulum": "max 200 steps", "minatar-breakout": "max 10,000 steps",
                "pong": "max 108,000 steps", "test-limitless": "max 1,000 steps*",
                "test-set-up": "max ? steps"}
    for name, text in expected.items():
        found = re.findall(r"max \S+ steps\*?", rows[name])
        assert found == [text], (name, rows[name])
    assert "max_episode_steps=" not in result.stdout  # on the time limit's line, not twice
    assert "* gymkit's time limit for an env registered without one" in result.stdout
    assert "? the env is registered by the preset's setup" in result.stdout


def test_list_has_no_footnotes_when_every_limit_is_known() -> None:
    result = invoke_list()
    assert result.exit_code == 0, result.output
    assert "gymkit's time limit for" not in result.stdout
    assert "registered by the preset's setup" not in result.stdout


# -- optional dependencies ---------------------------------------------------------------------

def hide_module(monkeypatch: pytest.MonkeyPatch, module: str, *importers: str) -> None:
    """Make `import module` fail, and forget `importers` so that they import it afresh."""
    for name in list(sys.modules):
        if name.startswith(f"{module}.") or name.startswith(importers):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)


def test_lunarlander_without_box2d_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    hide_module(monkeypatch, "Box2D", "gymnasium.envs.box2d")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "agent", "lunarlander", "--runs-dir", str(runs)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in ("LunarLander-v3", "'Box2D'", 'pip install "gymkit[box2d]"',
                     "pip install box2d"):
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not runs.exists() or not any(runs.iterdir())


def test_pong_without_opencv_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    skip_unless_installed("pong")
    hide_module(monkeypatch, "cv2")
    with pytest.raises(GymkitError, match=r"'cv2'.*pip install \"gymkit\[atari\]\""):
        resolve_env("pong")[0].make()


def test_minatar_without_minatar_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "minatar")
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    monkeypatch.setattr(environments, "_SETUP_DONE", set())
    with pytest.raises(GymkitError, match=r"'minatar'.*pip install \"gymkit\[minatar\]\""):
        resolve_env("minatar-breakout")[0].make()
