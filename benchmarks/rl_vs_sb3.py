"""gymkit's deep RL agents against Stable-Baselines3's, with the same hyperparameters.

Both train on CartPole-v1 with rl-baselines3-zoo's tuned settings (the ones in
envs/presets/cartpole.yaml, resolved by gymkit and handed to SB3 setting by setting),
one torch thread, on the CPU, in this process. The two trainings take turns, one
evaluation interval each, so that a change in the machine's load (other jobs on a
shared CPU) slows both alike. At every `--eval-every` steps each greedy policy is
evaluated on the same 10 seeded episodes; the clock stops meanwhile, so that steps/s
and the time to solve count training only.

Printed per algorithm: env steps per second of each, their ratio, and the training time
(and env steps) until the evaluation return first reached 475, CartPole-v1's reward
threshold.

Each side runs its own training loop to the budget. Both DQNs stop at exactly the
budget; SB3's PPO collects whole rollouts, so it may take a few steps more than gymkit's,
which shortens its last rollout (steps/s counts each side's own steps). gymkit evaluates
after the train_step that reaches an evaluation step; SB3's on-policy agents at the start
of the next rollout (after the update, as gymkit), SB3's DQN at that env step (DQN trains
every 256 steps, never at a multiple of 5000).

With several `--seeds`, each seed gets its table, and a summary per algorithm gives the
ratio of the mean steps/s and of the mean time to 475 over the seeds (the time to solve
varies more from seed to seed than between the two implementations, which run the same
algorithm; a seed on which a side never reaches 475 counts its whole training time).

    python benchmarks/rl_vs_sb3.py [--algos dqn ppo a2c] [--seeds 0 ...] [--eval-every 5000]
                                   [--steps N]  (N: a shorter budget for a smoke run)
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from toolkit import launch

ALGOS = ("dqn", "ppo", "a2c")
THRESHOLD = 475.0
EVAL_EPISODES = 10
EVAL_SEED = 10_000

#: An action for one observation; `first` is true on an episode's first step.
Act = Callable[[np.ndarray, bool], int]


@dataclass
class Result:
    steps: int
    train_seconds: float
    solved_at: float | None  # training seconds when the evaluation first reached THRESHOLD
    solved_step: int | None  # env steps at that evaluation
    final_return: float

    @property
    def sps(self) -> float:
        return self.steps / self.train_seconds


def greedy_return(act: Act) -> float:
    """Mean return of `act` over EVAL_EPISODES seeded CartPole episodes."""
    env = gym.make("CartPole-v1")
    total = 0.0
    for k in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + k)
        done, first = False, True
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs, first))
            total += float(reward)
            done, first = terminated or truncated, False
    env.close()
    return total / EVAL_EPISODES


class Clock:
    """Training time between evaluations, and the evaluations' results."""

    def __init__(self, eval_every: int) -> None:
        self.eval_every = eval_every
        self.next_eval = eval_every
        self.trained = 0.0
        self.started = time.perf_counter()
        self.steps = 0
        self.solved_at: float | None = None
        self.solved_step: int | None = None
        self.last = 0.0

    def due(self, steps: int) -> bool:
        return steps >= self.next_eval

    def stop(self, steps: int) -> None:
        self.trained += time.perf_counter() - self.started
        self.steps = steps

    def evaluate(self, act: Act) -> None:
        """Off the clock: evaluate, and note when the threshold was first reached."""
        self.last = greedy_return(act)
        if self.solved_at is None and self.last >= THRESHOLD:
            self.solved_at, self.solved_step = self.trained, self.steps
        while self.next_eval <= self.steps:
            self.next_eval += self.eval_every

    def start(self) -> None:
        self.started = time.perf_counter()

    def result(self) -> Result:
        return Result(self.steps, self.trained, self.solved_at, self.solved_step, self.last)


def prepare_gymkit(algo: str, seed: int, eval_every: int, steps: int | None) -> Any:
    flags: dict[str, Any] = {"seed": seed}
    if steps is not None:
        flags["steps"] = steps
    # DQN's train_step runs steps_per_call env steps: one evaluation interval.
    assignments = [f"steps_per_call={eval_every}"] if algo == "dqn" else []
    return launch.prepare("agent", "cartpole", algo, flags=flags, assignments=assignments)


def gymkit_turns(prepared: Any, clock: Clock) -> Iterator[None]:
    """Trains gymkit's agent; yields after each evaluation, so the caller can take turns."""
    agent = prepared.trainer
    policy = agent.policy(deterministic=True)

    def act(obs: np.ndarray, first: bool) -> int:
        if first:
            policy.reset(1)
        return int(policy.act(obs[None], np.array([first]))[0])

    try:
        clock.start()
        while agent.budget_left() > 0:
            agent.train_step()
            steps = agent.progress()["steps"]
            if clock.due(steps) or agent.budget_left() == 0:
                clock.stop(steps)
                clock.evaluate(act)
                yield
                clock.start()
    finally:
        agent.close()


def schedule(value: float, kind: str) -> float | Callable[[float], float]:
    """gymkit's constant or linear (to 0 over the budget) schedule, as SB3 takes it: a
    function of the fraction of the budget left, as rl-zoo's ``lin_`` schedules are."""
    if kind == "constant":
        return value
    return lambda progress_remaining: value * progress_remaining


def require(cfg: Any, algo: str, **expected: Any) -> None:
    """Settings of gymkit's config that SB3's agent has no switch for must be SB3's way."""
    differ = [f"{key}={getattr(cfg, key)!r} (SB3 has {value!r})"
              for key, value in expected.items() if getattr(cfg, key) != value]
    if differ:
        raise SystemExit(f"{algo}: no SB3 equivalent for {', '.join(differ)}")


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def sb3_model(algo: str, cfg: Any, seed: int) -> Any:
    """SB3's agent with the settings of gymkit's resolved config `cfg`, field by field."""
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    activation = ACTIVATIONS[cfg.activation]
    if algo == "dqn":
        require(cfg, algo, n_envs=1, optimizer="adam", loss="huber", double_q=False,
                dueling=False, exploration_schedule="linear", init="default",
                head_bias=True, encoder="auto")
        return DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0,
                   learning_rate=cfg.learning_rate, batch_size=cfg.batch_size,
                   buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
                   gamma=cfg.gamma, tau=cfg.tau,
                   target_update_interval=cfg.target_update_interval,
                   train_freq=cfg.train_freq, gradient_steps=cfg.gradient_steps,
                   exploration_fraction=cfg.exploration_fraction,
                   exploration_initial_eps=cfg.exploration_initial_eps,
                   exploration_final_eps=cfg.exploration_final_eps,
                   max_grad_norm=cfg.max_grad_norm,
                   policy_kwargs={"net_arch": list(cfg.hidden), "activation_fn": activation})
    require(cfg, algo, shared_encoder=False, lstm=False, encoder="auto")
    env = make_vec_env("CartPole-v1", n_envs=cfg.n_envs, seed=seed, vec_env_cls=DummyVecEnv)
    policy_kwargs = {"net_arch": {"pi": list(cfg.hidden), "vf": list(cfg.hidden)},
                     "activation_fn": activation, "ortho_init": cfg.ortho_init}
    common = {"n_steps": cfg.n_steps, "gamma": cfg.gamma, "gae_lambda": cfg.gae_lambda,
              "ent_coef": cfg.ent_coef, "vf_coef": cfg.vf_coef,
              "max_grad_norm": cfg.max_grad_norm,
              "normalize_advantage": cfg.normalize_advantage,
              "learning_rate": schedule(cfg.learning_rate, cfg.lr_schedule),
              "seed": seed, "device": "cpu", "verbose": 0}
    if algo == "a2c":
        # gymkit's RMSprop is SB3's (alpha 0.99, eps 1e-5); its Adam has eps 1e-5, as SB3's
        # actor-critic policies' Adam.
        return A2C("MlpPolicy", env, use_rms_prop=cfg.optimizer == "rmsprop",
                   rms_prop_eps=1e-5, policy_kwargs=policy_kwargs, **common)
    if algo == "ppo":
        if cfg.optimizer == "rmsprop":
            policy_kwargs.update(optimizer_class=torch.optim.RMSprop,
                                 optimizer_kwargs={"alpha": 0.99, "eps": 1e-5})
        return PPO("MlpPolicy", env, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                   clip_range=schedule(cfg.clip_range, cfg.clip_range_schedule),
                   clip_range_vf=cfg.clip_range_vf or None, target_kl=cfg.target_kl or None,
                   policy_kwargs=policy_kwargs, **common)
    raise SystemExit(f"no SB3 counterpart wired for {algo}")


class SB3Turns:
    """Trains SB3's agent in a thread of its own that runs only while `turn` waits on it:
    from one evaluation to the next. (SB3's learn() is one call; a callback hands over.)"""

    def __init__(self, model: Any, algo: str, steps: int, clock: Clock) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        self.model, self.clock, self.steps = model, clock, steps
        self.done = False
        self.error: BaseException | None = None
        self._go, self._back = threading.Semaphore(0), threading.Semaphore(0)
        turns = self

        def act(obs: np.ndarray, first: bool) -> int:
            return int(model.predict(obs, deterministic=True)[0])

        class Handover(BaseCallback):
            def _on_training_start(self) -> None:
                clock.start()

            def _on_step(self) -> bool:
                # DQN: evaluate at the env step, and stop at the budget (its learn loop
                # would finish a train_freq window and train once more).
                done = model.num_timesteps
                if algo == "dqn" and clock.due(done):
                    turns._pause(done, act)
                return not (algo == "dqn" and done >= steps)

            def _on_rollout_start(self) -> None:
                # On-policy: after the update of the rollout that reached the step.
                if algo != "dqn" and clock.due(model.num_timesteps):
                    turns._pause(model.num_timesteps, act)

        self._callback = Handover()
        self._act = act
        self._thread = threading.Thread(target=self._learn, daemon=True)
        self._thread.start()

    def _learn(self) -> None:
        self._go.acquire()
        try:
            self.model.learn(total_timesteps=self.steps, callback=self._callback)
            if self.clock.steps != self.model.num_timesteps:  # the end, after an update
                self.clock.stop(self.model.num_timesteps)
                self.clock.evaluate(self._act)
        except BaseException as exc:  # handed to the main thread
            self.error = exc
        self.done = True
        self._back.release()

    def _pause(self, num_timesteps: int, act: Act) -> None:
        self.clock.stop(num_timesteps)
        self.clock.evaluate(act)
        self._back.release()
        self._go.acquire()
        self.clock.start()

    def turn(self) -> None:
        """Let SB3 train until its next evaluation (or the end)."""
        self._go.release()
        self._back.acquire()
        if self.error is not None:
            raise self.error


def side_by_side(algo: str, seed: int, eval_every: int,
                 steps: int | None) -> tuple[Result, Result]:
    prepared = prepare_gymkit(algo, seed, eval_every, steps)
    budget = int(prepared.settings.steps)
    ours_clock, theirs_clock = Clock(eval_every), Clock(eval_every)
    theirs = SB3Turns(sb3_model(algo, prepared.trainer.cfg, seed), algo, budget, theirs_clock)
    ours = gymkit_turns(prepared, ours_clock)
    ours_done = False
    while not (ours_done and theirs.done):
        if not ours_done:
            ours_done = next(ours, StopIteration) is StopIteration
        if not theirs.done:
            theirs.turn()
    return ours_clock.result(), theirs_clock.result()


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def reached(result: Result) -> str:
    if result.solved_at is None:
        return "never"
    return f"{result.solved_at:.1f} s ({result.solved_step:,} steps)"


def table(algo: str, ours: Result, theirs: Result) -> str:
    time_ratio = ("-" if ours.solved_at is None or theirs.solved_at is None
                  else f"{ours.solved_at / theirs.solved_at:.2f}")
    rows = [f"{algo}{'steps':>12}{'train time':>12}{'steps/s':>10}{'to 475':>26}"
            f"{'final return':>14}"]
    for name, r in (("gymkit", ours), ("SB3", theirs)):
        rows.append(f"  {name:7}{r.steps:>8,}{r.train_seconds:>10.1f} s{r.sps:>10,.0f}"
                    f"{reached(r):>26}{r.final_return:>14.1f}")
    rows.append(f"  {'ratio':7}{'':>20}{ours.sps / theirs.sps:>10.2f}{time_ratio:>26}")
    return "\n".join(rows)


def summary(algo: str, results: list[tuple[Result, Result]]) -> str:
    """Means over the seeds: steps/s, and the time to 475 (the whole training time where a
    side never reached it)."""
    rows = [f"{algo}, mean over {len(results)} seeds{'steps/s':>12}{'to 475':>12}"
            f"{'never reached':>16}"]
    means = []
    for name, side in (("gymkit", 0), ("SB3", 1)):
        runs = [pair[side] for pair in results]
        sps = float(np.mean([r.sps for r in runs]))
        solve = float(np.mean([r.train_seconds if r.solved_at is None else r.solved_at
                               for r in runs]))
        never = sum(r.solved_at is None for r in runs)
        means.append((sps, solve))
        rows.append(f"  {name:23}{sps:>12,.0f}{solve:>10.1f} s{never:>16}")
    rows.append(f"  {'ratio':23}{means[0][0] / means[1][0]:>12.2f}"
                f"{means[0][1] / means[1][1]:>12.2f}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--steps", type=int, default=None,
                        help="budget of every algorithm instead of the preset's (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CartPole-v1, rl-zoo hyperparameters, seeds {args.seeds}, 1 torch thread, CPU; "
          f"evaluation every {args.eval_every} steps on {EVAL_EPISODES} episodes, off the "
          "clock; ratio: gymkit / SB3 (steps/s: higher is faster; time to 475: lower is)")
    for algo in args.algos:
        results = []
        for seed in args.seeds:
            ours, theirs = side_by_side(algo, seed, args.eval_every, args.steps)
            results.append((ours, theirs))
            print()
            print(f"seed {seed}: " + table(algo, ours, theirs), flush=True)
        if len(results) > 1:
            print()
            print(summary(algo, results), flush=True)


if __name__ == "__main__":
    main()
