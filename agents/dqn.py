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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.gradient_step import GradientStep
from agents.replay import ReplayBuffer
from toolkit.checkpoint import check_state_version
from toolkit.config import TrainerConfig, check_activation, check_range, check_sizes, param
from toolkit.denormals import flush_denormals
from toolkit.environments import EnvSource
from toolkit.errors import ConfigError, IncompatibleEnvError
from toolkit.nets import fast_mlp, make_encoder, resolve_kind
from toolkit.policy import Policy, epsilon_greedy
from toolkit.seeding import numpy_rng_state, set_numpy_rng_state
from toolkit.trainer import Agent, TrainerContext
from toolkit.vector import finished_episodes, true_next_obs

STATE_VERSION = 1

#: torch's code for ``reduction="mean"`` (torch.nn._reduction.get_enum), as the losses'
#: backward ops take it.
MEAN = 1


@dataclass
class DQNConfig(TrainerConfig):
    n_envs: int = param(1, "environments stepped side by side")
    async_envs: bool = param(
        False, "step the envs in subprocesses (gymnasium's AsyncVectorEnv), for slow envs "
        "such as Atari on several cores; the same numbers as in this process")
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
        check_activation(self)
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
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size ({self.batch_size}) must not exceed buffer_size "
                              f"({self.buffer_size}): each batch is drawn from the replay "
                              "buffer; raise buffer_size or lower batch_size")
        if self.init_high <= self.init_low:
            raise ConfigError(f"init_high ({self.init_high}) must exceed init_low "
                              f"({self.init_low})")
        check_sizes(self, "hidden")


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor,
              next_q_online: torch.Tensor | None, gamma: float) -> torch.Tensor:
    """r + gamma * (1 - terminated) * Q_target(s', a'), where a' maximises the online
    network's Q(s', .) when it is given (double DQN), else the target network's."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_value = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (1.0 - terminated) * next_value


class QNetwork(nn.Module):
    """Encoder, then a linear Q head, or a dueling head: Q = V + A - mean(A).

    The agent's hot paths compute `forward`'s numbers without nn.Module's per-call overhead
    (on CartPole's 256-wide layers as much as the batch-1 forward of an env step itself),
    through `toolkit.nets.fast_mlp`: `q_values` runs a plain MLP encoder and the heads as
    functional calls; where the encoder is a plain MLP and the head linear, `q_function`
    (acting, target values) runs them as a `fast_mlp.LinearChain`, and the gradient steps
    take `td_loss_and_gradients`, without autograd. Module hooks do not see those calls;
    `forward` calls the modules."""

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
        self._plan = fast_mlp.mlp_plan(self.encoder)
        self._head_params = fast_mlp.linear_params(self.head)
        self._value_params = None if self.value is None else fast_mlp.linear_params(self.value)
        #: A plain MLP encoder (`fast_mlp.mlp_plan`) and a linear head: `q_function` chains
        #: them, and `td_loss_and_gradients` applies.
        self.plain_mlp = self._plan is not None and self.value is None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.encoder(obs)
        q = self.head(features)
        if self.value is not None:
            q = self.value(features) + q - q.mean(dim=1, keepdim=True)
        return q

    def q_values(self, obs: torch.Tensor) -> torch.Tensor:
        """`forward` without calling the modules (a CNN encoder is still called)."""
        features = fast_mlp.run_encoder(self.encoder, self._plan, obs)
        head = self._head_params
        q = F.linear(features, head["weight"], head["bias"])
        if self._value_params is not None:
            value = self._value_params
            q = (F.linear(features, value["weight"], value["bias"]) + q
                 - q.mean(dim=1, keepdim=True))
        return q

    def chain(self, reuse_outputs: bool = False) -> fast_mlp.LinearChain | None:
        """A plain MLP encoder and a linear head as a `fast_mlp.LinearChain` (else None),
        for calls during which no parameter is replaced: a train_step's acting, a round's
        target values and gradient steps. With `reuse_outputs`, a call's outputs are
        overwritten by the next call's (see `fast_mlp.LinearChain`)."""
        if not self.plain_mlp:
            return None
        assert self._plan is not None
        return fast_mlp.LinearChain((*self._plan.layers, self._head_params), reuse_outputs)

    def q_function(self, reuse_outputs: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
        """`q_values` through `chain` (which computes the same, for less), where there is
        one; for calls during which no parameter is replaced."""
        chain, encoder, plan = self.chain(reuse_outputs), self.encoder, self._plan
        if chain is None:
            return self.q_values
        assert plan is not None
        return lambda obs: chain(fast_mlp.preprocess_batch(encoder, plan, obs))

    def td_loss_and_gradients(self, chain: fast_mlp.LinearChain, obs: torch.Tensor,
                              actions: torch.Tensor, target: torch.Tensor, loss: str,
                              into: Mapping[torch.Tensor, torch.Tensor] | None = None
                              ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The TD loss of Q(obs, actions) against `target` (both (B, 1); actions int64),
        the parameters, and the gradients that the loss's ``backward()`` would give them,
        computed without autograd through `chain` (this network's), and written `into`
        the given tensors (`fast_mlp.LinearChain.backward`).

        Recording the graph and running autograd's engine cost about a fifth of a gradient
        step on CartPole's rl-zoo network. Each gradient here comes from the operations that
        autograd's backward of the loss, ``gather`` and the network runs (derivatives.yaml),
        on the same operands: the same bits (`toolkit.nets.fast_mlp`)."""
        assert self._plan is not None
        with torch.no_grad():
            outputs = chain.forward_keeping(
                fast_mlp.preprocess_batch(self.encoder, self._plan, obs))
            q_all = outputs[-1]
            q = q_all.gather(1, actions)
            # The ops that F.smooth_l1_loss and F.mse_loss end in (without their broadcast
            # of two batches of one shape), and their backward given backward()'s seed.
            if loss == "huber":
                value = torch.ops.aten.smooth_l1_loss(q, target, MEAN, 1.0)
                grad_q = torch.ops.aten.smooth_l1_loss_backward(torch.ones_like(value), q,
                                                                target, MEAN, 1.0)
            else:
                value = torch.ops.aten.mse_loss(q, target, MEAN)
                grad_q = torch.ops.aten.mse_loss_backward(torch.ones_like(value), q, target,
                                                          MEAN)
            # gather's backward (gather_backward): the gradient scattered into zeros.
            grad_q_all = torch.zeros_like(q_all).scatter_add_(1, actions, grad_q)
        params, grads = chain.backward(outputs, grad_q_all, into)
        return value, params, grads


def greedy_actions(q_values: Callable[[torch.Tensor], torch.Tensor], obs: np.ndarray,
                   device: torch.device) -> np.ndarray:
    """argmax_a Q(obs, a), from `q_values` (`QNetwork.q_values` or a `q_function`)."""
    with torch.inference_mode():
        return q_values(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()


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
        greedy = partial(greedy_actions, self.q_net.q_values, obs, self.device)
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

    @classmethod
    def check_budget(cls, cfg: DQNConfig, unit: str, amount: int) -> None:
        if unit == "steps" and cfg.learning_starts >= amount and cfg.gradient_steps > 0:
            raise ConfigError(f"learning_starts ({cfg.learning_starts:,}) is not below the "
                              f"budget of {amount:,} steps, so dqn would never learn; lower "
                              "learning_starts or raise --steps")

    def __init__(self, cfg: DQNConfig, source: EnvSource, ctx: TrainerContext) -> None:
        super().__init__(cfg, source, ctx)
        self.device = torch.device(ctx.device)
        self.envs = source.make_vector(cfg.n_envs, asynchronous=cfg.async_envs)
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
        self._params: list[torch.Tensor] = list(self.q_net.parameters())
        self._target_params: list[torch.Tensor] = list(self.target_net.parameters())
        if cfg.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(self.q_net.parameters(),
                                                                    lr=cfg.learning_rate)
        else:
            # The fused kernel updates all parameters in one call, where torch's default on
            # the CPU loops over them in Python.
            self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.learning_rate,
                                              fused=self.device.type in ("cpu", "cuda"))
        self.gradient_step = GradientStep(self._params, self.optimizer, cfg.max_grad_norm)
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

    def _act(self, obs: np.ndarray, q_values: Callable[[torch.Tensor], torch.Tensor]
             ) -> np.ndarray:
        return epsilon_greedy(partial(greedy_actions, q_values, obs, self.device), len(obs),
                              self.n_actions, self.epsilon, self.rng)

    # -- learning -------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        n = cfg.n_envs
        vector_steps = min(-(-cfg.steps_per_call // n), self.budget_left() // n)
        returns: list[float] = []
        lengths: list[int] = []
        losses: list[torch.Tensor] = []
        # No parameter is replaced within this call, and each action's Q-values are done
        # with before the next.
        q_values = self.q_net.q_function(reuse_outputs=True)
        for _ in range(vector_steps):
            if cfg.exploration_schedule == "linear":
                self.epsilon = self._linear_epsilon()
            actions = self._act(self.obs, q_values)
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
            if self.steps > cfg.learning_starts and (self.steps // n) % cfg.train_freq == 0 \
                    and cfg.gradient_steps > 0:
                losses += self._train_round(cfg.gradient_steps)
            if self.steps // cfg.target_update_interval != (self.steps - n) // \
                    cfg.target_update_interval:
                self._update_target()
            if self.ctx.stop.requested:
                break
        metrics = {"charts/epsilon": self.epsilon}
        if losses:
            # One read-back per call, not one per gradient step; the mean of the float32
            # losses in float64, as np.mean of a list of Python floats computes it.
            metrics["losses/td_loss"] = float(np.mean(
                torch.stack(losses).cpu().numpy().astype(np.float64)))
        if returns:
            metrics["charts/episodic_return"] = float(np.mean(returns))
            metrics["charts/episodic_length"] = float(np.mean(lengths))
        return metrics

    def _linear_epsilon(self) -> float:
        cfg = self.cfg
        t = min(1.0, self.budget_fraction() / cfg.exploration_fraction)
        return cfg.exploration_initial_eps + t * (cfg.exploration_final_eps
                                                  - cfg.exploration_initial_eps)

    #: Transitions per target-network pass when a round's targets are computed ahead.
    TARGET_ROWS = 1024

    def _train_round(self, n: int) -> list[torch.Tensor]:
        """`n` gradient steps on batches from the buffer; returns their (detached) losses.

        Neither the buffer nor the target network changes during a round, so the batches
        are drawn ahead, several steps at a time (the same draws from ``self.rng`` as one
        `sample` per step), and so are the target network's values of their next states:
        one pass over many batches instead of one per step. Each gradient step is then
        computed exactly as a lone one would be."""
        cfg = self.cfg
        batch_size = cfg.batch_size
        chunk = max(1, self.TARGET_ROWS // batch_size)
        losses: list[torch.Tensor] = []
        target_q_values = self.target_net.q_function(reuse_outputs=True)
        chain = self.q_net.chain(reuse_outputs=True)
        with flush_denormals(self.device):
            for begin in range(0, n, chunk):
                steps = min(chunk, n - begin)
                batches = self.buffer.sample_many(steps, batch_size, self.rng)
                actions = batches.actions.long().unsqueeze(-1)
                with torch.no_grad():
                    next_q = target_q_values(batches.next_obs.flatten(0, 1))
                    next_q = next_q.view(steps, batch_size, -1)
                    targets = None if cfg.double_q else td_target(
                        batches.rewards.flatten(), batches.terminated.flatten(),
                        next_q.flatten(0, 1), None, cfg.gamma).view(steps, batch_size)
                # Views of each step's rows, made by one op per array instead of one per step.
                obs, step_actions = batches.obs.unbind(0), actions.unbind(0)
                step_targets = None if targets is None else targets.unsqueeze(-1).unbind(0)
                for i in range(steps):
                    if step_targets is None:
                        with torch.no_grad():
                            target = td_target(batches.rewards[i], batches.terminated[i],
                                               next_q[i],
                                               self.q_net.q_values(batches.next_obs[i]),
                                               cfg.gamma).unsqueeze(1)
                    else:
                        target = step_targets[i]
                    losses.append(self._gradient_step(obs[i], step_actions[i], target, chain))
        return losses

    def _gradient_step(self, obs: torch.Tensor, actions: torch.Tensor, target: torch.Tensor,
                       chain: fast_mlp.LinearChain | None = None) -> torch.Tensor:
        """One step on the TD loss of Q(obs, actions) against `target` (both (B, 1); actions
        int64: the loss of a (B, 1) batch has the bits of the (B,) one's, without a squeeze
        and its backward); returns the loss, without a graph (reading it back is left to the
        caller). With the online network's `chain`, the gradients are computed without
        autograd where the step takes them."""
        step = self.gradient_step
        self.updates += 1
        if chain is not None and step.takes_gradients:
            loss, params, grads = self.q_net.td_loss_and_gradients(
                chain, obs, actions, target, self.cfg.loss, into=step.buffers)
            step.apply(params, grads)
            return loss
        q = self.q_net.q_values(obs).gather(1, actions)
        loss = F.smooth_l1_loss(q, target) if self.cfg.loss == "huber" else F.mse_loss(q, target)
        step(loss)
        return loss.detach()

    def _update_target(self) -> None:
        tau = self.cfg.tau
        with torch.no_grad():
            if tau == 1.0:
                torch._foreach_copy_(self._target_params, self._params)
            else:
                torch._foreach_lerp_(self._target_params, self._params, tau)

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
        check_state_version(state, "dqn", STATE_VERSION)
        self.q_net.load_state_dict(state["q_net"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_policy_state_dict(state)
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gradient_step.forget()
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
