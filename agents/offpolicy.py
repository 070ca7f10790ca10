"""What off-policy agents share: DQN today, SAC and TD3 next.

- `OffPolicyConfig`: the replay and schedule settings every one of them has.
- `NStep`: each env's last n steps folded into one transition (the sum of their discounted
  rewards, the state n steps later, and gamma^n as its discount), cut short where an
  episode ends.
- `TargetNetwork`: a frozen copy of a network that follows it fully (tau = 1) or by Polyak
  averaging.
- `OffPolicyAgent`: the loop of a train_step (act on a vector env, store the transitions,
  a round of gradient steps every `train_freq` vector steps after `learning_starts`), the
  rounds' batches drawn ahead (`batches_ahead`), the replay buffer's side files, counters
  and RNG in checkpoints. A subclass says how to act, what a round of gradient steps does
  and what its networks' state is.

A time-limit truncation is not terminal: the transition's next state is the episode's
final observation (gymnasium's SAME_STEP autoreset keeps it in ``infos["final_obs"]``) and
the target bootstraps from it. Resuming restores the networks, optimizers, the replay buffer
(a side file), the schedules, the RNGs and the counters; the envs start fresh episodes, and
the at most n - 1 steps per env that an `NStep` still held are dropped.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.replay import ReplayBatch, ReplayBuffer
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError
from toolkit.seeding import numpy_rng_state, set_numpy_rng_state
from toolkit.trainer import Agent, TrainerContext
from toolkit.vector import finished_episodes, true_next_obs

Stats = dict[str, torch.Tensor]


@dataclass
class OffPolicyConfig(TrainerConfig):
    """The settings of the replay buffer and of the rounds of gradient steps."""

    n_envs: int = param(1, "environments stepped side by side")
    async_envs: bool = param(
        False, "step the envs in subprocesses (gymnasium's AsyncVectorEnv), for slow envs "
        "such as Atari on several cores; the same numbers as in this process")
    buffer_size: int = param(100_000, "replay buffer capacity, in transitions")
    learning_starts: int = param(1000, "env steps before the first gradient step")
    batch_size: int = param(32, "transitions per gradient step")
    gamma: float = param(0.99, "discount factor")
    n_steps: int = param(1, "rewards summed into one transition (n-step returns): the "
                            "target bootstraps n steps later, with gamma^n")
    train_freq: int = param(4, "vector env steps between rounds of gradient steps")
    gradient_steps: int = param(1, "gradient steps per round")
    steps_per_call: int = param(1000, "env steps per train_step (rounded up to whole vector "
                                      "steps)")

    def validate(self) -> None:
        check_range(self, "n_envs", 1)
        check_range(self, "buffer_size", 1)
        check_range(self, "learning_starts", 0)
        check_range(self, "batch_size", 1)
        check_range(self, "gamma", 0, 1)
        check_range(self, "n_steps", 1)
        check_range(self, "train_freq", 1)
        check_range(self, "gradient_steps", 0)
        check_range(self, "steps_per_call", 1)
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) must not exceed buffer_size "
                              f"({self.buffer_size}): each batch is drawn from the replay "
                              "buffer; raise buffer_size or lower batch_size")


class NStep:
    """Folds each env's last `n` steps into one transition (`n` = 1: each step as it is).

    The transition from step t is (s_t, a_t, r_t + gamma r_{t+1} + ... + gamma^(k-1)
    r_{t+k-1}, s_{t+k}, terminated_{t+k-1}, gamma^k) with k = n, or fewer where the episode
    ended at step t + k - 1: then it is emitted at once, with the episode's true final
    state (a truncated episode's target bootstraps from it with gamma^k)."""

    def __init__(self, n: int, gamma: float, n_envs: int) -> None:
        self.n, self.gamma = n, gamma
        self.pending: list[deque[tuple[Any, Any, float]]] = [deque() for _ in range(n_envs)]

    def push(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
             rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray
             ) -> tuple[np.ndarray, ...] | None:
        """One vector step (`next_obs` the true next observations); the transitions now
        complete, as arrays (obs, next_obs, actions, rewards, terminated, discounts), or
        None."""
        if self.n == 1:
            return (obs, next_obs, actions, rewards, terminated,
                    np.full(len(rewards), self.gamma, dtype=np.float32))
        rows: list[tuple[Any, ...]] = []
        for env, queue in enumerate(self.pending):
            queue.append((obs[env], actions[env], float(rewards[env])))
            ended = bool(terminated[env]) or bool(truncated[env])
            while queue and (ended or len(queue) == self.n):
                total = sum(self.gamma ** i * r for i, (_, _, r) in enumerate(queue))
                first_obs, first_action, _ = queue.popleft()
                rows.append((first_obs, next_obs[env], first_action, total,
                             float(terminated[env]), self.gamma ** (len(queue) + 1)))
        if not rows:
            return None
        return tuple(np.stack(column) for column in zip(*rows, strict=True))

    def clear(self) -> None:
        """Drop what is pending (the envs start fresh episodes)."""
        for queue in self.pending:
            queue.clear()


class TargetNetwork:
    """A copy of `online` that requires no gradients and follows it on `update`."""

    def __init__(self, online: nn.Module) -> None:
        self.net = copy.deepcopy(online)
        self.net.requires_grad_(False)
        self._pairs = list(zip(self.net.parameters(), online.parameters(), strict=True))

    @torch.no_grad()
    def update(self, tau: float = 1.0) -> None:
        """Copy the online weights (`tau` 1), or move towards them: t <- t + tau (o - t)."""
        for target, online in self._pairs:
            if tau == 1.0:
                target.copy_(online)
            else:
                target.lerp_(online, tau)


def batches_ahead(buffer: ReplayBuffer, n: int, batch_size: int, rng: np.random.Generator,
                  rows: int = 1024) -> Iterator[ReplayBatch]:
    """The batches of `n` gradient steps, a chunk of about `rows` transitions at a time:
    the draws of `n` calls of ``buffer.sample(batch_size, rng)``, as tensors with leading
    dimensions ``(steps, batch_size)``. The buffer does not change during a round, so the
    batches (and what a round computes from them, such as targets) can come ahead."""
    chunk = max(1, rows // batch_size)
    for begin in range(0, n, chunk):
        yield buffer.sample_many(min(chunk, n - begin), batch_size, rng)


class OffPolicyAgent(Agent):
    """The loop and the state that off-policy agents share (see the module's docstring)."""

    cfg: OffPolicyConfig
    source: EnvSource
    budget_units = ("steps",)
    exact_resume = False

    @classmethod
    def budget_multiple(cls, cfg: OffPolicyConfig) -> int:
        return cfg.n_envs

    def __init__(self, cfg: OffPolicyConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.device = torch.device(ctx.device)
        self.envs = source.make_vector(cfg.n_envs, asynchronous=cfg.async_envs)
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        self.rng = np.random.default_rng(ctx.seed)
        self.steps = self.episodes = self.updates = 0
        self.nstep = NStep(cfg.n_steps, cfg.gamma, cfg.n_envs)
        self._buffer_state: dict[str, Any] = {}

    def make_buffer(self, action_space: gym.Space) -> ReplayBuffer:
        """The replay buffer for this agent's observations and `action_space`'s actions."""
        obs_space = self.observation_space
        assert obs_space.shape is not None and action_space.shape is not None
        return ReplayBuffer(self.cfg.buffer_size, obs_space.shape, obs_space.dtype,
                            action_shape=action_space.shape, action_dtype=action_space.dtype,
                            device=self.device, discount=self.cfg.gamma)

    def start_episodes(self, seed: int) -> None:
        self.envs.action_space.seed(seed)
        self.obs, _ = self.envs.reset(seed=seed)
        self.nstep.clear()

    # -- what a subclass says -----------------------------------------------------------

    buffer: ReplayBuffer

    @abstractmethod
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The actions to take in the training envs (exploring)."""

    @abstractmethod
    def train_round(self, n: int) -> list[Stats]:
        """`n` gradient steps; each step's stats (detached tensors, read once per call)."""

    def after_vector_step(self, ended_returns: list[float]) -> None:
        """Called after each vector step with the returns of the episodes that ended."""

    def call_metrics(self) -> dict[str, float]:
        """Metrics of the train_step besides the losses and the episodes (epsilon)."""
        return {}

    # -- the loop -----------------------------------------------------------------------

    def learning(self) -> bool:
        # An n-step return reaches the buffer n - 1 steps after its first transition: with a
        # small learning_starts the buffer can still be empty.
        cfg = self.cfg
        return (self.steps > cfg.learning_starts and cfg.gradient_steps > 0
                and (self.steps // cfg.n_envs) % cfg.train_freq == 0 and len(self.buffer) > 0)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        n = cfg.n_envs
        vector_steps = min(-(-cfg.steps_per_call // n), self.budget_left() // n)
        returns: list[float] = []
        lengths: list[int] = []
        stats: list[Stats] = []
        for _ in range(vector_steps):
            actions = self.act(self.obs)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
            ready = self.nstep.push(self.obs, true_next_obs(next_obs, infos), actions,
                                    rewards, terminated, truncated)
            if ready is not None:
                self.buffer.add(*ready)
            self.obs = next_obs
            self.steps += n
            ended_returns, ended_lengths = finished_episodes(infos)
            returns += ended_returns
            lengths += ended_lengths
            self.episodes += len(ended_returns)
            self.after_vector_step(ended_returns)
            if self.learning():
                stats += self.train_round(cfg.gradient_steps)
            if self.ctx.stop.requested:
                break
        metrics = self.call_metrics()
        if stats:
            # One read-back per call, not one per gradient step; means in float64, as
            # np.mean of a list of Python floats computes them.
            for key in stats[0]:
                column = torch.stack([row[key] for row in stats]).cpu().numpy()
                metrics[key] = float(np.mean(column.astype(np.float64)))
        if returns:
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
        return metrics

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    # -- checkpoints ----------------------------------------------------------------------

    def loop_state(self) -> dict[str, Any]:
        """The loop's part of `state_dict`: buffer counters, counters, the RNG."""
        return {"buffer": self.buffer.state_dict(), "steps": self.steps,
                "episodes": self.episodes, "updates": self.updates,
                "rng": numpy_rng_state(self.rng)}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self._buffer_state = state["buffer"]
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        self.updates = int(state["updates"])
        set_numpy_rng_state(self.rng, state["rng"])
        # The envs start fresh episodes, seeded from the run's seed and the step: two
        # resumes of one checkpoint play the same episodes.
        self.start_episodes(int(np.random.SeedSequence([self.seed, self.steps])
                                .generate_state(1)[0]))

    def save_extra(self, directory: Path) -> None:
        self.buffer.save(directory)

    def load_extra(self, directory: Path) -> None:
        self.buffer.load(directory, self._buffer_state)

    def close(self) -> None:
        self.envs.close()
