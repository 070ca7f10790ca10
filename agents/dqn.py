"""Deep Q-learning (Mnih et al. 2015) on vectorized envs, with double DQN and dueling heads.

For a batch of transitions (s, a, r, s', terminated, discount) from the replay buffer:

    y = r + discount * (1 - terminated) * Q_target(s', argmax_a' Q(s', a'))   (double_q)
      = r + discount * (1 - terminated) * max_a' Q_target(s', a')             (otherwise)
    loss = huber(Q(s, a) - y)            (or the squared error, loss: mse)

where discount is gamma, or gamma^k for an n-step transition of k rewards (``n_steps``).
A time-limit truncation is not terminal: the target bootstraps from the episode's final
observation. The target network follows the online one every `target_update_interval` env
steps, fully (tau = 1) or by Polyak averaging. Exploration is epsilon-greedy: linear from
`exploration_initial_eps` to `exploration_final_eps` over `exploration_fraction` of the
budget, as in Stable-Baselines3, or geometric per finished episode (``exploration_schedule:
exponential``). The loop, the replay buffer and the target network are `agents.offpolicy`'s.

Each gradient step is `toolkit.nets.update`'s: the loss above is written once, as the
Q-network's forward pass and torch operations; the gradients, their clipping to
`max_grad_norm` and the optimizer's step come from torch, in one compiled graph for a long
run (``--set compile=...``, see the run settings).

With one env, a one-transition buffer, a target copied every step, SGD and the
squared error, a linear network on one-hot states is the textbook "Q-network"
(FrozenLake's ``linear-qnet`` preset): tabular Q-learning with a learning rate
of 2 * lr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.offpolicy import OffPolicyAgent, OffPolicyConfig, Stats, TargetNetwork, batches_ahead
from toolkit.checkpoint import check_state_version
from toolkit.config import check_activation, check_range, check_sizes, param
from toolkit.denormals import flush_denormals
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError, IncompatibleEnvError
from toolkit.nets import make_encoder, resolve_kind
from toolkit.nets.update import Learner, compile_update, resolve_compile
from toolkit.policy import Policy, epsilon_greedy
from toolkit.trainer import TrainerContext

#: 2: the update of toolkit.nets.update (torch's optimizer state, n-step discounts in the
#: replay buffer); 1: the hand-derived step, whose checkpoints still load.
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class DQNConfig(OffPolicyConfig):
    learning_rate: float = param(1e-4, "optimizer learning rate")
    optimizer: Literal["adam", "sgd"] = param("adam", "optimizer")
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

    def validate(self) -> None:
        super().validate()
        check_activation(self)
        check_range(self, "learning_rate", 0, low_open=True)
        check_range(self, "target_update_interval", 1)
        check_range(self, "tau", 0, 1, low_open=True)
        check_range(self, "exploration_initial_eps", 0, 1)
        check_range(self, "exploration_final_eps", 0, 1)
        check_range(self, "exploration_fraction", 0, 1, low_open=True)
        check_range(self, "exploration_decay", 0, 1, low_open=True)
        check_range(self, "max_grad_norm", 0)
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError(f"exploration_final_eps ({self.exploration_final_eps}) must not "
                              f"exceed exploration_initial_eps ({self.exploration_initial_eps})")
        if self.init_high <= self.init_low:
            raise ConfigError(f"init_high ({self.init_high}) must exceed init_low "
                              f"({self.init_low})")
        check_sizes(self, "hidden")


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, discounts: torch.Tensor,
              next_q_target: torch.Tensor, next_q_online: torch.Tensor | None
              ) -> torch.Tensor:
    """r + discount * (1 - terminated) * Q_target(s', a'), where a' maximises the online
    network's Q(s', .) when it is given (double DQN), else the target network's."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=-1).values
    else:
        best = next_q_online.argmax(dim=-1, keepdim=True)
        next_value = next_q_target.gather(-1, best).squeeze(-1)
    return rewards + discounts * (1.0 - terminated) * next_value


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


def greedy_actions(q_net: nn.Module, obs: np.ndarray, device: torch.device) -> np.ndarray:
    """argmax_a Q(obs, a)."""
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
        if self.epsilon == 0:
            return greedy_actions(self.q_net, obs, self.device)
        return epsilon_greedy(lambda: greedy_actions(self.q_net, obs, self.device), len(obs),
                              self.n_actions, self.epsilon, self.rng)


class DQN(OffPolicyAgent):
    """Deep Q-network: replay buffer, target network, double DQN and dueling as options."""

    Config = DQNConfig
    cfg: DQNConfig
    source: EnvSource

    @classmethod
    def incompatibility(cls, observation_space: Any, action_space: Any) -> str | None:
        if not isinstance(action_space, gym.spaces.Discrete):
            return "needs a Discrete action space (one Q-value per action)"
        return None

    @classmethod
    def check_budget(cls, cfg: DQNConfig, unit: str, amount: int) -> None:
        if unit == "steps" and cfg.learning_starts >= amount and cfg.gradient_steps > 0:
            raise ConfigError(f"learning_starts ({cfg.learning_starts:,}) is not below the "
                              f"budget of {amount:,} steps, so dqn would never learn; lower "
                              "learning_starts or raise --steps")

    def __init__(self, cfg: DQNConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        problem = self.incompatibility(self.observation_space, self.action_space)
        if problem is not None:
            self.envs.close()
            raise IncompatibleEnvError(f"dqn {problem}, but {source.id} has actions "
                                       f"{self.action_space}; pick another agent with --algo")
        assert isinstance(self.action_space, gym.spaces.Discrete)
        self.n_actions = int(self.action_space.n)
        self.q_net = QNetwork(self.observation_space, self.n_actions, cfg).to(self.device)
        self.target = TargetNetwork(self.q_net)
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self.q_net.parameters(),
                                                                    lr=cfg.learning_rate)
        else:
            self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate)
        self.learner = Learner({"q": self.q_net}, self.optimizer, cfg.max_grad_norm)
        rounds = (ctx.budget.amount - cfg.learning_starts) // (cfg.train_freq * cfg.n_envs)
        self.update = compile_update(
            self._gradient_step, [self.learner],
            resolve_compile(ctx.compile, max(0, rounds) * cfg.gradient_steps, self.device),
            self.device, constants=(self.target.net,))
        self.buffer = self.make_buffer(gym.spaces.Discrete(self.n_actions))
        self.epsilon = cfg.exploration_initial_eps
        self.start_episodes(ctx.seed)

    # -- acting ---------------------------------------------------------------------

    def policy(self, deterministic: bool = True) -> Policy:
        """Greedy on the live network (it shares the agent's weights), or epsilon-greedy."""
        return GreedyPolicy(self.q_net, self.device, self.n_actions,
                            0.0 if deterministic else self.epsilon)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.cfg.exploration_schedule == "linear":
            cfg = self.cfg
            t = min(1.0, self.budget_fraction() / cfg.exploration_fraction)
            self.epsilon = cfg.exploration_initial_eps + t * (cfg.exploration_final_eps
                                                              - cfg.exploration_initial_eps)
        return epsilon_greedy(lambda: greedy_actions(self.q_net, obs, self.device), len(obs),
                              self.n_actions, self.epsilon, self.rng)

    def after_vector_step(self, ended_returns: list[float]) -> None:
        cfg = self.cfg
        if cfg.exploration_schedule == "exponential":
            for _ in ended_returns:
                self.epsilon = max(cfg.exploration_final_eps,
                                   self.epsilon * cfg.exploration_decay)
        n = cfg.n_envs
        if self.steps // cfg.target_update_interval != (self.steps - n) // \
                cfg.target_update_interval:
            self.target.update(cfg.tau)

    def call_metrics(self) -> dict[str, float]:
        return {"charts/epsilon": self.epsilon}

    # -- learning -------------------------------------------------------------------

    def train_round(self, n: int) -> list[Stats]:
        """`n` gradient steps on batches from the buffer. Neither the buffer nor the target
        network changes during a round, so the batches are drawn ahead and the target
        network's values of their next states computed in one pass per chunk."""
        cfg = self.cfg
        stats: list[Stats] = []
        with flush_denormals(self.device):
            for batches in batches_ahead(self.buffer, n, cfg.batch_size, self.rng):
                steps = len(batches.obs)
                with torch.no_grad():
                    next_obs = batches.next_obs.flatten(0, 1)
                    next_q = self.target.net(next_obs)
                    online = self.q_net(next_obs) if cfg.double_q else None
                    targets = td_target(batches.rewards.flatten(), batches.terminated.flatten(),
                                        batches.discounts.flatten(), next_q, online)
                targets = targets.view(steps, cfg.batch_size, 1)
                actions = batches.actions.long().unsqueeze(-1)
                for obs, action, target in zip(batches.obs.unbind(0), actions.unbind(0),
                                               targets.unbind(0), strict=True):
                    loss, _ = self.update(obs, action, target)
                    self.updates += 1
                    stats.append({"losses/td_loss": loss})
        return stats

    def _td_loss(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, Stats]:
        q = self.q_net(obs).gather(1, actions)
        if self.cfg.loss == "huber":
            return F.smooth_l1_loss(q, target), {}
        return F.mse_loss(q, target), {}

    def _gradient_step(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
                       ) -> tuple[torch.Tensor, Stats]:
        """One step of the optimizer on the TD loss of Q(obs, actions) against `target`
        (both (B, 1)); compiled by `compile_update` for a long run."""
        return self.learner.minimize(self._td_loss, obs, actions, target)

    def networks(self) -> dict[str, tuple[Any, tuple[Any, ...]]]:
        return {"q_net": (self.q_net, (torch.as_tensor(self.obs[:1], device=self.device),))}

    def summary(self) -> dict[str, Any]:
        return {"update": self.update.mode}

    # -- checkpoints ----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "q_net": self.q_net.state_dict(),
            "target_net": self.target.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epsilon": self.epsilon,
            **self.loop_state(),
        }

    def policy_state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "q_net": self.q_net.state_dict()}

    def load_policy_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") not in READABLE_VERSIONS:
            check_state_version(state, "dqn", STATE_VERSION)
        self.q_net.load_state_dict(state["q_net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.target.net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epsilon = float(state["epsilon"])
        self.load_loop_state(state)
