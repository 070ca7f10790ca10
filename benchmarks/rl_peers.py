"""gymkit's deep RL agents against the fastest peers: Stable-Baselines3 and sbx (SB3 in JAX).

Every side trains on CartPole-v1 with rl-baselines3-zoo's tuned settings: the ones in
envs/presets/cartpole.yaml, resolved by gymkit and handed to SB3 and sbx setting by setting
(a setting a peer has no switch for stops the benchmark, rather than being changed).
sbx has no A2C, and its DQN no gradient clipping (SB3's and gymkit's clip at 10): that is
sbx's algorithm as it ships. sbx is optional (`pip install -e '.[sbx]'`, or
`pip install sbx-rl`); without it the benchmark says so and runs the other two.

Two measurements:

**Training loops** (the default). One process, pinned to one core
(`os.sched_setaffinity`), one torch thread, XLA single-threaded (``XLA_FLAGS``,
``OMP_NUM_THREADS``, set before JAX is imported). The sides take turns, one evaluation
interval each, so that a change in the machine's load slows them alike; every
`--eval-every` steps each greedy policy plays the same 10 seeded episodes, off the clock.
Printed per algorithm and seed, for each side: env steps per second, the training time (and
steps) until an evaluation first reached 475, CartPole-v1's threshold, and the final
policy's mean return over 100 seeded episodes; then the ratios gymkit / SB3 and gymkit /
sbx. With several `--seeds`, the means over them (a side that never reached 475 on a seed
counts its whole training time). Compilation (gymkit's torch.compile, sbx's jit) happens
on the clock.

**Whole processes** (`--whole`): what a user waits for. `gymkit run agent cartpole --algo
X --seed S` with its defaults (start-up, training, the preset's periodic and final
evaluations, checkpoints) against a fresh Python process that imports SB3 (sbx), builds its
agent with the same settings and calls ``learn()`` on the same budget, nothing else. The
sides run in turn, the order rotating from seed to seed, unpinned (each with its defaults);
the wall time of each process is printed, and the mean ratios.

    python benchmarks/rl_peers.py [--algos dqn ppo a2c] [--seeds 0 ...] [--eval-every 5000]
                                  [--core 0] [--steps N] [--whole]
    (N: a shorter budget for a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whole_process import run_in_turn

ALGOS = ("dqn", "ppo", "a2c")
PEERS = ("SB3", "sbx")
THRESHOLD = 475.0
EVAL_EPISODES = 10
FINAL_EPISODES = 100
EVAL_SEED = 10_000
SBX_MISSING = "sbx is not installed: pip install -e '.[sbx]' (or pip install sbx-rl)"

#: An action for one observation; `first` is true on an episode's first step.
Act = Callable[[Any, bool], int]


def single_threaded(core: int) -> None:
    """This process on one core, torch and XLA on one thread each (before JAX loads)."""
    os.sched_setaffinity(0, {core})
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen"
                               "=false intra_op_parallelism_threads=1").strip()
    import torch

    torch.set_num_threads(1)


def sbx_available() -> bool:
    try:
        import sbx  # noqa: F401
    except ImportError:
        return False
    return True


# -- the peers' agents, from gymkit's resolved settings --------------------------------------


def require(cfg: Any, who: str, **expected: Any) -> None:
    """Settings of gymkit's config that a peer has no switch for must be the peer's way."""
    differ = [f"{key}={getattr(cfg, key)!r} (it has {value!r})"
              for key, value in expected.items() if getattr(cfg, key) != value]
    if differ:
        raise SystemExit(f"{who}: no equivalent for {', '.join(differ)}")


def peer_spec(algo: str, cfg: Any, seed: int, peer: str) -> dict[str, Any]:
    """What a peer needs to build `algo` as gymkit's resolved config `cfg` has it: plain
    data, so that a bare process (`--whole`) can build it without importing gymkit."""
    who = f"{peer} {algo}"
    if algo == "dqn":
        require(cfg, who, n_envs=1, optimizer="adam", loss="huber", double_q=False,
                dueling=False, exploration_schedule="linear", init="default", head_bias=True,
                encoder="auto", n_steps=1)
        if peer == "sbx":
            require(cfg, who, tau=1.0)
        settings = {key: getattr(cfg, key) for key in (
            "learning_rate", "batch_size", "buffer_size", "learning_starts", "gamma", "tau",
            "target_update_interval", "train_freq", "gradient_steps", "exploration_fraction",
            "exploration_initial_eps", "exploration_final_eps")}
        if peer == "SB3":
            settings["max_grad_norm"] = cfg.max_grad_norm
        return {"algo": algo, "peer": peer, "seed": seed, "n_envs": 1,
                "net_arch": list(cfg.hidden), "activation": cfg.activation,
                "settings": settings}
    require(cfg, who, shared_encoder=False, lstm=False, encoder="auto")
    if peer == "sbx":
        require(cfg, who, optimizer="adam", clip_range_vf=0.0)
    settings = {key: getattr(cfg, key) for key in (
        "n_steps", "gamma", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm",
        "normalize_advantage")}
    spec = {"algo": algo, "peer": peer, "seed": seed, "n_envs": cfg.n_envs,
            "net_arch": list(cfg.hidden), "activation": cfg.activation,
            "ortho_init": cfg.ortho_init, "optimizer": cfg.optimizer,
            "learning_rate": [cfg.learning_rate, cfg.lr_schedule], "settings": settings}
    if algo == "ppo":
        spec["clip_range"] = [cfg.clip_range, cfg.clip_range_schedule]
        settings.update(batch_size=cfg.batch_size, n_epochs=cfg.n_epochs,
                        target_kl=cfg.target_kl or None)
        if peer == "SB3":
            settings["clip_range_vf"] = cfg.clip_range_vf or None
    return spec


def schedule(value: float, kind: str) -> float | Callable[[float], float]:
    """gymkit's constant or linear (to 0 over the budget) schedule, as SB3 and sbx take it:
    a function of the fraction of the budget left, as rl-zoo's ``lin_`` schedules are."""
    if kind == "constant":
        return value
    return lambda progress_remaining: value * progress_remaining


def build(spec: dict[str, Any]) -> Any:
    """The peer's agent for `spec` (see `peer_spec`); imports only that peer."""
    algo, peer, settings = spec["algo"], spec["peer"], dict(spec["settings"])
    common = {"seed": spec["seed"], "verbose": 0, "device": "cpu"}
    lib: Any
    if peer == "SB3":
        import stable_baselines3
        from torch import nn
        lib = stable_baselines3
        activation: Any = {"tanh": nn.Tanh, "relu": nn.ReLU}[spec["activation"]]
    else:
        import sbx
        from flax import linen
        lib = sbx
        activation = {"tanh": linen.tanh, "relu": linen.relu}[spec["activation"]]
    if algo == "dqn":
        return lib.DQN("MlpPolicy", "CartPole-v1", **settings, **common,
                       policy_kwargs={"net_arch": spec["net_arch"],
                                      "activation_fn": activation})
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = make_vec_env("CartPole-v1", n_envs=spec["n_envs"], seed=spec["seed"],
                       vec_env_cls=DummyVecEnv)
    policy_kwargs: dict[str, Any] = {
        "net_arch": {"pi": spec["net_arch"], "vf": spec["net_arch"]},
        "activation_fn": activation, "ortho_init": spec["ortho_init"]}
    settings["learning_rate"] = schedule(*spec["learning_rate"])
    if algo == "a2c":
        # gymkit's RMSprop is SB3's (alpha 0.99, eps 1e-5); its Adam has eps 1e-5, as SB3's
        # actor-critic policies' Adam.
        return lib.A2C("MlpPolicy", env, use_rms_prop=spec["optimizer"] == "rmsprop",
                       rms_prop_eps=1e-5, policy_kwargs=policy_kwargs, **settings, **common)
    if spec["optimizer"] == "rmsprop":  # SB3 only (peer_spec)
        import torch

        policy_kwargs.update(optimizer_class=torch.optim.RMSprop,
                             optimizer_kwargs={"alpha": 0.99, "eps": 1e-5})
    return lib.PPO("MlpPolicy", env, clip_range=schedule(*spec["clip_range"]),
                   policy_kwargs=policy_kwargs, **settings, **common)


def peers_of(algo: str) -> list[str]:
    return [peer for peer in PEERS if not (peer == "sbx" and (algo == "a2c"
                                                             or not sbx_available()))]


# -- training loops, side by side -------------------------------------------------------------


@dataclass
class Result:
    steps: int
    train_seconds: float
    solved_at: float | None  # training seconds when an evaluation first reached THRESHOLD
    solved_step: int | None  # env steps at that evaluation
    final_return: float  # over FINAL_EPISODES

    @property
    def sps(self) -> float:
        return self.steps / self.train_seconds

    @property
    def time_to_solve(self) -> float:
        """The training time to THRESHOLD, or the whole training time where never."""
        return self.train_seconds if self.solved_at is None else self.solved_at


def greedy_return(act: Act, episodes: int) -> float:
    """Mean return of `act` over `episodes` seeded CartPole episodes."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    total = 0.0
    for k in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED + k)
        done, first = False, True
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs, first))
            total += float(reward)
            done, first = terminated or truncated, False
    env.close()
    return total / episodes


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
        self.final = float("nan")

    def due(self, steps: int) -> bool:
        return steps >= self.next_eval

    def stop(self, steps: int) -> None:
        self.trained += time.perf_counter() - self.started
        self.steps = steps

    def evaluate(self, act: Act) -> None:
        """Off the clock: evaluate, and note when the threshold was first reached."""
        if self.solved_at is None and greedy_return(act, EVAL_EPISODES) >= THRESHOLD:
            self.solved_at, self.solved_step = self.trained, self.steps
        while self.next_eval <= self.steps:
            self.next_eval += self.eval_every

    def finish(self, act: Act) -> None:
        self.final = greedy_return(act, FINAL_EPISODES)

    def start(self) -> None:
        self.started = time.perf_counter()

    def result(self) -> Result:
        return Result(self.steps, self.trained, self.solved_at, self.solved_step, self.final)


def prepare_gymkit(algo: str, seed: int, eval_every: int, steps: int | None) -> Any:
    from toolkit import launch

    flags: dict[str, Any] = {"seed": seed}
    if steps is not None:
        flags["steps"] = steps
    # DQN's train_step runs steps_per_call env steps: one evaluation interval.
    assignments = [f"steps_per_call={eval_every}"] if algo == "dqn" else []
    return launch.prepare("agent", "cartpole", algo, flags=flags, assignments=assignments)


def gymkit_turns(prepared: Any, clock: Clock) -> Iterator[None]:
    """Trains gymkit's agent; yields after each evaluation, so that the sides take turns."""
    import numpy as np

    agent = prepared.trainer
    policy = agent.policy(deterministic=True)

    def act(obs: Any, first: bool) -> int:
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
        clock.finish(act)
    finally:
        agent.close()


class PeerTurns:
    """Trains a peer's agent (SB3's or sbx's: both run SB3's learn loop) in a thread of its
    own that runs only while `turn` waits on it: from one evaluation to the next."""

    def __init__(self, model: Any, algo: str, steps: int, clock: Clock) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        self.model, self.clock, self.steps = model, clock, steps
        self.done = False
        self.error: BaseException | None = None
        self._go, self._back = threading.Semaphore(0), threading.Semaphore(0)
        turns = self

        def act(obs: Any, first: bool) -> int:
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
            self.clock.finish(self._act)
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
        """Let the peer train until its next evaluation (or the end)."""
        self._go.release()
        self._back.acquire()
        if self.error is not None:
            raise self.error


def side_by_side(algo: str, seed: int, eval_every: int, steps: int | None
                 ) -> dict[str, Result]:
    prepared = prepare_gymkit(algo, seed, eval_every, steps)
    budget = int(prepared.settings.steps)
    clocks = {side: Clock(eval_every) for side in ("gymkit", *peers_of(algo))}
    peers = [PeerTurns(build(peer_spec(algo, prepared.trainer.cfg, seed, peer)), algo, budget,
                       clocks[peer]) for peer in peers_of(algo)]
    ours = gymkit_turns(prepared, clocks["gymkit"])
    ours_done = False
    while not (ours_done and all(peer.done for peer in peers)):
        if not ours_done:
            ours_done = next(ours, StopIteration) is StopIteration
        for peer in peers:
            if not peer.done:
                peer.turn()
    return {side: clock.result() for side, clock in clocks.items()}


def reached(result: Result) -> str:
    if result.solved_at is None:
        return "never"
    return f"{result.solved_at:.1f} s ({result.solved_step:,} steps)"


def ratio_rows(first_column: Callable[[str], str], ours: tuple[float, float],
               theirs: dict[str, tuple[float, float]], width: int) -> list[str]:
    """`gymkit/PEER` rows: the ratios of steps/s and of the time to 475."""
    return [f"  {first_column('gymkit/' + peer):{width}}{ours[0] / sps:>10.2f}"
            f"{ours[1] / solve:>26.2f}" for peer, (sps, solve) in theirs.items()]


def table(algo: str, results: dict[str, Result]) -> str:
    rows = [f"{algo}{'steps':>16}{'train time':>12}{'steps/s':>10}{'to 475':>26}"
            f"{'final return':>14}"]
    for name, r in results.items():
        rows.append(f"  {name:11}{r.steps:>8,}{r.train_seconds:>10.1f} s{r.sps:>10,.0f}"
                    f"{reached(r):>26}{r.final_return:>14.1f}")
    ours = results["gymkit"]
    theirs = {name: (r.sps, r.time_to_solve) for name, r in results.items() if name != "gymkit"}
    rows += ratio_rows(str, (ours.sps, ours.time_to_solve), theirs, 31)
    return "\n".join(rows)


def summary(algo: str, results: list[dict[str, Result]]) -> str:
    """Means over the seeds: steps/s, time to 475 (the whole training time where a side
    never reached it), final return."""
    title = f"{algo}, mean over {len(results)} seeds"
    rows = [f"{title:25}{'steps/s':>8}{'to 475':>12}{'never reached':>16}"
            f"{'final return':>14}"]
    means: dict[str, tuple[float, float]] = {}
    for name in results[0]:
        runs = [seed_results[name] for seed_results in results]
        sps = sum(r.sps for r in runs) / len(runs)
        solve = sum(r.time_to_solve for r in runs) / len(runs)
        never = sum(r.solved_at is None for r in runs)
        final = sum(r.final_return for r in runs) / len(runs)
        means[name] = (sps, solve)
        rows.append(f"  {name:23}{sps:>8,.0f}{solve:>10.1f} s{never:>16}{final:>14.1f}")
    ours = means.pop("gymkit")
    rows += [f"  {'gymkit/' + peer:23}{ours[0] / sps:>8.2f}{ours[1] / solve:>12.2f}"
             for peer, (sps, solve) in means.items()]
    return "\n".join(rows)


def training_loops(args: argparse.Namespace) -> None:
    single_threaded(args.core)
    print(f"CartPole-v1, rl-zoo hyperparameters, seeds {args.seeds}; one process on core "
          f"{args.core}, one thread per side; evaluation every {args.eval_every} steps on "
          f"{EVAL_EPISODES} episodes and a final one on {FINAL_EPISODES}, off the clock; "
          "ratio: gymkit / peer (steps/s: higher is faster; time to 475: lower is)")
    if not sbx_available():
        print(SBX_MISSING)
    for algo in args.algos:
        results = []
        for seed in args.seeds:
            results.append(side_by_side(algo, seed, args.eval_every, args.steps))
            print()
            print(f"seed {seed}: " + table(algo, results[-1]), flush=True)
        if len(results) > 1:
            print()
            print(summary(algo, results), flush=True)


# -- whole processes ---------------------------------------------------------------------------


def bare_learn(spec_json: str, steps: int) -> None:
    """The peer's whole program: build the agent and learn, nothing else (`--bare`)."""
    build(json.loads(spec_json)).learn(total_timesteps=steps)


def whole_commands(algo: str, seed: int, steps: int | None, runs_dir: str
                   ) -> dict[str, list[str]]:
    """Each side's command line for `algo` and `seed` on the same budget."""
    prepared = prepare_gymkit(algo, seed, 5000, steps)
    budget = int(prepared.settings.steps)
    cfg = prepared.trainer.cfg
    prepared.trainer.close()
    gymkit = [str(Path(sys.executable).with_name("gymkit")), "run", "agent", "cartpole",
              "--algo", algo, "--seed", str(seed), "--runs-dir", runs_dir, "-q"]
    if steps is not None:
        gymkit += ["--steps", str(steps)]
    commands = {"gymkit": gymkit}
    for peer in peers_of(algo):
        commands[peer] = [sys.executable, __file__, "--bare",
                          json.dumps(peer_spec(algo, cfg, seed, peer)), "--steps", str(budget)]
    return commands


def whole_processes(args: argparse.Namespace) -> None:
    print(f"CartPole-v1, rl-zoo hyperparameters, seeds {args.seeds}: wall time of each whole "
          "process, unpinned, with its defaults; gymkit: `gymkit run agent cartpole --algo X` "
          "(training, the preset's evaluations, checkpoints); a peer: a fresh process that "
          "builds its agent and calls learn(); ratio: gymkit / peer (lower is faster)")
    if not sbx_available():
        print(SBX_MISSING)
    with tempfile.TemporaryDirectory() as runs_dir:
        for algo in args.algos:
            walls: dict[str, list[float]] = {}
            for k, seed in enumerate(args.seeds):
                commands = whole_commands(algo, seed, args.steps, runs_dir)
                for name, wall in run_in_turn(commands, k).items():
                    walls.setdefault(name, []).append(wall)
            print()
            print(f"{algo}{'':26}" + "".join(f"{f'seed {s}':>9}" for s in args.seeds)
                  + f"{'mean':>9}")
            means = {name: sum(w) / len(w) for name, w in walls.items()}
            for name, w in walls.items():
                print(f"  {name:28}" + "".join(f"{t:>7.1f} s" for t in w)
                      + f"{means[name]:>7.1f} s")
            for peer in list(walls)[1:]:
                print(f"  {'gymkit/' + peer:28}"
                      + "".join(f"{a / b:>9.2f}" for a, b in zip(walls["gymkit"], walls[peer],
                                                                 strict=True))
                      + f"{means['gymkit'] / means[peer]:>9.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--core", type=int, default=0, help="the core of the training loops")
    parser.add_argument("--steps", type=int, default=None,
                        help="budget of every algorithm instead of the preset's (smoke runs)")
    parser.add_argument("--whole", action="store_true",
                        help="time whole processes as a user runs them (see above)")
    parser.add_argument("--bare", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare is not None:
        bare_learn(args.bare, args.steps)
    elif args.whole:
        whole_processes(args)
    else:
        training_loops(args)


if __name__ == "__main__":
    main()
