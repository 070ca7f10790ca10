"""gymkit's Q-learning training loop against a bare random-action loop on FrozenLake.

Both step the same env (FrozenLake-v1 4x4, slippery) for the same number of
steps, alternating over several rounds so that machine noise hits both; the
ratio of their median steps/s is what gymkit costs on top of the env.

    python benchmarks/tabular.py [--steps 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import gymnasium as gym

from toolkit import launch


def bare_loop(steps: int, seed: int) -> float:
    """Steps/s of random actions with resets: the env's own speed."""
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def gymkit_training(steps: int, seed: int, runs_dir: str) -> float:
    """Steps/s of `gymkit run agent frozenlake`'s loop: learning, TensorBoard, metrics.jsonl,
    checkpoints. Periodic evaluation is pushed past the budget; it is not training."""
    prepared = launch.prepare("agent", "frozenlake", flags={"seed": seed, "steps": steps},
                              assignments=[f"eval_every={steps * 10}", "final_eval_episodes=1"])
    runner = launch.start(prepared, runs_dir, quiet=True)
    start = time.perf_counter()
    result = runner.run()
    elapsed = time.perf_counter() - start
    runner.trainer.close()
    return result.summary["progress"]["steps"] / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as runs_dir:
        for seed in range(args.rounds):
            bare.append(bare_loop(args.steps, seed))
            ours.append(gymkit_training(args.steps, seed, runs_dir))
    bare_sps, ours_sps = statistics.median(bare), statistics.median(ours)
    print(f"FrozenLake-v1 4x4 slippery, {args.steps:,} steps x {args.rounds} rounds (medians)")
    print(f"bare random-action loop     {bare_sps:>10,.0f} steps/s")
    print(f"gymkit Q-learning training  {ours_sps:>10,.0f} steps/s")
    print(f"ratio                       {ours_sps / bare_sps:>10.2f}  (goal: >= 0.70)")


if __name__ == "__main__":
    main()
