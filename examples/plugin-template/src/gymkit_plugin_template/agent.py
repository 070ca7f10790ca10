"""Tabular SARSA: on-policy TD control with an epsilon-greedy policy.

After a step (s, a, r, s') the policy picks a' in s', and

    Q(s, a) += alpha * (r + gamma * Q(s', a') - Q(s, a))

with no bootstrap when s' is terminal (a time-limit truncation still
bootstraps). Epsilon falls linearly over the first `exploration_fraction` of
the training budget, computed from the progress counters, so the schedule
continues unbroken across a resume.

A train_step plays whole episodes, each starting with its own reset. No
episode is in flight at a checkpoint, and a trainer resumed with a fresh env
replays the next reset exactly from the env RNG state it saved.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError, GymkitError, IncompatibleEnvError
from toolkit.policy import FunctionPolicy, Policy
from toolkit.registry import AGENTS
from toolkit.seeding import (
    numpy_rng_state,
    python_rng_state,
    set_numpy_rng_state,
    set_python_rng_state,
)
from toolkit.trainer import Agent, TrainerContext

NAME = "template-sarsa"


@dataclass
class SarsaConfig(TrainerConfig):
    alpha: float = param(0.1, "learning rate (step size)")
    gamma: float = param(0.95, "discount factor")
    epsilon_start: float = param(1.0, "exploration rate at the start of training")
    epsilon_end: float = param(0.05, "exploration rate once exploration_fraction of the "
                                     "budget is spent")
    exploration_fraction: float = param(0.5, "fraction of the budget over which epsilon falls")
    initial_q: float = param(0.0, "initial value of every Q(s, a)")
    steps_per_call: int = param(500, "environment steps per train_step, rounded up to the end "
                                     "of an episode unless the budget ends first")

    def validate(self) -> None:
        check_range(self, "alpha", 0, 1, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "epsilon_start", 0, 1)
        check_range(self, "epsilon_end", 0, 1)
        check_range(self, "exploration_fraction", 0, 1, low_open=True)
        check_range(self, "steps_per_call", 1)
        if self.epsilon_end > self.epsilon_start:
            raise ConfigError(f"epsilon_end ({self.epsilon_end}) must not exceed "
                              f"epsilon_start ({self.epsilon_start})")


@AGENTS.register(NAME)
class SarsaAgent(Agent):
    """Tabular SARSA with a linearly annealed epsilon-greedy policy."""

    Config = SarsaConfig
    cfg: SarsaConfig
    source: EnvSource
    uses_torch = False  # a table of Python floats: gymkit never imports torch for it

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if isinstance(observation_space, gym.spaces.Discrete) and isinstance(
                action_space, gym.spaces.Discrete):
            return None
        return "needs Discrete observation and action spaces (a table row per state)"

    def __init__(self, cfg: SarsaConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.env = source.make()  # RecordEpisodeStatistics: info["episode"] at episode ends
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not (isinstance(obs_space, gym.spaces.Discrete)
                and isinstance(act_space, gym.spaces.Discrete)):
            self.env.close()
            raise IncompatibleEnvError(
                f"{NAME} {self.incompatibility(obs_space, act_space)}, but {source.id} has "
                f"observations {obs_space} and actions {act_space}; pick another agent with "
                "--algo (see `gymkit list`)")
        self.n_states, self.n_actions = int(obs_space.n), int(act_space.n)
        self.q = [[cfg.initial_q] * self.n_actions for _ in range(self.n_states)]
        self.rng = random.Random(ctx.seed)  # the policy's own RNG, saved in state_dict
        self.steps = self.episodes = 0

    def epsilon(self) -> float:
        cfg = self.cfg
        t = min(1.0, self.budget_fraction() / cfg.exploration_fraction)
        return cfg.epsilon_start + t * (cfg.epsilon_end - cfg.epsilon_start)

    def policy(self, deterministic: bool = True) -> Policy:
        """Greedy on a snapshot of the table; gymkit evaluates the agent with it. (This
        agent gives the greedy policy in both cases: an exploring one would draw from the
        RNG that `reset(n_envs, seed)` hands it.)"""
        q = np.array(self.q)
        return FunctionPolicy(lambda obs: q[obs].argmax(axis=1))

    def _act(self, observation: int, epsilon: float) -> int:
        """Epsilon-greedy, breaking ties at random: while Q is flat, it explores."""
        if self.rng.random() < epsilon:
            return self.rng.randrange(self.n_actions)
        row = self.q[int(observation)]
        best = max(row)
        return self.rng.choice([a for a, value in enumerate(row) if value == best])

    def train_step(self) -> dict[str, float]:
        cfg, q = self.cfg, self.q
        unit, left = self.ctx.budget.unit, self.budget_left()
        end_steps = self.steps + left if unit == "steps" else math.inf
        end_episodes = self.episodes + left if unit == "episodes" else math.inf
        call_end = self.steps + cfg.steps_per_call
        returns: list[float] = []
        lengths: list[int] = []
        td_sum, start = 0.0, self.steps
        while self.steps < min(call_end, end_steps) and self.episodes < end_episodes:
            # Reset here, at the start of an episode, never at the end of a train_step.
            obs, _ = self.env.reset(seed=self.seed if self.episodes == 0 else None)
            epsilon = self.epsilon()
            action = self._act(obs, epsilon)
            while self.steps < end_steps:
                next_obs, reward, terminated, truncated, info = self.env.step(action)
                self.steps += 1
                target = float(reward)
                if not terminated:
                    next_action = self._act(next_obs, epsilon)
                    target += cfg.gamma * q[next_obs][next_action]
                td = target - q[obs][action]
                q[obs][action] += cfg.alpha * td
                td_sum += abs(td)
                if terminated or truncated:
                    self.episodes += 1
                    returns.append(float(info["episode"]["r"]))
                    lengths.append(int(info["episode"]["l"]))
                    break
                obs, action = next_obs, next_action
        metrics = {"charts/epsilon": self.epsilon(),
                   "losses/td_error": td_sum / max(1, self.steps - start)}
        if returns:
            metrics["charts/episodic_return"] = sum(returns) / len(returns)
            metrics["charts/episodic_length"] = sum(lengths) / len(lengths)
        return metrics

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": [list(row) for row in self.q],
            "steps": self.steps,
            "episodes": self.episodes,
            "rng": python_rng_state(self.rng),
            "env_rng": numpy_rng_state(self.env.unwrapped.np_random),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        shape = (len(state["q"]), len(state["q"][0]))
        if shape != (self.n_states, self.n_actions):
            raise GymkitError(f"the checkpoint's Q-table has shape {shape}, this env needs "
                              f"{(self.n_states, self.n_actions)}")
        self.q = [[float(v) for v in row] for row in state["q"]]
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        set_python_rng_state(state["rng"], self.rng)
        set_numpy_rng_state(self.env.unwrapped.np_random, state["env_rng"])

    def close(self) -> None:
        self.env.close()
