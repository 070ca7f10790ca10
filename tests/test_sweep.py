"""`gymkit sweep`: parsing, trials as ordinary runs, resuming, failures, aggregates, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import metrics_lines
from typer.testing import CliRunner

from toolkit import launch
from toolkit.cli import app
from toolkit.errors import ConfigError, GymkitError
from toolkit.rundir import RunDir
from toolkit.sweep import (
    SweepDefinition,
    SweepResult,
    Trial,
    aggregate_trials,
    configurations,
    interquartile_mean,
    parse_grid,
    parse_seeds,
    run_sweep,
    summarize,
)
from toolkit.trial import latest_run

SETS = ["eval_every=1000", "checkpoint_every=1000", "eval_episodes=10", "final_eval_episodes=50"]
STEPS = 2000


def definition(seeds: list[int], alphas: list[str]) -> SweepDefinition:
    return SweepDefinition("agent", "frozenlake", "qlearning", seeds, {"alpha": alphas},
                           assignments=list(SETS), flags={"steps": STEPS})


def single_run(runs: Path, seed: int, alpha: str) -> Path:
    prepared = launch.prepare("agent", "frozenlake", "qlearning",
                              assignments=[*SETS, f"alpha={alpha}"],
                              flags={"seed": seed, "steps": STEPS})
    runner = launch.start(prepared, runs, quiet=True)
    try:
        runner.run()
    finally:
        runner.trainer.close()
    return runner.rundir.path


def untimed(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl less its wall-clock fields."""
    return [{k: v for k, v in line.items() if not k.startswith("time/")}
            for line in metrics_lines(path)]


def by_slot(result: SweepResult) -> dict[tuple[str, int], Trial]:
    return {(t.config["alpha"], t.seed): t for t in result.trials}


# -- parsing ------------------------------------------------------------------------------


def test_parse_seeds() -> None:
    assert parse_seeds("0-9") == list(range(10))
    assert parse_seeds("7") == [7]
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("4-5, 9") == [4, 5, 9]


@pytest.mark.parametrize(("text", "message"), [
    ("3-1", "runs backwards"), ("a", "expects seeds"), ("", "expects seeds"),
    ("-1", "expects seeds"), ("1,1", "twice"), ("0-2,2", "twice"),
    ("4294967296", "outside"),
])
def test_parse_seeds_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)


def test_parse_grid_and_product() -> None:
    grid = parse_grid(["alpha=0.1,0.2", "update=q,expected_sarsa", "gamma=0.9"])
    assert grid == {"alpha": ["0.1", "0.2"], "update": ["q", "expected_sarsa"], "gamma": ["0.9"]}
    configs = configurations(grid)
    assert len(configs) == 4
    assert configs[0] == {"alpha": "0.1", "update": "q", "gamma": "0.9"}
    assert configs[-1] == {"alpha": "0.2", "update": "expected_sarsa", "gamma": "0.9"}
    assert configurations({}) == [{}]


@pytest.mark.parametrize(("items", "message"), [
    (["alpha"], "expects key=value1"), (["alpha="], "expects key=value1"),
    (["=0.1"], "expects key=value1"), (["alpha=0.1,,0.2"], "expects key=value1"),
    (["alpha=0.1", "alpha=0.2"], "twice"), (["alpha=0.1,0.1"], "twice"),
    (["seed=1,2"], "--seeds"),
])
def test_parse_grid_errors(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid(items)


# -- aggregates ---------------------------------------------------------------------------


def test_summarize_by_hand() -> None:
    stats = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    sd = math.sqrt((9 + 4 + 1 + 0 + 36) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4 degrees of freedom)
    assert stats["n"] == 5
    assert stats["mean"] == pytest.approx(4.0)
    assert stats["ci95_low"] == pytest.approx(4.0 - half)
    assert stats["ci95_high"] == pytest.approx(4.0 + half)
    assert stats["iqm"] == pytest.approx(3.0)  # the middle three of five
    assert summarize([1.0, 2.0, 3.0, 4.0])["iqm"] == pytest.approx(2.5)  # middle two
    one = summarize([0.5])
    assert one["mean"] == 0.5 and one["ci95_low"] is None and one["iqm"] == 0.5


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 10])
def test_interquartile_mean_is_scipys_trim_mean(n: int) -> None:
    from scipy import stats

    values = [float((7 * i) % 11) for i in range(n)]
    assert interquartile_mean(values) == pytest.approx(float(stats.trim_mean(values, 0.25)))


def test_aggregates_are_per_configuration_across_seeds() -> None:
    def trial(alpha: str, seed: int, value: float, status: str = "completed") -> Trial:
        return Trial({"alpha": alpha}, seed, "", status=status,
                     final_eval={"eval/mean_return": value, "eval/episodes": 50.0,
                                 "eval/success_rate_ci_low": 0.0})

    trials = [trial("0.1", 0, 1.0), trial("0.1", 1, 3.0), trial("0.2", 0, 10.0),
              trial("0.2", 1, 20.0), trial("0.2", 2, 99.0, status="failed")]
    rows = aggregate_trials(trials)
    assert [(r["config_name"], r["metric"]) for r in rows] == [
        ("alpha=0.1", "eval/mean_return"), ("alpha=0.2", "eval/mean_return")]
    assert rows[0]["mean"] == 2.0 and rows[0]["n"] == 2 and rows[0]["seeds"] == [0, 1]
    assert rows[1]["mean"] == 15.0 and rows[1]["iqm"] == 15.0  # the failed seed is left out
    assert rows[1]["ci95_low"] is None and rows[1]["ci95_high"] is None  # 2 seeds: no CI
    rows = aggregate_trials([*trials[:4], trial("0.2", 2, 99.0)])
    half = 4.302652729911275 * math.sqrt(2377) / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert rows[1]["mean"] == 43.0 and rows[1]["ci95_low"] == pytest.approx(43.0 - half)


# -- sweeps -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SweepResult]:
    """A 2-value x 2-seed sweep in a pool of 2 worker processes."""
    runs = tmp_path_factory.mktemp("sweep")
    return runs, run_sweep(definition([0, 1], ["0.1", "0.5"]), runs, workers=2)


def test_sweep_trials_are_ordinary_runs_equal_to_single_runs(
        swept: tuple[Path, SweepResult], tmp_path: Path) -> None:
    _runs, result = swept
    assert result.ran == 4 and not result.failed and not result.interrupted
    trials = by_slot(result)
    for (alpha, seed), trial in trials.items():
        slot = result.path / "trials" / f"alpha={alpha}" / f"seed-{seed}"
        (run,) = [p for p in slot.iterdir()]
        assert trial.run_dir == str(run) and trial.status == "completed"
        assert RunDir(run).checkpoint("last").is_file()
        assert untimed(run) == untimed(single_run(tmp_path, seed, alpha)), (alpha, seed)
    saved = json.loads((result.path / "sweep.json").read_text())
    assert {t["status"] for t in saved["trials"]} == {"completed"}
    assert saved["definition"]["seeds"] == [0, 1]
    rows = [r for r in saved["aggregates"] if r["metric"] == "eval/mean_return"]
    for row in rows:
        values = [trials[(row["config"]["alpha"], s)].final_eval["eval/mean_return"]
                  for s in (0, 1)]
        assert row["mean"] == pytest.approx(sum(values) / 2)
    csv = (result.path / "sweep.csv").read_text().splitlines()
    assert csv[0] == "config,metric,n,mean,ci95_low,ci95_high,iqm"
    assert len(csv) == 1 + len(saved["aggregates"])


def test_rerunning_the_same_sweep_runs_nothing(swept: tuple[Path, SweepResult]) -> None:
    runs, first = swept
    again = run_sweep(definition([0, 1], ["0.1", "0.5"]), runs, workers=1)
    assert again.path == first.path
    assert again.ran == 0
    assert all(t.status == "completed" for t in again.trials)
    assert again.aggregates == first.aggregates
    assert sum(1 for _ in first.path.glob("trials/*/*/*/config.json")) == 4


def test_a_trial_without_its_summary_is_finished_alone(tmp_path: Path) -> None:
    first = run_sweep(definition([0, 1], ["0.1"]), tmp_path, workers=1)
    trial = by_slot(first)[("0.1", 1)]
    assert trial.run_dir is not None
    (Path(trial.run_dir) / "summary.json").unlink()
    again = run_sweep(definition([0, 1], ["0.1"]), tmp_path, workers=1)
    assert again.ran == 1
    assert by_slot(again)[("0.1", 1)].ran and not by_slot(again)[("0.1", 0)].ran
    assert all(t.status == "completed" for t in again.trials)


def interrupt_in(slot: Path, seed: int) -> Path:
    """What Ctrl-C leaves in a trial's slot: alpha=0.1's run stopped at step 1500, last.pt;
    its run directory."""
    prepared = launch.prepare("agent", "frozenlake", "qlearning",
                              assignments=[*SETS, "alpha=0.1"],
                              flags={"seed": seed, "steps": STEPS})
    runner = launch.start(prepared, slot, quiet=True,
                          on_step=lambda r: r.request_stop() if r._spent() >= 1500 else None)
    assert runner.run().status == "interrupted"
    runner.trainer.close()
    return runner.rundir.path


def test_an_interrupted_trial_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    first = run_sweep(definition([0, 1], ["0.1"]), tmp_path, workers=1)
    slot = first.path / first.trials[1].slot
    shutil.rmtree(slot)
    interrupted = interrupt_in(slot, seed=1)
    again = run_sweep(definition([0, 1], ["0.1"]), tmp_path, workers=1)
    assert again.ran == 1 and all(t.status == "completed" for t in again.trials)
    (run,) = [p for p in slot.iterdir()]  # resumed in place, no second run directory
    assert run == interrupted and again.trials[1].run_dir == str(run)
    assert untimed(run) == untimed(single_run(tmp_path / "single", 1, "0.1"))


def _fail_seed_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials of seed 1 fail as they train (the grid itself is valid)."""
    from agents.qlearning import QLearning

    train_step = QLearning.train_step

    def failing(self: QLearning) -> dict[str, float]:
        if self.seed == 1:
            raise GymkitError("seed 1 diverged")
        return train_step(self)

    monkeypatch.setattr(QLearning, "train_step", failing)


def test_a_failing_trial_is_reported_and_the_others_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_seed_1(monkeypatch)
    result = run_sweep(definition([0, 1], ["0.1", "0.2"]), tmp_path, workers=1)
    trials = by_slot(result)
    assert [t.status for t in result.trials] == ["completed", "failed"] * 2
    assert trials[("0.2", 1)].error == "seed 1 diverged"
    assert {r["config_name"] for r in result.aggregates} == {"alpha=0.1", "alpha=0.2"}
    assert {tuple(r["seeds"]) for r in result.aggregates} == {(0,)}
    saved = json.loads((result.path / "sweep.json").read_text())
    assert saved["trials"][3]["error"] == "seed 1 diverged"


def test_a_bad_grid_value_launches_no_trial(tmp_path: Path) -> None:
    with pytest.raises(GymkitError, match=r"--grid alpha=7: alpha must be in \(0, 1\], got 7.0; "
                                          "no trial was started"):
        run_sweep(definition([0, 1], ["0.1", "7"]), tmp_path, workers=1)
    assert not tmp_path.joinpath("sweeps").exists()


def test_bad_input_shared_by_every_configuration_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(GymkitError, match="alpha must be"):
        run_sweep(definition([0], ["7", "8"]), tmp_path, workers=1)
    with pytest.raises(GymkitError, match="--backend must be local or ray"):
        run_sweep(definition([0], ["0.1"]), tmp_path, backend="dask")
    assert not tmp_path.joinpath("sweeps").exists()


def test_latest_run_picks_the_newest(tmp_path: Path) -> None:
    assert latest_run(tmp_path / "none") is None
    for name in ("20260101-000000-q-f-s1", "20260101-000001-q-f-s1", "notes"):
        (tmp_path / name).mkdir()
    for name in ("20260101-000000-q-f-s1", "20260101-000001-q-f-s1"):
        (tmp_path / name / "config.json").write_text("{}")
    assert latest_run(tmp_path) == tmp_path / "20260101-000001-q-f-s1"


# -- the command line ---------------------------------------------------------------------


def test_cli_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = CliRunner()
    args = ["sweep", "agent", "frozenlake", "--algo", "qlearning", "--seeds", "0-1",
            "--grid", "alpha=0.1,7", "--steps", str(STEPS), "--workers", "1",
            "--runs-dir", str(tmp_path), *[a for s in SETS for a in ("--set", s)]]
    result = cli.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error: --grid alpha=7: alpha must be in (0, 1], got 7.0" in result.stderr
    assert not (tmp_path / "sweeps").exists()

    args[8] = "alpha=0.1,0.2"
    _fail_seed_1(monkeypatch)
    result = cli.invoke(app, args)
    assert result.exit_code == 1, result.output
    for text in ("sweep directory:", "mean ± 95% CI", "IQM", "eval/mean_return",
                 "alpha=0.1: 1/2 seeds completed", "alpha=0.2: 1/2 seeds completed",
                 "seed 1 diverged", "2 of 4 trials failed", "4 trials trained",
                 "n too small"):
        assert text in result.output, text
    (path,) = (tmp_path / "sweeps").iterdir()
    assert (path / "sweep.json").is_file() and (path / "sweep.csv").is_file()
    monkeypatch.undo()
    again = cli.invoke(app, args)
    assert again.exit_code == 0 and "2 trials trained now, 4 in all" in again.output, \
        again.output

    for bad, message in ((["--backend", "dask"], "--backend must be local or ray"),
                         (["--seeds", "5-2"], "runs backwards"),
                         (["--grid", "alpha"], "expects key=value1"),
                         (["--workers", "0"], "--workers must be positive")):
        out = cli.invoke(app, [*args, *bad])
        assert out.exit_code == 2 and message.lower() in out.output.lower(), out.output


def test_tensorboard_serves_every_trial_of_a_sweep(swept: tuple[Path, SweepResult]) -> None:
    """`gymkit tensorboard SWEEP_DIR` lists each trial's run, found under trials/."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    if os.name == "nt":
        pytest.skip("stops TensorBoard's process group with os.killpg, which Windows lacks")
    _runs, result = swept
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-c", "from toolkit.cli import main; main()", "tensorboard",
               str(result.path), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    runs: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while len(runs) < 4 and time.monotonic() < deadline:
            assert server.poll() is None, "TensorBoard exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs",
                                            timeout=2) as response:
                    runs = json.loads(response.read())
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert sorted(runs) == sorted(str(Path(t.run_dir or "").relative_to(result.path))
                                  for t in result.trials)
