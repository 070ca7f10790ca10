"""Recurrent PPO on CartPole without velocities: gymkit's ppo-lstm, gymkit's feed-forward ppo
and sb3-contrib's RecurrentPPO, on the same budget and the same evaluation episodes.

The env is the `cartpole-masked` preset (CartPole-v1, cart and pole velocities zeroed);
all three use rl-baselines3-zoo's CartPoleNoVel-v1 settings (8 envs, 32 steps per
rollout, batch 256, 20 epochs, gamma 0.98, GAE lambda 0.8, learning rate and clip range
falling linearly from 1e-3 and 0.2), 100k steps. The networks are each one's tuned
choice: gymkit's is a shared MLP [64, 64] then an LSTM of 128
(envs/presets/cartpole-masked.yaml); sb3-contrib's is rl-zoo's (an LSTM of 64 for the
actor and one for the critic, then [64] each, ReLU, no orthogonal init), and, as in rl-zoo,
its observations are normalized by running statistics (VecNormalize), which gymkit's are
not. Each trained policy plays the same 100 seeded episodes,
deterministically. One torch thread each, one after the other.

    python benchmarks/recurrent_ppo.py [--seed 0] [--steps 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from toolkit import launch
from toolkit.environments import resolve_env
from toolkit.evaluation import evaluate_policy
from toolkit.policy import Policy

EPISODES = 100
EVAL_SEED = 10_000


def run_gymkit(algo: str, seed: int, steps: int) -> tuple[float, float]:
    """(mean return of the final policy, training wall time)."""
    with tempfile.TemporaryDirectory() as runs:
        prepared = launch.prepare("agent", "cartpole-masked", algo,
                                  flags={"seed": seed, "steps": steps},
                                  assignments=[f"eval_every={steps}", "eval_episodes=1",
                                               "final_eval_episodes=1"])
        runner = launch.start(prepared, Path(runs), quiet=True)
        start = time.perf_counter()
        try:
            runner.run()
            seconds = time.perf_counter() - start
            agent = runner.trainer
            source = agent.source
            result = evaluate_policy(agent.policy(deterministic=True), source, EPISODES,
                                     seed=EVAL_SEED, n_envs=8)
        finally:
            runner.trainer.close()
    return result.metrics()["eval/mean_return"], seconds


class _RecurrentSB3Policy(Policy):
    def __init__(self, model: object, normalize: Callable[[Any], Any]) -> None:
        self.model, self.normalize = model, normalize
        self.state: object = None

    def reset(self, n_envs: int, seed: int | None = None) -> None:
        self.state = None

    def act(self, obs: np.ndarray, episode_start: np.ndarray) -> np.ndarray:
        actions, self.state = self.model.predict(  # type: ignore[attr-defined]
            self.normalize(obs), state=self.state, episode_start=episode_start, deterministic=True)
        return actions


def run_sb3_contrib(seed: int, steps: int) -> tuple[float, float]:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
    from torch import nn

    source, _ = resolve_env("cartpole-masked")
    envs = VecNormalize(DummyVecEnv([lambda: source.make(record_stats=False)] * 8),
                        norm_obs=True, norm_reward=False)
    model = RecurrentPPO("MlpLstmPolicy", envs, seed=seed, device="cpu", verbose=0,
                         n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                         ent_coef=0.0, learning_rate=lambda p: 1e-3 * p,
                         clip_range=lambda p: 0.2 * p,
                         policy_kwargs={"ortho_init": False, "activation_fn": nn.ReLU,
                                        "lstm_hidden_size": 64, "enable_critic_lstm": True,
                                        "net_arch": {"pi": [64], "vf": [64]}})
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    envs.training = False  # evaluation normalizes with the statistics training ended with
    result = evaluate_policy(_RecurrentSB3Policy(model, envs.normalize_obs), source, EPISODES,
                             seed=EVAL_SEED, n_envs=8)
    envs.close()
    return result.metrics()["eval/mean_return"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"cartpole-masked (CartPole-v1 without velocities), {args.steps:,} steps, seed "
          f"{args.seed}; final policy on {EPISODES} seeded episodes, deterministic")
    print(f"{'':28}{'mean return':>12}{'train time':>12}")
    rows = [("gymkit ppo-lstm", run_gymkit("ppo-lstm", args.seed, args.steps)),
            ("gymkit ppo (no memory)", run_gymkit("ppo", args.seed, args.steps)),
            ("sb3-contrib RecurrentPPO", run_sb3_contrib(args.seed, args.steps))]
    for name, (mean_return, seconds) in rows:
        print(f"{name:28}{mean_return:>12.1f}{seconds:>10.1f} s", flush=True)


if __name__ == "__main__":
    main()
