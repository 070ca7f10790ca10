"""Environments by short name or gymnasium id, and how to build them.

Short names (``frozenlake``, ``taxi``, ...) are `EnvPreset`s registered by the
``envs`` package from its YAML files; any gymnasium id works as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from toolkit.errors import GymkitError, RegistryError, did_you_mean
from toolkit.registry import Registry

#: How an episode counts as a success in evaluation.
SUCCESS_RULES = ("terminal_reward", "terminated", "truncated")
#: Time limit for envs registered without one (pass max_episode_steps in kwargs to change it).
DEFAULT_MAX_EPISODE_STEPS = 1000


@dataclass(frozen=True)
class EnvPreset:
    """A short name: gymnasium id, kwargs, default agent and its hyperparameters."""

    name: str
    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    algo: str = ""
    #: Per agent name: config keys (hyperparameters and run settings) for this env.
    hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    success: str | None = None
    #: Glyph per discrete action, to draw a greedy policy on a grid map.
    action_glyphs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.success is not None and self.success not in SUCCESS_RULES:
            raise ValueError(f"env preset {self.name}: success must be one of {SUCCESS_RULES}")


ENVS: Registry[EnvPreset] = Registry("env")


@dataclass(frozen=True)
class EnvSource:
    """What an agent gets instead of an env: enough to build as many envs as it needs."""

    name: str
    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    success: str | None = None
    action_glyphs: tuple[str, ...] = ()

    def make(self, render_mode: str | None = None, *, record_stats: bool = True) -> gym.Env:
        """A new env; with `record_stats`, episode returns arrive in ``info["episode"]``."""
        kwargs = dict(self.kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        try:
            env = gym.make(self.id, **kwargs)
        except gym.error.DependencyNotInstalled as exc:
            raise GymkitError(
                f"environment {self.id} needs an optional dependency that is not installed: "
                f"{_first_line(exc)}"
            ) from exc
        except ImportError as exc:  # ModuleNotFoundError too: the env's module imports it
            raise GymkitError(_import_error_message(self.id, exc)) from exc
        except TypeError as exc:
            raise GymkitError(f"cannot make {self.id} with {kwargs}: {exc}") from exc
        if env.spec is None or env.spec.max_episode_steps is None:
            # An env without a time limit can loop forever under a poor greedy policy.
            env = gym.wrappers.TimeLimit(env, DEFAULT_MAX_EPISODE_STEPS)
        if record_stats:
            env = gym.wrappers.RecordEpisodeStatistics(env)
        return env

    def is_success(self, terminated: bool, truncated: bool, reward: float, info: dict) -> bool:
        if "is_success" in info:
            return bool(info["is_success"])
        if self.success == "terminal_reward":
            return terminated and reward > 0
        if self.success == "terminated":
            return terminated
        if self.success == "truncated":
            return truncated and not terminated
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "kwargs": dict(self.kwargs),
                "success": self.success, "action_glyphs": list(self.action_glyphs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSource:
        return cls(data["name"], data["id"], dict(data.get("kwargs", {})),
                   data.get("success"), tuple(data.get("action_glyphs", ())))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _import_error_message(env_id: str, exc: ImportError) -> str:
    """Which module is missing and how to install it, in one line."""
    module = (exc.name or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and module:
        return (f"environment {env_id} needs the Python module '{module}', which is not "
                f"installed; install it with `pip install {module}` or pick another env")
    return (f"environment {env_id} failed to import: {_first_line(exc)}; reinstall or upgrade "
            f"{f'the package {module}' if module else 'the package it names'}")


def resolve_env(name: str) -> tuple[EnvSource, EnvPreset | None]:
    """A short name or a gymnasium id -> (source, preset or None)."""
    if name in ENVS:
        preset = ENVS.get(name)
        return EnvSource(name, preset.id, dict(preset.kwargs), preset.success,
                         preset.action_glyphs), preset
    if name in gym.registry:
        return EnvSource(name, name), None
    try:  # an outdated version of a known env: gymnasium's own message names the new one
        gym.spec(name)
    except gym.error.Error as exc:
        if not isinstance(exc, (gym.error.NameNotFound, gym.error.NamespaceNotFound)):
            raise RegistryError(f"environment '{name}': {exc}") from exc
    choices = [*ENVS.names(), *gym.registry.keys()]
    raise RegistryError(
        f"unknown environment '{name}'{did_you_mean(name, choices)}; "
        "see `gymkit list` for short names, or pass any gymnasium id"
    )
