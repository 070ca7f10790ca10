"""gymkit's deep RL agents against Stable-Baselines3's, with the same hyperparameters.

Both train on CartPole-v1 with rl-baselines3-zoo's tuned settings (the ones in
envs/presets/cartpole.yaml), one torch thread each, on the CPU, one after the other
in this process. Every `--eval-every` steps both are paused and their greedy policy
is evaluated on the same 10 seeded episodes; the clock stops meanwhile, so that
steps/s and the time to solve count training only. Printed per algorithm: steps/s
of each, their ratio, and the training time until the evaluation return first
reached 475 (CartPole-v1's reward threshold).

    python benchmarks/rl_vs_sb3.py [--algos dqn] [--seed 0] [--eval-every 5000]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from toolkit import launch
from toolkit.environments import resolve_env

THRESHOLD = 475.0
EVAL_EPISODES = 10
EVAL_SEED = 10_000


@dataclass
class Result:
    steps: int
    train_seconds: float
    solved_at: float | None  # training seconds when the evaluation first reached THRESHOLD
    final_return: float

    @property
    def sps(self) -> float:
        return self.steps / self.train_seconds


def preset(algo: str) -> dict[str, Any]:
    _, env_preset = resolve_env("cartpole")
    assert env_preset is not None
    return dict(env_preset.hyperparams[algo])


def greedy_return(act: Any) -> float:
    """Mean return of `act(obs) -> action` over EVAL_EPISODES seeded CartPole episodes."""
    env = gym.make("CartPole-v1")
    total = 0.0
    for k in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + k)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
    return total / EVAL_EPISODES


def run_gymkit(algo: str, seed: int, eval_every: int) -> Result:
    settings = preset(algo)
    steps = int(settings["steps"])
    prepared = launch.prepare("agent", "cartpole", algo, flags={"seed": seed},
                              assignments=[f"steps_per_call={eval_every}"])
    agent: Any = prepared.trainer
    policy = agent.policy(deterministic=True)
    policy.reset(1)
    starting = np.ones(1, dtype=bool)
    trained, solved_at, last = 0.0, None, 0.0
    while agent.budget_left() > 0:
        start = time.perf_counter()
        agent.train_step()
        trained += time.perf_counter() - start
        last = greedy_return(lambda obs: int(policy.act(obs[None], starting)[0]))
        if solved_at is None and last >= THRESHOLD:
            solved_at = trained
    agent.close()
    return Result(steps, trained, solved_at, last)


def run_sb3(algo: str, seed: int, eval_every: int) -> Result:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    settings = preset(algo)
    steps = int(settings["steps"])
    if algo != "dqn":
        raise SystemExit(f"no SB3 counterpart wired for {algo}")
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0,
                learning_rate=settings["learning_rate"], batch_size=settings["batch_size"],
                buffer_size=settings["buffer_size"], learning_starts=settings["learning_starts"],
                gamma=settings["gamma"], target_update_interval=settings["target_update_interval"],
                train_freq=settings["train_freq"], gradient_steps=settings["gradient_steps"],
                exploration_fraction=settings["exploration_fraction"],
                exploration_final_eps=settings["exploration_final_eps"],
                policy_kwargs={"net_arch": list(settings["hidden"])})

    class Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.trained, self.last = 0.0, 0.0
            self.solved_at: float | None = None
            self.started = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                self.trained += time.perf_counter() - self.started
                self.last = greedy_return(
                    lambda obs: int(model.predict(obs, deterministic=True)[0]))
                if self.solved_at is None and self.last >= THRESHOLD:
                    self.solved_at = self.trained
                self.started = time.perf_counter()
            return True

    clock = Clock()
    model.learn(total_timesteps=steps, callback=clock)
    return Result(steps, clock.trained, clock.solved_at, clock.last)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["dqn"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=5000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CartPole-v1, rl-zoo hyperparameters, seed {args.seed}, 1 torch thread, CPU; "
          f"evaluation every {args.eval_every} steps on {EVAL_EPISODES} episodes, off the clock")
    header = f"{'':6}{'gymkit steps/s':>16}{'SB3 steps/s':>13}{'ratio':>7}"
    header += f"{'gymkit to 475':>15}{'SB3 to 475':>12}{'ratio':>7}{'final returns':>16}"
    print(header)
    for algo in args.algos:
        ours = run_gymkit(algo, args.seed, args.eval_every)
        theirs = run_sb3(algo, args.seed, args.eval_every)
        time_ratio = ("-" if ours.solved_at is None or theirs.solved_at is None
                      else f"{ours.solved_at / theirs.solved_at:.2f}")
        print(f"{algo:6}{ours.sps:16,.0f}{theirs.sps:13,.0f}{ours.sps / theirs.sps:7.2f}"
              f"{seconds(ours.solved_at):>15}{seconds(theirs.solved_at):>12}{time_ratio:>7}"
              f"{ours.final_return:>8.1f}/{theirs.final_return:.1f}")


if __name__ == "__main__":
    main()
