"""Configs of the actor-critic agents: A2C's defaults are SB3's A2C, PPO's are SB3's PPO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from toolkit.config import TrainerConfig, check_activation, check_range, check_sizes, param
from toolkit.errors import ConfigError


@dataclass
class ActorCriticConfig(TrainerConfig):
    n_envs: int = param(8, "environments stepped side by side")
    async_envs: bool = param(
        False, "step the envs in subprocesses (gymnasium's AsyncVectorEnv), for slow envs "
        "such as Atari on several cores; the same numbers as in this process")
    n_steps: int = param(5, "rollout length: steps per env between updates")
    learning_rate: float = param(7e-4, "optimizer learning rate")
    lr_schedule: Literal["constant", "linear"] = param(
        "constant", "learning rate: constant, or falling linearly to 0 over the budget")
    optimizer: Literal["adam", "rmsprop"] = param("rmsprop", "optimizer (eps 1e-5, as SB3)")
    gamma: float = param(0.99, "discount factor")
    gae_lambda: float = param(1.0, "GAE lambda (1: n-step returns)")
    ent_coef: float = param(0.0, "entropy bonus coefficient")
    vf_coef: float = param(0.5, "value loss coefficient")
    max_grad_norm: float = param(0.5, "gradient clipping by global norm (0: off)")
    normalize_advantage: bool = param(False, "normalize advantages per minibatch")
    encoder: Literal["auto", "flat", "mlp", "cnn"] = param(
        "auto", "observation encoder: flat (one-hot for Discrete), mlp, cnn, or auto")
    hidden: list[int] = param([64, 64], "hidden layer sizes of the MLP encoder")
    activation: str = param("tanh", "activation of the MLP encoder")
    shared_encoder: bool = param(False, "one encoder for the actor and the critic")
    ortho_init: bool = param(True, "orthogonal initialisation (gains sqrt 2, 0.01, 1)")
    log_std_init: float = param(0.0, "continuous actions: initial log std of the Gaussian")
    lstm: bool = param(False, "an LSTM after the encoder (a recurrent policy)")
    lstm_hidden_size: int = param(64, "LSTM units")

    def validate(self) -> None:
        check_activation(self)
        check_range(self, "n_envs", 1)
        check_range(self, "n_steps", 1)
        check_range(self, "learning_rate", 0, low_open=True)
        check_range(self, "gamma", 0, 1)
        check_range(self, "gae_lambda", 0, 1)
        check_range(self, "ent_coef", 0)
        check_range(self, "vf_coef", 0)
        check_range(self, "max_grad_norm", 0)
        check_range(self, "lstm_hidden_size", 1)
        check_sizes(self, "hidden")


@dataclass
class A2CConfig(ActorCriticConfig):
    pass


@dataclass
class PPOConfig(ActorCriticConfig):
    n_steps: int = param(2048, "rollout length: steps per env between updates")
    learning_rate: float = param(3e-4, "optimizer learning rate")
    optimizer: Literal["adam", "rmsprop"] = param("adam", "optimizer (eps 1e-5, as SB3)")
    gae_lambda: float = param(0.95, "GAE lambda (1: n-step returns)")
    normalize_advantage: bool = param(True, "normalize advantages per minibatch")
    n_epochs: int = param(10, "passes over each rollout")
    batch_size: int = param(64, "minibatch size, in steps (recurrent: rounded to whole "
                                "env sequences)")
    clip_range: float = param(0.2, "PPO's clip range for the probability ratio")
    clip_range_schedule: Literal["constant", "linear"] = param(
        "constant", "clip range: constant, or falling linearly to 0 over the budget")
    clip_range_vf: float = param(0.0, "clip range of the value change (0: no value clipping)")
    target_kl: float = param(0.0, "stop a rollout's epochs once the approximate KL exceeds "
                                  "1.5 x this (0: never)")

    def validate(self) -> None:
        super().validate()
        check_range(self, "n_epochs", 1)
        check_range(self, "batch_size", 1)
        check_range(self, "clip_range", 0, low_open=True)
        check_range(self, "clip_range_vf", 0)
        check_range(self, "target_kl", 0)
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"batch_size ({self.batch_size}) exceeds the rollout of n_steps x "
                              f"n_envs = {self.n_steps} x {self.n_envs} = "
                              f"{self.n_steps * self.n_envs} steps that its minibatches are "
                              "drawn from; lower batch_size or raise n_steps")


@dataclass
class RecurrentA2CConfig(A2CConfig):
    lstm: bool = param(True, "an LSTM after the encoder (a recurrent policy)")

    def validate(self) -> None:
        super().validate()
        _require_lstm(self, "a2c-lstm")


@dataclass
class RecurrentPPOConfig(PPOConfig):
    lstm: bool = param(True, "an LSTM after the encoder (a recurrent policy)")

    def validate(self) -> None:
        super().validate()
        _require_lstm(self, "ppo-lstm")


def _require_lstm(cfg: ActorCriticConfig, algo: str) -> None:
    if not cfg.lstm:
        raise ConfigError(f"{algo} is the recurrent agent; drop lstm=false, or use "
                          f"--algo {algo.removesuffix('-lstm')} for a feed-forward one")
