"""Deep Q-learning (Mnih et al. 2015) on vectorized envs, with double DQN and dueling heads.

For a batch of transitions (s, a, r, s', terminated) from the replay buffer:

    y = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q(s', a'))   (double_q)
      = r + gamma * (1 - terminated) * max_a' Q_target(s', a')             (otherwise)
    loss = huber(Q(s, a) - y)            (or the squared error, loss: mse)

A time-limit truncation is not terminal: s' is the episode's final observation
(gymnasium's SAME_STEP autoreset keeps it in ``infos["final_obs"]``) and the
target bootstraps from it. The target network follows the online one every
`target_update_interval` env steps, fully (tau = 1) or by Polyak averaging.
Exploration is epsilon-greedy: linear from `exploration_initial_eps` to
`exploration_final_eps` over `exploration_fraction` of the budget, as in
Stable-Baselines3, or geometric per finished episode (``exploration_schedule:
exponential``).

With one env, a one-transition buffer, a target copied every step, SGD and the
squared error, a linear network on one-hot states is the textbook "Q-network"
(FrozenLake's ``linear-qnet`` preset): tabular Q-learning with a learning rate
of 2 * lr.

Resuming restores the networks, the optimizer, the replay buffer (a side file),
the schedules, the RNGs and the counters; the envs start fresh episodes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.replay import ReplayBuffer
from toolkit.config import TrainerConfig, check_range, param
from toolkit.environments import EnvSource
from toolkit.errors import CheckpointError, ConfigError, IncompatibleEnvError
from toolkit.nets import make_encoder, resolve_kind
from toolkit.policy import Policy, epsilon_greedy
from toolkit.seeding import numpy_rng_state, set_numpy_rng_state
from toolkit.trainer import Agent, TrainerContext
from toolkit.vector import finished_episodes, true_next_obs

STATE_VERSION = 1


@dataclass
class DQNConfig(TrainerConfig):
    n_envs: int = param(1, "environments stepped side by side")
    learning_rate: float = param(1e-4, "optimizer learning rate")
    optimizer: Literal["adam", "sgd"] = param("adam", "optimizer")
    buffer_size: int = param(100_000, "replay buffer capacity, in transitions")
    learning_starts: int = param(1000, "env steps before the first gradient step")
    batch_size: int = param(32, "transitions per gradient step")
    gamma: float = param(0.99, "discount factor")
    train_freq: int = param(4, "vector env steps between rounds of gradient steps")
    gradient_steps: int = param(1, "gradient steps per round")
    target_update_interval: int = param(1000, "env steps between target network updates")
    tau: float = param(1.0, "target update: 1 copies the online network, less is Polyak "
                            "averaging")
    exploration_schedule: Literal["linear", "exponential"] = param(
        "linear", "epsilon falls linearly over exploration_fraction of the budget, or by "
        "exploration_decay per finished episode")
    exploration_initial_eps: float = param(1.0, "epsilon at the start")
    exploration_final_eps: float = param(0.05, "epsilon's floor")
    exploration_fraction: float = param(0.1, "linear schedule: fraction of the budget over "
                                             "which epsilon falls")
    exploration_decay: float = param(0.999, "exponential schedule: epsilon multiplier per "
                                            "finished episode")
    double_q: bool = param(False, "double DQN: the online network picks the next action")
    dueling: bool = param(False, "dueling head: Q = V + A - mean(A)")
    loss: Literal["huber", "mse"] = param("huber", "TD loss: Huber (smooth L1) or squared error")
    max_grad_norm: float = param(10.0, "gradient clipping by global norm (0: off)")
    encoder: Literal["auto", "flat", "mlp", "cnn"] = param(
        "auto", "observation encoder: flat (one-hot for Discrete), mlp, cnn, or auto")
    hidden: list[int] = param([64, 64], "hidden layer sizes of the MLP encoder")
    activation: str = param("relu", "activation of the MLP encoder")
    head_bias: bool = param(True, "a bias in the Q head")
    init: Literal["default", "uniform"] = param(
        "default", "weights: torch's default, or uniform in [init_low, init_high)")
    init_low: float = param(0.0, "uniform init: lower bound")
    init_high: float = param(0.01, "uniform init: upper bound")
    steps_per_call: int = param(1000, "env steps per train_step (rounded up to whole vector "
                                      "steps)")

    def validate(self) -> None:
        check_range(self, "n_envs", 1)
        check_range(self, "learning_rate", 0, low_open=True)
        check_range(self, "buffer_size", 1)
        check_range(self, "learning_starts", 0)
        check_range(self, "batch_size", 1)
        check_range(self, "gamma", 0, 1)
        check_range(self, "train_freq", 1)
        check_range(self, "gradient_steps", 0)
        check_range(self, "target_update_interval", 1)
        check_range(self, "tau", 0, 1, low_open=True)
        check_range(self, "exploration_initial_eps", 0, 1)
        check_range(self, "exploration_final_eps", 0, 1)
        check_range(self, "exploration_fraction", 0, 1, low_open=True)
        check_range(self, "exploration_decay", 0, 1, low_open=True)
        check_range(self, "max_grad_norm", 0)
        check_range(self, "steps_per_call", 1)
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError(f"exploration_final_eps ({self.exploration_final_eps}) must not "
                              f"exceed exploration_initial_eps ({self.exploration_initial_eps})")
        if self.init_high <= self.init_low:
            raise ConfigError(f"init_high ({self.init_high}) must exceed init_low "
                              f"({self.init_low})")
        if any(size < 1 for size in self.hidden):
            raise ConfigError(f"hidden sizes must be positive, got {self.hidden}")


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor,
              next_q_online: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """r + gamma * (1 - terminated) * Q_target(s', a'), where a' maximises the online
    network's Q(s', .) when it is given (double DQN), else the target network's."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_value = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_value


def _check_version(state: dict[str, Any]) -> None:
    version = state.get("version")
    if version != STATE_VERSION:
        raise CheckpointError(f"this checkpoint holds dqn state version {version}, and this "
                              f"gymkit reads version {STATE_VERSION}; use it with the gymkit "
                              "that wrote it")


class QNetwork(nn.Module):
    """Encoder, then a linear Q head, or a dueling head: Q = V + A - mean(A)."""

    def __init__(self, observation_space: gym.Space, n_actions: int, cfg: DQNConfig) -> None:
        super().__init__()
        kind = resolve_kind(observation_space, cfg.encoder)
        kwargs: dict[str, Any] = {}
        if kind == "mlp":
            kwargs = {"hidden": tuple(cfg.hidden), "activation": cfg.activation}
        self.encoder = make_encoder(observation_space, kind, **kwargs)
        features = int(self.encoder.output_dim)
        self.dueling = cfg.dueling
        self.head = nn.Linear(features, n_actions, bias=cfg.head_bias)
        self.value = nn.Linear(features, 1, bias=cfg.head_bias) if cfg.dueling else None
        if cfg.init == "uniform":
            for parameter in self.parameters():
                nn.init.uniform_(parameter, cfg.init_low, cfg.init_high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(obs)
        q = self.head(features)
        if self.value is not None:
            q = self.value(features) + q - q.mean(dim=1, keepdim=True)
        return q


def greedy_actions(q_net: QNetwork, obs: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        return q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()


class GreedyPolicy(Policy):
    """argmax_a Q(s, a), or a random action with probability epsilon."""

    def __init__(self, q_net: QNetwork, device: torch.device, n_actions: int,
                 epsilon: float = 0.0) -> None:
        self.q_net, self.device, self.n_actions, self.epsilon = q_net, device, n_actions, epsilon
        self.rng = np.random.default_rng()

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        greedy = partial(greedy_actions, self.q_net, obs, self.device)
        if self.epsilon == 0:
            return greedy()
        return epsilon_greedy(greedy, len(obs), self.n_actions, self.epsilon, self.rng)


class DQN(Agent):
    """Deep Q-network: replay buffer, target network, double DQN and dueling as options."""

    Config = DQNConfig
    cfg: DQNConfig
    source: EnvSource
    budget_units = ("steps",)
    exact_resume = False

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if not isinstance(action_space, gym.spaces.Discrete):
            return "needs a Discrete action space (one Q-value per action)"
        return None

    @classmethod
    def budget_multiple(cls, cfg: DQNConfig) -> int:
        return cfg.n_envs

    def __init__(self, cfg: DQNConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.device = torch.device(ctx.device)
        self.envs = source.make_vector(cfg.n_envs)
        obs_space = self.envs.single_observation_space
        act_space = self.envs.single_action_space
        problem = self.incompatibility(obs_space, act_space)
        if problem is not None:
            self.envs.close()
            raise IncompatibleEnvError(f"dqn {problem}, but {source.id} has actions "
                                       f"{act_space}; pick another agent with --algo")
        assert isinstance(act_space, gym.spaces.Discrete)
        self.n_actions = int(act_space.n)
        self.q_net = QNetwork(obs_space, self.n_actions, cfg).to(self.device)
        self.target_net = copy.deepcopy(self.q_net)
        self.target_net.requires_grad_(False)
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self.q_net.parameters(),
                                                                    lr=cfg.learning_rate)
        else:
            # The fused kernel updates all parameters in one call, where torch's default on
            # the CPU loops over them in Python.
            self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate,
                                              fused=self.device.type in ("cpu", "cuda"))
        assert obs_space.shape is not None
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_space.shape, obs_space.dtype,
                                   device=self.device)
        self.rng = np.random.default_rng(ctx.seed)
        self.steps = self.episodes = self.updates = 0
        self.epsilon = cfg.exploration_initial_eps
        self.envs.action_space.seed(ctx.seed)
        self.obs, _ = self.envs.reset(seed=ctx.seed)

    # -- acting ---------------------------------------------------------------------

    def policy(self, deterministic: bool = True) -> Policy:
        """Greedy on the live network (it shares the agent's weights), or epsilon-greedy."""
        return GreedyPolicy(self.q_net, self.device, self.n_actions,
                            0.0 if deterministic else self.epsilon)

    def _act(self, obs: np.ndarray) -> np.ndarray:
        return epsilon_greedy(partial(greedy_actions, self.q_net, obs, self.device), len(obs),
                              self.n_actions, self.epsilon, self.rng)

    # -- learning -------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        n = cfg.n_envs
        vector_steps = min(-(-cfg.steps_per_call // n), self.budget_left() // n)
        returns: list[float] = []
        lengths: list[int] = []
        losses: list[float] = []
        for _ in range(vector_steps):
            if cfg.exploration_schedule == "linear":
                self.epsilon = self._linear_epsilon()
            actions = self._act(self.obs)
            next_obs, rewards, terminated, _, infos = self.envs.step(actions)
            self.buffer.add(self.obs, true_next_obs(next_obs, infos), actions, rewards,
                            terminated)
            self.obs = next_obs
            self.steps += n
            ended_returns, ended_lengths = finished_episodes(infos)
            returns += ended_returns
            lengths += ended_lengths
            self.episodes += len(ended_returns)
            if cfg.exploration_schedule == "exponential":
                for _ in ended_returns:
                    self.epsilon = max(cfg.exploration_final_eps,
                                       self.epsilon * cfg.exploration_decay)
            if self.steps > cfg.learning_starts and (self.steps // n) % cfg.train_freq == 0:
                for _ in range(cfg.gradient_steps):
                    losses.append(self._update())
            if self.steps // cfg.target_update_interval != (self.steps - n) // \
                    cfg.target_update_interval:
                self._update_target()
        metrics = {"charts/epsilon": self.epsilon}
        if losses:
            metrics["losses/td_loss"] = float(np.mean(losses))
        if returns:
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
        return metrics

    def _linear_epsilon(self) -> float:
        cfg = self.cfg
        t = min(1.0, self.budget_fraction() / cfg.exploration_fraction)
        return cfg.exploration_initial_eps + t * (cfg.exploration_final_eps
                                                  - cfg.exploration_initial_eps)

    def _update(self) -> float:
        cfg = self.cfg
        batch = self.buffer.sample(cfg.batch_size, self.rng)
        with torch.no_grad():
            online = self.q_net(batch.next_obs) if cfg.double_q else None
            target = td_target(batch.rewards, batch.terminated, self.target_net(batch.next_obs),
                               online, cfg.gamma)
        q = self.q_net(batch.obs).gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, target) if cfg.loss == "huber" else F.mse_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.q_net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        return float(loss.detach())

    def _update_target(self) -> None:
        tau = self.cfg.tau
        with torch.no_grad():
            for target, online in zip(self.target_net.parameters(), self.q_net.parameters(),
                                      strict=True):
                if tau == 1.0:
                    target.copy_(online)
                else:
                    target.lerp_(online, tau)

    def progress(self) -> dict[str, int]:
        return {"steps": self.steps, "episodes": self.episodes}

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"q_net": (self.q_net, (torch.as_tensor(self.obs[:1], device=self.device),))}

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "steps": self.steps,
            "episodes": self.episodes,
            "updates": self.updates,
            "epsilon": self.epsilon,
            "rng": numpy_rng_state(self.rng),
        }

    def policy_state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "q_net": self.q_net.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        _check_version(state)
        self.q_net.load_state_dict(state["q_net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._buffer_state = state["buffer"]
        self.steps, self.episodes = int(state["steps"]), int(state["episodes"])
        self.updates = int(state["updates"])
        self.epsilon = float(state["epsilon"])
        set_numpy_rng_state(self.rng, state["rng"])
        # The envs start fresh episodes, seeded from the run's seed and the step: two
        # resumes of one checkpoint play the same episodes.
        seed = int(np.random.SeedSequence([self.seed, self.steps]).generate_state(1)[0])
        self.envs.action_space.seed(seed)
        self.obs, _ = self.envs.reset(seed=seed)

    def save_extra(self, directory: Path) -> None:
        self.buffer.save(directory)

    def load_extra(self, directory: Path) -> None:
        self.buffer.load(directory, self._buffer_state)

    def close(self) -> None:
        self.envs.close()
