"""Environments by short name or gymnasium id, and how to build them.

Short names (``frozenlake``, ``taxi``, ...) are `EnvPreset`s registered by the
``envs`` package from its YAML files; any gymnasium id works as well.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

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
    #: Wrappers applied in order, as (name, kwargs); see `EnvSource.wrappers`.
    wrappers: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: Modules to import (``"ale_py"``) or functions to call (``"minatar.gym:register_envs"``)
    #: before the env is made: they register third-party envs with gymnasium.
    setup: tuple[str, ...] = ()
    #: Transpose HWC image observations to CHW, as torch's convolutions expect.
    channel_first: bool = False
    #: Named hyperparameter sets (``--preset NAME``): name -> {"algo": ..., config keys}.
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.success is not None and self.success not in SUCCESS_RULES:
            raise ValueError(f"env preset {self.name}: success must be one of {SUCCESS_RULES}")

    def source(self) -> EnvSource:
        return EnvSource(self.name, self.id, dict(self.kwargs), self.success, self.action_glyphs,
                         self.wrappers, self.setup, self.channel_first)

    def time_limit(self) -> tuple[int | None, str]:
        """See `time_limit`."""
        return time_limit(self.id, self.kwargs)


ENVS: Registry[EnvPreset] = Registry("env")


@dataclass(frozen=True)
class EnvSource:
    """What an agent gets instead of an env: enough to build as many envs as it needs."""

    name: str
    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    success: str | None = None
    action_glyphs: tuple[str, ...] = ()
    #: Wrappers applied in order over the env and its episode statistics, as (name, kwargs):
    #: a class of ``gymnasium.wrappers`` (``"FrameStackObservation"``) or ``"module:Class"``.
    wrappers: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: Modules to import or ``"module:function"``s to call before making the env.
    setup: tuple[str, ...] = ()
    #: Transpose HWC image observations to CHW.
    channel_first: bool = False

    def make(self, render_mode: str | None = None, *, record_stats: bool = True) -> gym.Env:
        """A new env; with `record_stats`, episode returns arrive in ``info["episode"]``.

        The statistics are recorded under the preset's wrappers, so that a wrapper that
        reshapes rewards or cuts episodes does not change the score that is reported."""
        run_setup(self.setup, self.id)
        kwargs = dict(self.kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        try:
            env = gym.make(self.id, **kwargs)
        except gym.error.DependencyNotInstalled as exc:
            raise GymkitError(_dependency_message(self.id, exc)) from exc
        except ImportError as exc:  # ModuleNotFoundError too: the env's module imports it
            raise GymkitError(_import_error_message(self.id, exc)) from exc
        except TypeError as exc:
            raise GymkitError(f"cannot make {self.id} with {kwargs}: {exc}") from exc
        if env.spec is None or env.spec.max_episode_steps is None:
            # An env without a time limit can loop forever under a poor greedy policy.
            env = gym.wrappers.TimeLimit(env, DEFAULT_MAX_EPISODE_STEPS)
        if record_stats:
            env = gym.wrappers.RecordEpisodeStatistics(env)
        for name, wrapper_kwargs in self.wrappers:
            try:
                env = _wrapper_class(name, self.id)(env, **wrapper_kwargs)
            except gym.error.DependencyNotInstalled as exc:  # AtariPreprocessing needs cv2
                env.close()
                raise GymkitError(_dependency_message(self.id, exc)) from exc
            except GymkitError:
                env.close()
                raise
        if self.channel_first:
            env = to_channel_first(env)
        return env

    def make_vector(self, n_envs: int, *, asynchronous: bool = False,
                    autoreset_mode: AutoresetMode = AutoresetMode.SAME_STEP) -> VectorEnv:
        """`n_envs` copies of the env side by side; seed them with ``reset(seed=s)`` (env i
        gets ``s + i``) and ``action_space.seed(s)``.

        The default autoreset mode is SAME_STEP: a step that ends an episode returns the
        next episode's first observation, and the final observation of the one that ended
        in ``infos["final_obs"]``, so no step of the env is a reset step to skip. Async envs
        run in subprocesses (for slow envs); they are not reproducible step for step."""
        if n_envs < 1:
            raise GymkitError(f"n_envs must be at least 1, got {n_envs}")
        factories: list[Callable[[], gym.Env]] = [self.make] * n_envs
        if asynchronous:
            return AsyncVectorEnv(factories, autoreset_mode=autoreset_mode)
        return SyncVectorEnv(factories, autoreset_mode=autoreset_mode)

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
                "success": self.success, "action_glyphs": list(self.action_glyphs),
                "wrappers": [[name, dict(kw)] for name, kw in self.wrappers],
                "setup": list(self.setup), "channel_first": self.channel_first}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSource:
        return cls(data["name"], data["id"], dict(data.get("kwargs", {})),
                   data.get("success"), tuple(data.get("action_glyphs", ())),
                   parse_wrappers(data.get("wrappers") or ()), tuple(data.get("setup", ())),
                   bool(data.get("channel_first", False)))


def parse_wrappers(items: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Wrappers as written in a preset (``- FrameStackObservation: {stack_size: 4}``, or a
    bare name) or in config.json (``[name, kwargs]``) -> ((name, kwargs), ...)."""
    parsed: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            parsed.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, kwargs = next(iter(item.items()))
            parsed.append((str(name), dict(kwargs or {})))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            parsed.append((str(item[0]), dict(item[1] or {})))
        else:
            raise GymkitError(f"cannot read the wrapper {item!r}: write a name, or one "
                              "`Name: {kwargs}` mapping per list item")
    return tuple(parsed)


_SETUP_DONE: set[str] = set()


def run_setup(entries: tuple[str, ...], env_id: str) -> None:
    """Import each module, or call each ``module:function``, once per process."""
    for entry in entries:
        if entry in _SETUP_DONE:
            continue
        module_name, _, function = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise GymkitError(_import_error_message(env_id, exc)) from exc
        if function:
            getattr(module, function)()
        _SETUP_DONE.add(entry)


def _wrapper_class(name: str, env_id: str) -> Callable[..., gym.Env]:
    module_name, _, class_name = name.rpartition(":")
    try:
        module = importlib.import_module(module_name) if module_name else gym.wrappers
    except ImportError as exc:
        raise GymkitError(_import_error_message(env_id, exc)) from exc
    wrapper = getattr(module, class_name, None)
    if not callable(wrapper):
        where = module_name or "gymnasium.wrappers"
        raise GymkitError(f"environment {env_id}: no wrapper '{class_name}' in {where}; fix "
                          "the name in the preset's wrappers list")
    return wrapper


def to_channel_first(env: gym.Env) -> gym.Env:
    """HWC image observations as CHW (torch's layout); other envs are returned as they are."""
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 3):
        return env
    h, w, c = space.shape
    transposed = gym.spaces.Box(np.transpose(space.low, (2, 0, 1)),
                                np.transpose(space.high, (2, 0, 1)), (c, h, w), space.dtype)
    return gym.wrappers.TransformObservation(
        env, lambda obs: np.ascontiguousarray(np.transpose(obs, (2, 0, 1))), transposed)


def time_limit(env_id: str, kwargs: dict[str, Any]) -> tuple[int | None, str]:
    """The time limit (max_episode_steps) that `EnvSource.make` will apply, and where it comes
    from: ``"preset"`` (kwargs), ``"gymnasium"`` (the registered spec) or ``"gymkit default"``;
    or (None, ``"unknown"``) for an id not registered yet (its preset's setup registers it).

    Reads the preset and gymnasium's registry only: it makes no env and runs no setup, so
    that `gymkit list` stays fast."""
    if kwargs.get("max_episode_steps") is not None:
        return int(kwargs["max_episode_steps"]), "preset"
    spec = gym.registry.get(env_id)
    if spec is None:
        return None, "unknown"
    if spec.max_episode_steps is not None:
        return spec.max_episode_steps, "gymnasium"
    return DEFAULT_MAX_EPISODE_STEPS, "gymkit default"


#: Optional dependencies by the module that is missing: (gymkit's extra, the pip package).
OPTIONAL_DEPENDENCIES = {
    "Box2D": ("box2d", "box2d"),
    "ale_py": ("atari", "ale-py"),
    "cv2": ("atari", "opencv-python-headless"),
    "minatar": ("minatar", "minatar"),
}


def _install_hint(module: str) -> str:
    extra, package = OPTIONAL_DEPENDENCIES.get(module, (None, module))
    if extra is None:
        return f"`pip install {package}`"
    return f'`pip install "gymkit[{extra}]"` (or `pip install {package}`)'


def _dependency_message(env_id: str, exc: gym.error.DependencyNotInstalled) -> str:
    """gymnasium's DependencyNotInstalled as one line naming the pip command."""
    cause = exc.__cause__ or exc.__context__
    module = (cause.name or "").split(".")[0] if isinstance(cause, ImportError) else ""
    if module in OPTIONAL_DEPENDENCIES:
        return (f"environment {env_id} needs the Python module '{module}', which is not "
                f"installed; install it with {_install_hint(module)} or pick another env")
    return (f"environment {env_id} needs an optional dependency that is not installed: "
            f"{_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _import_error_message(env_id: str, exc: ImportError) -> str:
    """Which module is missing and how to install it, in one line."""
    module = (exc.name or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and module:
        return (f"environment {env_id} needs the Python module '{module}', which is not "
                f"installed; install it with {_install_hint(module)} or pick another env")
    return (f"environment {env_id} failed to import: {_first_line(exc)}; reinstall or upgrade "
            f"{f'the package {module}' if module else 'the package it names'}")


def resolve_env(name: str) -> tuple[EnvSource, EnvPreset | None]:
    """A short name or a gymnasium id -> (source, preset or None)."""
    if name in ENVS:
        preset = ENVS.get(name)
        return preset.source(), preset
    if name in gym.registry:
        return EnvSource(name, name), None
    module_name, colon, env_name = name.partition(":")
    if colon and module_name and env_name:
        # gymnasium's ``module:Env-v0``: importing the module registers the env. The user's
        # own command names it; rebuilding the run later needs their trust (toolkit.trust).
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            raise GymkitError(_import_error_message(name, exc)) from exc
        if env_name in gym.registry:
            return EnvSource(name, name), None
        raise RegistryError(f"importing {module_name} registered no environment '{env_name}'"
                            f"{did_you_mean(env_name, gym.registry.keys())}; check the id")
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
