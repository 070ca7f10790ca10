"""gymkit's agents on pixel observations: frames per second and return after a fixed budget.

Each run trains one agent from its env preset's settings (the named `--preset` where given)
for a fixed number of env steps, on one device, in this process, then evaluates the greedy
policy on `--episodes` seeded episodes; a uniformly random policy plays the same episodes.
Training time excludes the evaluation. Frames count emulator frames: an Atari step of the
`pong` preset is 4 frames (AtariPreprocessing's frame_skip), a MinAtar step is 1.

    python benchmarks/pixels.py [--device auto|cpu|cuda] [--episodes 10]
                                [--runs ENV:ALGO:STEPS[:PRESET] ...] [--set KEY=VALUE ...]

e.g. `--runs minatar-breakout:dqn:100000:cpu pong:ppo:400000`. `--set` applies to every
run (e.g. `--set n_envs=16`). The budget is shorter than the presets' (MinAtar's 5M, Atari's
10M steps): these figures measure speed and early learning, not final scores.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, this folder comes first on sys.path, where benchmarks/generative.py would
# shadow the `generative` package that gymkit loads its trainers from.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from toolkit import launch  # noqa: E402
from toolkit.environments import resolve_env  # noqa: E402
from toolkit.evaluation import evaluate_policy  # noqa: E402
from toolkit.policy import FunctionPolicy  # noqa: E402

DEFAULT_RUNS = ["minatar-breakout:dqn:100000:cpu", "minatar-breakout:ppo:200000",
                "pong:dqn:200000", "pong:ppo:400000"]
#: Emulator frames per env step, for the presets that skip frames.
FRAMES_PER_STEP = {"pong": 4}
EVAL_SEED = 20_000
#: PPO on MinAtar has no tuned settings in its preset: a small-CNN version of rl-zoo's
#: Atari PPO (8 envs of 128 steps, 4 epochs, clip 0.1, entropy 0.01).
PPO_MINATAR = ["n_envs=8", "n_steps=128", "n_epochs=4", "batch_size=256",
               "learning_rate=2.5e-4", "clip_range=0.1", "ent_coef=0.01", "encoder=cnn",
               "shared_encoder=true"]


@dataclass
class Row:
    run: str
    device: str
    steps: int
    seconds: float
    frames_per_step: int
    mean_return: float
    ci95: float
    random_return: float

    @property
    def fps(self) -> float:
        return self.steps * self.frames_per_step / self.seconds


def parse_run(text: str) -> tuple[str, str, int, str | None]:
    parts = text.split(":")
    if len(parts) not in (3, 4) or not parts[2].isdigit():
        raise SystemExit(f"--runs wants ENV:ALGO:STEPS[:PRESET], got '{text}'")
    return parts[0], parts[1], int(parts[2]), parts[3] if len(parts) == 4 else None


def random_return(env: str, episodes: int) -> float:
    source, _ = resolve_env(env)
    n = int(source.make().action_space.n)
    rng = np.random.default_rng(0)
    policy = FunctionPolicy(lambda obs: rng.integers(n, size=len(obs)))
    return evaluate_policy(policy, source, episodes, seed=EVAL_SEED).metrics()["eval/mean_return"]


def bench(text: str, device: str, episodes: int, extra: list[str]) -> Row:
    env, algo, steps, preset = parse_run(text)
    assignments = [*(PPO_MINATAR if algo == "ppo" and env.startswith("minatar") else []),
                   *extra]
    prepared = launch.prepare("agent", env, algo, hyperparams=preset, assignments=assignments,
                              flags={"seed": 0, "steps": steps, "device": device})
    agent = prepared.trainer
    try:
        start = time.perf_counter()
        while agent.budget_left() > 0:
            agent.train_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        metrics = agent.evaluate(episodes, EVAL_SEED)
        used = str(agent.ctx.device)
    finally:
        agent.close()
    return Row(text, used, agent.progress()["steps"], seconds, FRAMES_PER_STEP.get(env, 1),
               metrics["eval/mean_return"], metrics.get("eval/return_ci95", float("nan")),
               random_return(env, episodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"seed 0, --device {args.device} ({gpu}), torch {torch.__version__}; greedy return "
          f"over {args.episodes} episodes (seeds {EVAL_SEED}...), random policy alike",
          flush=True)
    print(f"{'run':36}{'device':>8}{'steps':>10}{'train':>9}{'steps/s':>10}{'frames/s':>10}"
          f"{'return':>16}{'random':>9}", flush=True)
    for text in args.runs:
        row = bench(text, args.device, args.episodes, args.sets)
        ret = f"{row.mean_return:.2f} ± {row.ci95:.2f}"
        print(f"{row.run:36}{row.device:>8}{row.steps:>10,}{row.seconds:>8.0f}s"
              f"{row.steps / row.seconds:>10,.0f}{row.fps:>10,.0f}{ret:>16}"
              f"{row.random_return:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
