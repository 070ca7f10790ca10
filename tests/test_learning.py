"""Learning tests: the default `gymkit run agent ENV` reaches a stated score.

Each runs the env's preset exactly as the CLI does (seed aside) and reads the
final 1,000-episode evaluation from summary.json.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from toolkit import launch
from toolkit.environments import resolve_env
from toolkit.evaluation import evaluate_policy
from toolkit.policy import FunctionPolicy
from toolkit.runner import FINAL_EVAL_SEED

pytestmark = pytest.mark.slow


def run_default(env: str, seed: int, runs_dir: Path, algo: str | None = None, *,
                final_only: bool = False, hyperparams: str | None = None) -> dict[str, Any]:
    """`final_only` skips the periodic evaluations (they can cost more than the training of
    an on-policy agent); the final evaluation of the last policy is the result."""
    assignments = ["eval_every=1000000000"] if final_only else []
    prepared = launch.prepare("agent", env, algo, flags={"seed": seed},
                              assignments=assignments, hyperparams=hyperparams)
    runner = launch.start(prepared, runs_dir, quiet=True)
    try:
        return runner.run().summary
    finally:
        runner.trainer.close()


# The optima below are pinned in tests/test_units.py (test_optima_of_the_registered_envs):
# value iteration on each env's own transition table, under its registered time limit.


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frozenlake_reaches_gymnasium_threshold(seed: int, tmp_path: Path) -> None:
    # FrozenLake-v1 (4x4, slippery, 100-step limit): the best policy succeeds 0.7442 of the
    # time, so gymnasium's threshold of 0.70 is within reach.
    threshold = gym.spec("FrozenLake-v1").reward_threshold
    assert threshold == 0.70
    summary = run_default("frozenlake", seed, tmp_path)
    assert summary["optimum_horizon"] == 100
    assert summary["optimal_success_rate"] == pytest.approx(0.7442, abs=1e-4)
    assert summary["final_eval"]["eval/episodes"] == 1000
    assert summary["final_eval"]["eval/success_rate"] >= threshold


def test_frozenlake8x8_reaches_gymnasium_threshold(tmp_path: Path) -> None:
    # FrozenLake8x8-v1 (slippery, 200-step limit): the best policy succeeds 0.9132 of the
    # time, so gymnasium's threshold of 0.85 is within reach. Seeds 1 and 2 are in the README.
    threshold = gym.spec("FrozenLake8x8-v1").reward_threshold
    assert threshold == 0.85
    summary = run_default("frozenlake8x8", 0, tmp_path)
    assert summary["optimum_horizon"] == 200
    assert summary["optimal_success_rate"] == pytest.approx(0.9132, abs=1e-4)
    assert summary["final_eval"]["eval/episodes"] == 1000
    assert summary["final_eval"]["eval/success_rate"] >= threshold


def test_taxi_within_5_percent_of_optimum(tmp_path: Path) -> None:
    # gymnasium's threshold for Taxi-v4 is a mean return of 8, above the optimum: the best
    # expected return under the 200-step limit is 7.93 (over the env's random start states),
    # so a 1,000-episode mean reaches 8 only by luck. The bar is 95% of the optimum, and
    # every episode must deliver the passenger.
    threshold = gym.spec("Taxi-v4").reward_threshold
    assert threshold == 8
    summary = run_default("taxi", 0, tmp_path)
    assert summary["optimum_horizon"] == 200
    optimum = summary["optimal_mean_return"]
    assert optimum == pytest.approx(7.93, abs=1e-4)
    assert optimum < threshold
    assert summary["final_eval"]["eval/episodes"] == 1000
    assert summary["final_eval"]["eval/mean_return"] >= 0.95 * optimum
    assert summary["final_eval"]["eval/success_rate"] == 1.0


def test_cliffwalking_finds_the_optimal_path(tmp_path: Path) -> None:
    # Deterministic dynamics: the greedy policy must take the 13-step path along the cliff.
    summary = run_default("cliffwalking", 0, tmp_path)
    assert summary["optimal_mean_return"] == -13.0
    assert summary["final_eval"]["eval/mean_return"] == -13.0


def test_benchmark_prints_both_speeds_and_their_ratio(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "tabular.py"),
                          "--steps", "5000", "--rounds", "1"],
                         capture_output=True, text=True, check=True).stdout
    lines = {line.split("  ")[0]: line.split() for line in out.splitlines()}
    ratio = float(lines["ratio"][1])
    bare = float(lines["bare random-action loop"][-2].replace(",", ""))
    ours = float(lines["gymkit Q-learning training"][-2].replace(",", ""))
    assert ratio == pytest.approx(ours / bare, abs=0.01)


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _quotient_of_rounded(quotient: float, a: float, b: float, half: float) -> bool:
    """Whether `quotient` (printed to 2 decimals) can be a / b for the values that `a` and
    `b` were rounded from (to within `half`)."""
    low, high = (a - half) / (b + half), (a + half) / max(b - half, 1e-9)
    return low - 0.005 <= quotient <= high + 0.005


def test_rl_benchmark_prints_each_algorithm_against_its_peers() -> None:
    """Two seeds of a short budget: a table per algorithm and seed, the means over the seeds,
    and ratios that are the quotients of the printed figures. sbx is a side of DQN and PPO
    where it is installed (CI does not install it; it has no A2C)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "rl_peers.py"),
                          "--steps", "2000", "--eval-every", "1000", "--seeds", "0", "1"],
                         capture_output=True, text=True, check=True).stdout
    with_sbx = "sbx is not installed" not in out
    tables = out.split("\n\n")[1:]
    assert [" ".join(table.split()[:3]) for table in tables] == [
        title for algo in ("dqn", "ppo", "a2c")
        for title in (f"seed 0: {algo}", f"seed 1: {algo}", f"{algo}, mean over")]
    per_seed: dict[str, list[float]] = {}
    for table in tables:
        rows = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
        summary = "mean over" in table
        algo = table.split()[0].rstrip(",") if summary else table.split()[2]
        peers = ["SB3", "sbx"] if with_sbx and algo != "a2c" else ["SB3"]
        assert [side for side in rows if "/" not in side] == ["gymkit", *peers]
        if summary:  # steps/s, to 475, never reached, final return
            sps = {side: _number(rows[side][1]) for side in rows if "/" not in side}
            solve = {side: _number(rows[side][2]) for side in sps}
            for side in sps:
                assert sps[side] == pytest.approx(np.mean(per_seed[side]), abs=1)
            per_seed = {}
        else:  # steps, train time, steps/s, to 475, final return
            sps, solve = {}, {}
            for side in ("gymkit", *peers):
                steps, seconds = _number(rows[side][1]), _number(rows[side][2])
                sps[side] = _number(rows[side][4])
                assert steps >= 2000
                assert _quotient_of_rounded(sps[side] / 1000, steps / 1000, seconds, 0.05)
                assert 8 <= float(rows[side][-1]) <= 500  # final return over 100 episodes
                reached = rows[side][5]
                assert reached == "never" or 0 < _number(reached) <= seconds
                solve[side] = seconds if reached == "never" else _number(reached)
                per_seed.setdefault(side, []).append(sps[side])
        for peer in peers:
            ratio = rows[f"gymkit/{peer}"]
            assert _quotient_of_rounded(float(ratio[1]), sps["gymkit"], sps[peer], 0.5)
            assert _quotient_of_rounded(float(ratio[2]), solve["gymkit"], solve[peer], 0.05)


def test_update_step_benchmark_times_both_paths_against_the_floor() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "update_step.py"),
                          "--calls", "5", "--rounds", "1", "--cold", "--profile"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("DQN gradient step, CartPole preset (4-256-256-2, batch 64)")
    rows = {cells[0]: cells[1:] for cells in map(_columns, lines[1:4])}
    assert list(rows) == ["floor (products + fused Adam)", "compiled (compile=true)",
                          "eager (compile=false)"]
    floor = float(rows["floor (products + fused Adam)"][0].removesuffix(" us"))
    for cells in rows.values():
        micros, ratio = float(cells[0].removesuffix(" us")), float(cells[1].removesuffix("x floor"))
        assert micros > 0 and ratio == pytest.approx(micros / floor, rel=0.02, abs=0.01)
    assert re.fullmatch(r"first compiled call \(compilation, inductor's cache cold\): "
                        r"[0-9.]+ s", lines[4])
    assert lines[6] == "the compiled step under cProfile, 5 calls: time of its own per call"
    assert len(lines) == 15 and all(re.fullmatch(r"\s*[0-9]+ us\s+[0-9]+x  .+", line)
                                    for line in lines[7:])


def test_rl_benchmark_times_whole_processes() -> None:
    """`--whole`: `gymkit run` and a bare SB3 process on the same budget, their wall times
    and the ratio of the means."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "rl_peers.py"), "--whole",
                          "--algos", "dqn", "--steps", "1500", "--seeds", "0", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.split("\n\n")[-1].splitlines()}
    gymkit, sb3 = (float(rows[side][-2]) for side in ("gymkit", "SB3"))
    seeds = [(float(rows[side][1]), float(rows[side][3])) for side in ("gymkit", "SB3")]
    assert gymkit == pytest.approx(np.mean(seeds[0]), abs=0.06)
    assert sb3 == pytest.approx(np.mean(seeds[1]), abs=0.06)
    assert 0.5 < gymkit < 60 and 0.5 < sb3 < 60  # each a whole process: start-up included
    assert float(rows["gymkit/SB3"][-1]) == pytest.approx(gymkit / sb3, rel=0.02)


def _columns(line: str) -> list[str]:
    """A printed row's cells: separated by two spaces or more."""
    return re.split(r"\s{2,}", line.strip())


def test_generative_benchmark_prints_both_loops_and_their_ratio() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "generative.py"),
                          "--epochs", "1", "--images", "1200"],
                         capture_output=True, text=True, check=True).stdout
    rows = {cells[0]: cells[1:] for cells in map(_columns, out.splitlines()[2:])}
    assert list(rows) == ["gymkit", "DataLoader", "gymkit, defaults", "DataLoader, defaults",
                          "ratio, 1 thread", "ratio, defaults"]
    assert rows["gymkit"][0] == rows["DataLoader"][0] == "1"
    assert int(rows["DataLoader, defaults"][0]) >= 1 and int(rows["gymkit, defaults"][0]) >= 1
    speed = {name: float(cells[2].replace(",", "")) for name, cells in rows.items()
             if not name.startswith("ratio")}
    for suffix, ratio in (("", "ratio, 1 thread"), (", defaults", "ratio, defaults")):
        assert float(rows[ratio][0]) == pytest.approx(
            speed["gymkit" + suffix] / speed["DataLoader" + suffix], rel=0.02)
    for name in speed:  # nats per 28x28 image: trained a little
        assert 100 < float(rows[name][3]) < 800


@pytest.fixture
def small_mnist(tmp_path: Path) -> Path:
    """A folder of MNIST's IDX files, gzipped, with 600 training and 100 test images of
    random pixels: the format of the real thing, small."""
    from toolkit.data.builtin import IDX_FILES
    from toolkit.data.idx import write_idx

    rng = np.random.default_rng(0)
    for key, n in (("train", 600), ("test", 100)):
        write_idx(tmp_path / f"{IDX_FILES[key + '_x']}.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / f"{IDX_FILES[key + '_y']}.gz",
                  rng.integers(0, 10, n).astype(np.uint8))
    return tmp_path


def test_generative_benchmark_times_whole_processes(small_mnist: Path) -> None:
    """`--whole`: `gymkit run generative vae` against the plain loop's process on the same
    IDX files."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "generative.py"), "--whole",
                          "--data-dir", str(small_mnist), "--epochs", "2", "--runs", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = {cells[0]: cells[1:] for cells in map(_columns, out.splitlines()[2:])}
    assert list(rows) == ["gymkit run", "DataLoader loop", "ratio"]
    # 600 training images: gymkit trains on 550 (the last twelfth is its validation split).
    for name, images in (("gymkit run", 2 * 550), ("DataLoader loop", 2 * 600)):
        wall, rate = float(rows[name][0].removesuffix(" s")), float(rows[name][1])
        assert rate == pytest.approx(images / wall, rel=0.06)  # wall printed to 0.1 s
    assert float(rows["ratio"][0]) == pytest.approx(
        float(rows["gymkit run"][1]) / float(rows["DataLoader loop"][1]), rel=0.02)


def test_rbm_benchmark_times_whole_processes(small_mnist: Path) -> None:
    """`--whole`: `gymkit run generative rbm` against scikit-learn's fit in a process of its
    own, and both final models scored alike."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "rbm.py"), "--whole",
                          "--data-dir", str(small_mnist), "--epochs", "1", "--runs", "1"],
                         capture_output=True, text=True, check=True).stdout
    assert "1 epochs of 550 MNIST training images" in out
    rows = {cells[0]: cells[1:] for cells in map(_columns, out.splitlines()[2:])}
    assert list(rows) == ["gymkit run", "scikit-learn", "ratio"]
    walls = {name: float(rows[name][0].removesuffix(" s")) for name in ("gymkit run",
                                                                        "scikit-learn")}
    for name in walls:  # nats per 784-pixel image; on random pixels, near a coin's log 2 each
        assert -784 * 2 * np.log(2) < float(rows[name][1]) < -784 * 0.5 * np.log(2)
    assert float(rows["ratio"][0]) == pytest.approx(walls["scikit-learn"] / walls["gymkit run"],
                                                    rel=0.1, abs=0.05)  # walls to 0.1 s


def test_rbm_benchmark_prints_every_seed_and_the_means_over_them() -> None:
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "rbm.py"), "--seeds", "0",
                          "1", "--epochs", "1", "--images", "600", "--hidden", "32"],
                         capture_output=True, text=True, check=True).stdout
    sides = ("gymkit highest", "gymkit medium", "scikit-learn")
    full: dict[str, list[float]] = {side: [] for side in sides}
    for seed in (0, 1):
        for side in sides:
            row = re.search(rf"^\s+{seed}  {side}\s+[0-9.]+ s\s+[0-9,]+\s+(\S+)\s+(\S+)$", out,
                            re.MULTILINE)
            assert row is not None, (seed, side, out)
            one_pixel, whole = float(row[1]), float(row[2])  # nats per 784-pixel image
            assert -784 * np.log(2) < whole < 0 and one_pixel < 0
            full[side].append(whole)
    summaries = {side: re.search(rf"^{side}\s+([0-9,]+)/s\s+([0-9.]+)x .* full (\S+)", out,
                                 re.MULTILINE) for side in sides}
    theirs = summaries["scikit-learn"]
    assert theirs is not None, out
    for side, row in summaries.items():
        assert row is not None, (side, out)
        assert float(row[3]) == pytest.approx(np.mean(full[side]), abs=0.011)  # all rounded
        ratio = float(row[1].replace(",", "")) / float(theirs[1].replace(",", ""))
        assert float(row[2]) == pytest.approx(ratio, abs=0.006)


def _best_of_last_and_best(summary: dict[str, Any], metric: str = "eval/mean_return") -> float:
    """The final evaluation's score of the better of last.pt and best.pt."""
    finals = [summary["final_eval"], summary.get("final_eval_best", summary["final_eval"])]
    return max(float(f[metric]) for f in finals)


def _at_least(k: int, seeds: tuple[int, ...], score: Callable[[int], float], bar: float,
              claim: str) -> None:
    """The claim (`score(seed)` >= `bar`) holds on at least `k` of the `seeds`: a learning
    curve is a trajectory, and another CPU's rounding sends a seed down another one
    (docs/testing.md). The seeds run in order until `k` have passed."""
    scores: dict[int, float] = {}
    for seed in seeds:
        scores[seed] = score(seed)
        if sum(value >= bar for value in scores.values()) >= k:
            return
    raise AssertionError(f"{claim}: fewer than {k} of the seeds {list(seeds)} reached {bar}; "
                         f"scores by seed {scores}")


def test_dqn_solves_cartpole_within_50k_steps(tmp_path: Path) -> None:
    # rl-zoo's tuned DQN settings for CartPole-v1 (envs/presets/cartpole.yaml), 50k steps.
    # DQN's last policy can forget what it knew (seed 3's last.pt scored 33.6 where its
    # best.pt scored 500); best.pt is picked on the periodic evaluations' episodes and then
    # scored on the final evaluation's fresh ones, so the better of the two is a fair
    # "reached within the budget". Measured on an AMD EPYC (Zen 4): the better of the two
    # reached 500 on seeds 0 to 4, and 168.5 on seed 5: two of three seeds is the bar.
    threshold = gym.spec("CartPole-v1").reward_threshold
    assert threshold == 475.0

    def score(seed: int) -> float:
        summary = run_default("cartpole", seed, tmp_path / str(seed))
        assert summary["plugin"] == "dqn" and summary["progress"]["steps"] == 50_000
        return _best_of_last_and_best(summary)

    _at_least(2, (0, 1, 2), score, threshold, "dqn on cartpole")


def test_the_linear_q_network_reaches_gymnasium_threshold_on_frozenlake(tmp_path: Path) -> None:
    # `gymkit run agent frozenlake --preset linear-qnet`: DQN as the textbook Q-network, a
    # linear layer on one-hot states trained by SGD on each transition as it comes.
    threshold = gym.spec("FrozenLake-v1").reward_threshold
    prepared = launch.prepare("agent", "frozenlake", flags={"seed": 0},
                              hyperparams="linear-qnet")
    runner = launch.start(prepared, tmp_path, quiet=True)
    try:
        summary = runner.run().summary
    finally:
        runner.trainer.close()
    assert summary["plugin"] == "dqn" and summary["progress"]["steps"] == 200_000
    assert _best_of_last_and_best(summary, "eval/success_rate") >= threshold


def _final_return(summary: dict[str, Any]) -> float:
    return float(summary["final_eval"]["eval/mean_return"])


@pytest.mark.parametrize("algo, steps", [("ppo", 100_000), ("a2c", 300_000)])
def test_actor_critics_solve_cartpole_within_their_budgets(algo: str, steps: int,
                                                           tmp_path: Path) -> None:
    # rl-zoo's tuned settings for CartPole-v1 (envs/presets/cartpole.yaml): PPO 100k steps,
    # A2C 300k (rl-zoo trains 500k). Measured on an AMD EPYC (Zen 4): 500.0 on seeds 0 to 5,
    # for both.

    def score(seed: int) -> float:
        summary = run_default("cartpole", seed, tmp_path / str(seed), algo, final_only=True)
        assert summary["plugin"] == algo and summary["progress"]["steps"] == steps
        return _final_return(summary)

    _at_least(2, (0, 1, 2), score, gym.spec("CartPole-v1").reward_threshold,
              f"{algo} on cartpole")


def test_ppo_swings_up_the_pendulum_within_rl_zoo_budget(tmp_path: Path) -> None:
    # Continuous actions. rl-zoo's budget for PPO on Pendulum-v1 is 100k steps
    # (envs/presets/pendulum.yaml); uniformly random actions score -1,223.7 on the final
    # evaluation's 100 episodes.

    def score(seed: int) -> float:
        summary = run_default("pendulum", seed, tmp_path / str(seed), final_only=True)
        assert summary["plugin"] == "ppo" and summary["progress"]["steps"] == 100_000
        return _final_return(summary)

    _at_least(2, (0, 1, 2), score, -300, "ppo on pendulum")


def test_recurrent_ppo_beats_feedforward_ppo_without_velocities(tmp_path: Path) -> None:
    # CartPole with the velocities masked: one observation does not say where the pole is
    # going, so a policy without memory cannot balance it for long.

    def gap(seed: int) -> float:
        recurrent = run_default("cartpole-masked", seed, tmp_path / f"lstm{seed}",
                                final_only=True)
        feedforward = run_default("cartpole-masked", seed, tmp_path / f"ff{seed}", "ppo",
                                  final_only=True)
        assert recurrent["plugin"] == "ppo-lstm" and feedforward["plugin"] == "ppo"
        assert recurrent["progress"]["steps"] == feedforward["progress"]["steps"] == 100_000
        return _final_return(recurrent) - _final_return(feedforward)

    # Measured (final evaluation, 100 episodes): ppo-lstm 442.0, 500.0, 383.7 and ppo 23.6,
    # 12.3, 43.8 for seeds 0, 1, 2; the smallest gap is 339.9.
    _at_least(2, (0, 1, 2), gap, 250, "ppo-lstm's lead over ppo on cartpole-masked")


@pytest.mark.parametrize("algo, steps", [("sb3-ppo", 102_400), ("sb3-a2c", 300_000)])
def test_sb3_agents_solve_cartpole_when_gymkit_drives_them(algo: str, steps: int,
                                                           tmp_path: Path) -> None:
    # Stable-Baselines3 with rl-zoo's settings (envs/presets/cartpole.yaml), its schedules
    # stretched over gymkit's budget: a wrong budget or schedule shows up as a failure here.
    summary = run_default("cartpole", 0, tmp_path, algo, final_only=True)
    assert summary["plugin"] == algo and summary["progress"]["steps"] == steps
    assert _final_return(summary) >= gym.spec("CartPole-v1").reward_threshold


def test_sb3_dqn_reaches_cartpole_threshold_when_gymkit_drives_it(tmp_path: Path) -> None:
    # SB3's own DQN with rl-zoo's settings is not reliable at the end of its budget: its last
    # policy scored 41.3 and 172.9 on seeds 0 and 2 on an AMD EPYC (and 17-18 on seed 0 on
    # another machine), 500 on seeds 1, 3, 4, 5. What it does on every seed tried is reach
    # the threshold on the way: its best.pt, scored on the final evaluation's episodes,
    # reached 475 on seeds 0 to 5. One of two seeds is the bar.

    def score(seed: int) -> float:
        summary = run_default("cartpole", seed, tmp_path / str(seed), "sb3-dqn")
        assert summary["plugin"] == "sb3-dqn" and summary["progress"]["steps"] == 50_176
        return _best_of_last_and_best(summary)

    _at_least(1, (0, 1), score, gym.spec("CartPole-v1").reward_threshold,
              "SB3's dqn on cartpole")


def test_dqn_with_a_cnn_plays_minatar_breakout_far_better_than_chance(tmp_path: Path) -> None:
    # `gymkit run agent minatar-breakout --preset cpu`: DQN on 10x10x4 frames through the
    # small CNN, 100k steps. The random policy plays the final evaluation's episodes too.
    summary = run_default("minatar-breakout", 0, tmp_path, final_only=True, hyperparams="cpu")
    assert summary["plugin"] == "dqn" and summary["progress"]["steps"] == 100_000
    source, _ = resolve_env("minatar-breakout")
    episodes = int(summary["final_eval"]["eval/episodes"])
    rng = np.random.default_rng(0)
    random_policy = FunctionPolicy(lambda obs: rng.integers(3, size=len(obs)))
    chance = evaluate_policy(random_policy, source, episodes, seed=FINAL_EVAL_SEED,
                             n_envs=8).metrics()["eval/mean_return"]
    # Measured (seed 0, 100 episodes): 7.00 ± 0.68 against 0.40 for chance, in 61.5 s
    # (`gymkit run agent minatar-breakout --preset cpu -q`).
    assert chance < 1.0
    assert _final_return(summary) >= 2.0 + 4 * chance


def test_pixels_benchmark_prints_steps_frames_and_both_returns() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "pixels.py"), "--device",
                          "cpu", "--episodes", "1", "--runs", "minatar-breakout:ppo:1024",
                          "pong:ppo:256", "--set", "n_steps=32"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("minatar", "pong"))}
    # Pong's rows: 4 emulator frames a step; returns are points, -21 to 21.
    for run, frames_per_step, low, high in (("minatar-breakout:ppo:1024", 1, 0, 1000),
                                            ("pong:ppo:256", 4, -21, 21)):
        _, device, steps, _, sps, fps, mean, _, _, chance = rows[run]
        assert device == "cpu" and int(steps.replace(",", "")) == int(run.rsplit(":", 1)[1])
        assert float(fps.replace(",", "")) == pytest.approx(
            frames_per_step * float(sps.replace(",", "")), rel=0.01, abs=1)
        assert low <= float(mean) <= high and low <= float(chance) <= high
