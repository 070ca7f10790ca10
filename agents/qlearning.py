"""Tabular Q-learning (and expected SARSA) with epsilon-greedy exploration.

For a transition (s, a, r, s'):

    Q(s, a) += alpha * (target - Q(s, a))
    target = r                                          if s' is terminal
           = r + gamma * max_a' Q(s', a')               (update = q_learning)
           = r + gamma * sum_a' pi(a'|s') Q(s', a')     (update = expected_sarsa)

where pi is the epsilon-greedy policy being followed. A time-limit truncation
is not terminal: the target still bootstraps from Q(s', .). Epsilon and alpha
either decay geometrically after every step or every episode, down to their
floors (``schedule: exponential``), or fall linearly to their floors over the
first `decay_fraction` of the training budget (``schedule: linear``, as
Stable-Baselines3's exploration schedule); the linear schedule is computed
from the progress counters, so it continues unbroken across a resume.

The table is a list of Python lists rather than a numpy array: per-element
access to Python floats is several times faster than to numpy scalars, and
this loop runs once per environment step.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from agents.tabular import (
    draw_policy,
    finite_horizon_optimum,
    grid_shape,
    has_transition_table,
)
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError, IncompatibleEnvError
from toolkit.images import heatmap
from toolkit.policy import FunctionPolicy, Policy, epsilon_greedy
from toolkit.registry import AGENTS
from toolkit.seeding import (
    numpy_rng_state,
    python_rng_state,
    set_numpy_rng_state,
    set_python_rng_state,
)
from toolkit.trainer import Agent, TrainerContext


@dataclass
class QLearningConfig(TrainerConfig):
    alpha: float = param(0.1, "learning rate (step size) at the start")
    alpha_min: float = param(0.01, "floor of the decaying learning rate")
    alpha_decay: float = param(1.0, "learning rate multiplier per decay step (1 = constant)")
    gamma: float = param(0.99, "discount factor")
    epsilon: float = param(0.3, "exploration rate at the start")
    epsilon_min: float = param(0.01, "floor of the decaying exploration rate")
    epsilon_decay: float = param(0.999, "exploration rate multiplier per decay step")
    schedule: Literal["exponential", "linear"] = param(
        "exponential", "how epsilon and alpha fall to their floors: by their decay factors, or "
        "linearly over decay_fraction of the budget")
    decay_fraction: float = param(0.5, "linear schedule: fraction of the budget after which "
                                       "epsilon and alpha are at their floors")
    decay_every: Literal["step", "episode"] = param("episode", "exponential schedule: decay "
                                                    "after every step or every episode")
    update: Literal["q_learning", "expected_sarsa"] = param(
        "q_learning", "target: max over next actions, or expectation under epsilon-greedy")
    initial_q: float = param(0.0, "initial value of every Q(s, a)")
    steps_per_call: int = param(1000, "environment steps per train_step, rounded up to "
                                      "the end of an episode unless the budget ends first")

    def validate(self) -> None:
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "alpha_min", 0, 1)
        check_range(self, "alpha_decay", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon", 0, 1)
        check_range(self, "epsilon_min", 0, 1)
        check_range(self, "epsilon_decay", 0, 1, low_open=True)
        check_range(self, "decay_fraction", 0, 1, low_open=True)
        check_range(self, "steps_per_call", 1)
        if self.alpha_min > self.alpha:
            raise ConfigError(f"alpha_min ({self.alpha_min}) must not exceed alpha ({self.alpha})")
        if self.epsilon_min > self.epsilon:
            raise ConfigError(
                f"epsilon_min ({self.epsilon_min}) must not exceed epsilon ({self.epsilon})")


class EpsilonGreedyPolicy(Policy):
    """A random action with probability epsilon, else the first greedy one."""

    def __init__(self, q: np.ndarray, epsilon: float) -> None:
        self.q, self.epsilon = q, epsilon
        self.rng = np.random.default_rng()

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        return epsilon_greedy(lambda: self.q[obs].argmax(axis=1), len(obs), self.q.shape[1],
                              self.epsilon, self.rng)


@AGENTS.register("qlearning")
class QLearning(Agent):
    """Tabular Q-learning or expected SARSA, for Discrete observations and actions."""

    Config = QLearningConfig
    cfg: QLearningConfig
    source: EnvSource
    uses_torch = False

    def __init__(self, cfg: QLearningConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.env = source.make()
        obs_space, act_space = self.env.observation_space, self.env.action_space
        problem = self.incompatibility(obs_space, act_space)
        if problem is not None:
            self.env.close()
            raise IncompatibleEnvError(
                f"qlearning {problem}, but {source.id} has observations {obs_space} and actions "
                f"{act_space}; pick another agent with --algo (see `gymkit list`)"
            )
        assert isinstance(obs_space, gym.spaces.Discrete)
        assert isinstance(act_space, gym.spaces.Discrete)
        self.n_states, self.n_actions = int(obs_space.n), int(act_space.n)
        self.q = [[cfg.initial_q] * self.n_actions for _ in range(self.n_states)]
        self.epsilon, self.alpha = cfg.epsilon, cfg.alpha
        self.steps = self.episodes = 0
        self.rng = random.Random(self.seed)
        self.obs, _ = self.env.reset(seed=self.seed)
        self.episode_done = False

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if isinstance(observation_space, gym.spaces.Discrete) and isinstance(
                action_space, gym.spaces.Discrete):
            return None
        return "needs Discrete observation and action spaces (a table row per state)"

    # -- acting ---------------------------------------------------------------------

    def policy(self, deterministic: bool = True) -> Policy:
        """Greedy on a snapshot of the table (the first best action on ties), or
        epsilon-greedy at the current epsilon."""
        q = self.q_table()
        if deterministic:
            return FunctionPolicy(lambda obs: q[obs].argmax(axis=1))
        return EpsilonGreedyPolicy(q, self.epsilon)

    def _explore(self, row: list[float]) -> int:
        """Epsilon-greedy, breaking ties between greedy actions at random."""
        rng = self.rng
        if rng.random() < self.epsilon:
            return rng.randrange(self.n_actions)
        best = max(row)
        first = row.index(best)
        if row.count(best) == 1:
            return first
        return rng.choice([a for a, v in enumerate(row) if v == best])

    # -- learning -------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg, env, q = self.cfg, self.env, self.q
        gamma, n_actions = cfg.gamma, self.n_actions
        expected = cfg.update == "expected_sarsa"
        linear = cfg.schedule == "linear"
        per_step = cfg.decay_every == "step" and not linear
        per_episode = cfg.decay_every == "episode" and not linear
        # Never past the budget: the last call may stop in mid-episode.
        budget = self.ctx.budget
        left = budget.amount - (self.steps if budget.unit == "steps" else self.episodes)
        max_steps = left if budget.unit == "steps" else math.inf
        max_episodes = left if budget.unit == "episodes" else math.inf
        returns: list[float] = []
        lengths: list[int] = []
        td_sum, steps = 0.0, 0
        obs = self.obs
        while (steps < max_steps and len(returns) < max_episodes
               and (steps < cfg.steps_per_call or not self.episode_done)):
            if self.episode_done:
                obs, _ = env.reset()
                self.episode_done = False
            row = q[obs]
            action = self._explore(row)
            next_obs, reward, terminated, truncated, info = env.step(action)
            if terminated:
                target = float(reward)
            elif expected:
                nxt = q[next_obs]
                eps = self.epsilon
                target = float(reward) + gamma * (eps * sum(nxt) / n_actions + (1 - eps) * max(nxt))
            else:
                target = float(reward) + gamma * max(q[next_obs])
            td = target - row[action]
            row[action] += self.alpha * td
            td_sum += abs(td)
            steps += 1
            if per_step:
                self._decay()
            if terminated or truncated:
                returns.append(float(info["episode"]["r"]))
                lengths.append(int(info["episode"]["l"]))
                self.episodes += 1
                self.episode_done = True
                if per_episode:
                    self._decay()
            else:
                obs = next_obs
            if linear:
                done = self.steps + steps if budget.unit == "steps" else self.episodes
                self._anneal(done / budget.amount)
        self.obs = obs
        self.steps += steps
        metrics = {
            "charts/epsilon": self.epsilon,
            "charts/learning_rate": self.alpha,
            "losses/td_error": td_sum / max(steps, 1),
        }
        if returns:
            metrics["charts/episodic_return"] = sum(returns) / len(returns)
            metrics["charts/episodic_length"] = sum(lengths) / len(lengths)
        return metrics

    def _decay(self) -> None:
        cfg = self.cfg
        self.epsilon = max(cfg.epsilon_min, self.epsilon * cfg.epsilon_decay)
        self.alpha = max(cfg.alpha_min, self.alpha * cfg.alpha_decay)

    def _anneal(self, fraction: float) -> None:
        """Linear schedule: start values at fraction 0, floors from `decay_fraction` on."""
        cfg = self.cfg
        t = min(1.0, fraction / cfg.decay_fraction)
        self.epsilon = (1 - t) * cfg.epsilon + t * cfg.epsilon_min
        self.alpha = (1 - t) * cfg.alpha + t * cfg.alpha_min

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    # -- reporting ------------------------------------------------------------------

    def q_table(self) -> np.ndarray:
        return np.array(self.q, dtype=np.float64)

    def images(self) -> dict[str, np.ndarray]:
        q = self.q_table()
        shape = grid_shape(self.env)
        if shape is not None:
            return {"images/value_function": heatmap(q.max(axis=1).reshape(shape))}
        return {"images/q_table": heatmap(q, cell=max(1, 256 // max(q.shape)))}

    def summary(self) -> dict[str, Any]:
        if not has_transition_table(self.env):
            return {}
        horizon = self.env.spec.max_episode_steps if self.env.spec else None
        horizon = horizon or 1000
        facts: dict[str, Any] = {
            "optimal_mean_return": finite_horizon_optimum(self.env, horizon),
            "optimum_horizon": horizon,
        }
        if self.source.success == "terminal_reward":
            facts["optimal_success_rate"] = finite_horizon_optimum(self.env, horizon, success=True)
        return facts

    def panels(self) -> list[tuple[str, str]]:
        drawing = draw_policy(self.env, self.q_table(), self.source.action_glyphs)
        return [("greedy policy", drawing)] if drawing else []

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": [list(row) for row in self.q],
            "epsilon": self.epsilon,
            "alpha": self.alpha,
            "steps": self.steps,
            "episodes": self.episodes,
            "obs": int(self.obs),
            "episode_done": self.episode_done,
            "rng": python_rng_state(self.rng),
            "env_rng": numpy_rng_state(self.env.unwrapped.np_random),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        q = state["q"]
        q = q.tolist() if hasattr(q, "tolist") else q  # a tensor in checkpoints before 0.2
        shape = (len(q), len(q[0]) if q else 0)
        if shape != (self.n_states, self.n_actions):
            raise ConfigError(
                f"checkpoint Q-table has shape {shape}, this env needs "
                f"{(self.n_states, self.n_actions)}"
            )
        self.q = [[float(v) for v in row] for row in q]
        self.epsilon, self.alpha = float(state["epsilon"]), float(state["alpha"])
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        self.obs = int(state["obs"])
        # Only the last train_step of a budget stops in mid-episode, and a fresh env cannot
        # be put back there: a later call starts a new episode either way.
        self.episode_done = True
        set_python_rng_state(state["rng"], self.rng)
        set_numpy_rng_state(self.env.unwrapped.np_random, state["env_rng"])

    def close(self) -> None:
        self.env.close()
