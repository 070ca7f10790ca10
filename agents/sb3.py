"""Stable-Baselines3's DQN, A2C and PPO as gymkit agents: ``--algo sb3-ppo`` and so on.

gymkit owns the loop, the budget, evaluation, checkpoints and logs; SB3 does the learning.
A train_step is one ``model.learn(...)`` of whole rollouts (on-policy) or whole
``train_freq`` windows (DQN), so a budget must be a multiple of that many steps. Two SB3
habits are undone here:

- ``learn()`` measures schedule progress (learning rate, clipping range, exploration)
  against the total of the current call, so a schedule would restart at every
  train_step; here progress is measured against the whole budget.
- SB3 saves with pickles; here the checkpoint holds the parameters SB3 exposes through
  ``get_parameters()`` (policy and optimizer state dicts, tensors only), the counters,
  and DQN's replay buffer as ``.npy`` side files.

Resuming restores all of that and starts fresh episodes (``exact_resume = False``).
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from toolkit.atomic import atomic_write
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import (
    CheckpointError,
    ConfigError,
    GymkitError,
    IncompatibleEnvError,
    did_you_mean,
)
from toolkit.policy import FunctionPolicy, Policy
from toolkit.trainer import Agent, TrainerContext

try:
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import DummyVecEnv
except ImportError as exc:  # pragma: no cover - sb3 is in the dev extra
    raise GymkitError("the sb3-* agents need Stable-Baselines3; install it with "
                      "pip install 'gymkit[sb3]'") from exc

#: Replay buffer arrays of SB3's DQN, written as side files.
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class _Episodes(BaseCallback):
    """Collects the episodes that end during one learn() call, from gymnasium's
    RecordEpisodeStatistics (SB3's own buffer keeps only the last 100)."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.lengths: list[int] = []

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                self.lengths.append(int(info["episode"]["l"]))
        return True


#: SB3 keywords gymkit sets itself, or that name objects a config file cannot hold.
GYMKIT_SETS = {"policy": "gymkit picks MlpPolicy or CnnPolicy", "env": "gymkit builds it",
               "seed": "use --seed", "device": "use --device",
               "policy_kwargs": "use net_arch", "verbose": "gymkit shows progress",
               "tensorboard_log": "gymkit logs to TensorBoard itself",
               "_init_setup_model": "gymkit needs the model"}


@dataclass
class SB3Config(TrainerConfig):
    #: The SB3 class whose keyword arguments `hyperparams` holds (each agent's own subclass).
    algorithm: ClassVar[str] = ""
    n_envs: int = param(1, "environments stepped side by side")
    hyperparams: dict[str, Any] = param({}, "keyword arguments of the SB3 algorithm, e.g. "
                                            "{learning_rate: 0.0003, n_steps: 128}; "
                                            "lin_<x> falls linearly from x to 0 over the "
                                            "budget, as in rl-zoo")
    net_arch: list[int] = param([64, 64], "hidden layer sizes of SB3's policy")
    steps_per_call: int = param(2048, "env steps per train_step, rounded up to whole rollouts")

    def validate(self) -> None:
        check_range(self, "n_envs", 1)
        check_range(self, "steps_per_call", 1)
        for key, value in self.hyperparams.items():
            if self.algorithm:
                check_keyword(self.algorithm, key, value)
            schedule(value)


def check_keyword(algorithm: str, key: Any, value: Any) -> None:
    """Raise ConfigError unless `key` is a keyword argument of SB3's `algorithm` that a
    config may set, and `value` fits its annotation: checked before anything is built."""
    where = f"stable_baselines3.{algorithm}"
    if key in GYMKIT_SETS:
        raise ConfigError(f"hyperparams must not set '{key}': {GYMKIT_SETS[key]}")
    parameters = inspect.signature(getattr(sb3, algorithm)).parameters
    if key not in parameters:
        known = [k for k in parameters if k not in GYMKIT_SETS]
        raise ConfigError(f"hyperparams: {where} takes no argument '{key}'"
                          f"{did_you_mean(str(key), known)}; it takes {', '.join(known)}")
    annotation = parameters[key].annotation
    if not _fits(value, annotation):
        raise ConfigError(f"hyperparams.{key} must be {_describe(annotation)} for {where}, "
                          f"got {value!r}")


def _options(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _is_schedule(annotation: Any) -> bool:
    return typing.get_origin(annotation) is collections.abc.Callable


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a value from a config (YAML: numbers, strings, lists, mappings, null) fits
    one of the annotation's types; a type gymkit cannot check passes."""
    for option in _options(annotation):
        origin = typing.get_origin(option)
        if option is type(None) and value is None:
            return True
        if _is_schedule(option) and isinstance(value, str) and value.startswith("lin_"):
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
        if origin is tuple and isinstance(value, (list, tuple)):
            items = typing.get_args(option)
            return len(value) == len(items) and all(_fits(v, t) for v, t in
                                                    zip(value, items, strict=True))
        if (option is dict or origin is dict) and isinstance(value, dict):
            return True
        if isinstance(option, (str, typing.ForwardRef)):
            return True  # an annotation SB3 left unresolved: let SB3 judge
    return False


def _describe(annotation: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a mapping", type(None): "null"}
    words = []
    for option in _options(annotation):
        if option in names:
            words.append(names[option])
        elif _is_schedule(option):
            words.append("lin_<x> (a linear schedule)")
        elif typing.get_origin(option) is tuple:
            words.append("a list like [4, step]")
        elif typing.get_origin(option) is dict:
            words.append("a mapping")
    return " or ".join(words) or "an object, which a config cannot give"


def schedule(value: Any) -> Any:
    """rl-baselines3-zoo's ``"lin_<x>"``: a value falling linearly from x to 0 over the run,
    as SB3 takes it (a function of the progress remaining); other values unchanged."""
    if not (isinstance(value, str) and value.startswith("lin_")):
        return value
    try:
        initial = float(value.removeprefix("lin_"))
    except ValueError:
        raise ConfigError(f"cannot read the schedule {value!r}: write lin_<number>, e.g. "
                          "lin_0.001") from None
    return lambda progress_remaining: progress_remaining * initial


class SB3Agent(Agent):
    """Base of the SB3 agents; `algorithm` names the SB3 class."""

    Config = SB3Config
    cfg: SB3Config
    source: EnvSource
    budget_units = ("steps",)
    exact_resume = False
    algorithm: ClassVar[str] = ""

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if cls.algorithm == "DQN" and not isinstance(action_space, gym.spaces.Discrete):
            return "needs a Discrete action space (one Q-value per action)"
        return None

    @classmethod
    def window(cls, cfg: SB3Config) -> int:
        """Env steps SB3 takes between two updates, all envs together."""
        key = "train_freq" if cls.algorithm == "DQN" else "n_steps"
        default = inspect.signature(getattr(sb3, cls.algorithm)).parameters[key].default
        value = cfg.hyperparams.get(key, default)
        if isinstance(value, (list, tuple)):  # SB3's (frequency, unit)
            if value[1] != "step":
                raise ConfigError(f"hyperparams.{key} {list(value)} counts {value[1]}s; gymkit's "
                                  f"budget counts steps, so write [{value[0]}, step]")
            value = value[0]
        return int(value) * cfg.n_envs

    @classmethod
    def budget_multiple(cls, cfg: SB3Config) -> int:
        return cls.window(cfg)

    def __init__(self, cfg: SB3Config, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        envs = DummyVecEnv([source.make] * cfg.n_envs)
        problem = self.incompatibility(envs.observation_space, envs.action_space)
        if problem is not None:
            envs.close()
            raise IncompatibleEnvError(f"sb3-{self.algorithm.lower()} {problem}, but "
                                       f"{source.id} has actions {envs.action_space}")
        image = isinstance(envs.observation_space, gym.spaces.Box) and len(
            envs.observation_space.shape) == 3
        algorithm = getattr(sb3, self.algorithm)
        self.model = algorithm("CnnPolicy" if image else "MlpPolicy", envs, seed=ctx.seed,
                               device=ctx.device, verbose=0,
                               policy_kwargs={"net_arch": list(cfg.net_arch)},
                               **{key: schedule(value) for key, value in cfg.hyperparams.items()})
        # gymkit logs what SB3's logger records (name_to_value); SB3's default logger would
        # also create a folder in the temp directory on every learn() call.
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        budget = ctx.budget.amount
        # Schedules run over the whole budget, not over one learn() call.
        self.model._update_current_progress_remaining = (
            lambda num_timesteps, total_timesteps: setattr(
                self.model, "_current_progress_remaining", 1.0 - num_timesteps / budget))
        self.episodes = 0
        self._buffer_state: dict[str, Any] = {}

    # -- acting and learning -----------------------------------------------------------

    def policy(self, deterministic: bool = True) -> Policy:
        model = self.model
        return FunctionPolicy(lambda obs: model.predict(obs, deterministic=deterministic)[0])

    def train_step(self) -> dict[str, float]:
        window = self.window(self.cfg)
        calls = max(1, -(-self.cfg.steps_per_call // window))
        chunk = min(calls * window, self.budget_left())
        episodes = _Episodes()
        self.model.learn(total_timesteps=chunk, callback=episodes, reset_num_timesteps=False)
        self.episodes += len(episodes.returns)
        metrics: dict[str, float] = {}
        if episodes.returns:
            metrics["charts/episodic_return"] = float(np.mean(episodes.returns))
            metrics["charts/episodic_length"] = float(np.mean(episodes.lengths))
        for key, value in self.model.logger.name_to_value.items():
            group, _, name = key.partition("/")
            if group == "train" and np.isfinite(value):
                metrics[f"losses/{name}"] = float(value)
        if self.algorithm == "DQN":
            metrics["charts/epsilon"] = float(self.model.exploration_rate)
        return metrics

    def progress(self) -> dict[str, int]:
        return {"steps": int(self.model.num_timesteps), "episodes": self.episodes}

    # -- checkpoints ----------------------------------------------------------------

    def policy_state_dict(self) -> dict[str, Any]:
        return {"policy": self.model.get_parameters()["policy"]}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        policy = state["parameters"]["policy"] if "parameters" in state else state["policy"]
        self.model.set_parameters({"policy": policy}, exact_match=False,
                                  device=self.model.device)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "parameters": self.model.get_parameters(),
            "steps": int(self.model.num_timesteps),
            "updates": int(self.model._n_updates),
            "episode_num": int(self.model._episode_num),
            "episodes": self.episodes,
        }
        if self.algorithm == "DQN":
            buffer = self.model.replay_buffer
            state["buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full)}
            state["exploration_rate"] = float(self.model.exploration_rate)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.set_parameters(state["parameters"], exact_match=True,
                                  device=self.model.device)
        self.model.num_timesteps = int(state["steps"])
        self.model._n_updates = int(state["updates"])
        self.model._episode_num = int(state["episode_num"])
        self.episodes = int(state["episodes"])
        if self.algorithm == "DQN":
            self._buffer_state = dict(state["buffer"])
            self.model.exploration_rate = float(state["exploration_rate"])

    def save_extra(self, directory: Path) -> None:
        if self.algorithm != "DQN":
            return
        buffer = self.model.replay_buffer
        for name in BUFFER_FIELDS:
            with atomic_write(directory / f"{name}.npy", "wb") as f:
                np.save(f, getattr(buffer, name), allow_pickle=False)

    def load_extra(self, directory: Path) -> None:
        if self.algorithm != "DQN":
            return
        buffer = self.model.replay_buffer
        for name in BUFFER_FIELDS:
            path = directory / f"{name}.npy"
            if not path.is_file():
                raise CheckpointError(f"{path} is missing; the replay buffer cannot be restored")
            getattr(buffer, name)[...] = np.load(path, mmap_mode="r")
        buffer.pos = int(self._buffer_state["pos"])
        buffer.full = bool(self._buffer_state["full"])

    def close(self) -> None:
        if self.model.env is not None:
            self.model.env.close()


@dataclass
class SB3DQNConfig(SB3Config):
    algorithm: ClassVar[str] = "DQN"


@dataclass
class SB3A2CConfig(SB3Config):
    algorithm: ClassVar[str] = "A2C"


@dataclass
class SB3PPOConfig(SB3Config):
    algorithm: ClassVar[str] = "PPO"


class SB3DQN(SB3Agent):
    """Stable-Baselines3's DQN, run by gymkit."""

    Config = SB3DQNConfig
    algorithm = "DQN"


class SB3A2C(SB3Agent):
    """Stable-Baselines3's A2C, run by gymkit."""

    Config = SB3A2CConfig
    algorithm = "A2C"


class SB3PPO(SB3Agent):
    """Stable-Baselines3's PPO, run by gymkit."""

    Config = SB3PPOConfig
    algorithm = "PPO"

