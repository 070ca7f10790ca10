"""`gymkit sweep --backend ray`: the same trials and metrics as the local backend, on a
local Ray instance with 2 CPUs; failures, resuming, and the errors a user can cause."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_sweep import SETS, STEPS, by_slot, definition, interrupt_in, single_run, untimed
from typer.testing import CliRunner

from toolkit import sweep_ray
from toolkit.cli import app
from toolkit.errors import GymkitError
from toolkit.sweep import run_sweep, sweep_dir

ray = pytest.importorskip("ray", reason="Ray does not install here (no wheel for this "
                                        "platform or Python); CI installs it with .[dev]")
pytest.importorskip("ray.tune", reason="ray is installed without its tune extra")

CLI_ARGS = ["sweep", "agent", "frozenlake", "--algo", "qlearning", "--seeds", "0-1",
            "--grid", "alpha=0.1,0.5", "--steps", str(STEPS),
            *[a for s in SETS for a in ("--set", s)]]


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One local Ray instance with 2 CPUs for the module; run_sweep uses a running one."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def free_port() -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_dirs(path: Path) -> list[Path]:
    return sorted(p.parent for p in path.glob("trials/*/*/*/config.json"))


def test_ray_and_local_backends_give_the_runs_of_single_runs(tmp_path: Path) -> None:
    local = run_sweep(definition([0, 1], ["0.1", "0.5"]), tmp_path / "local", workers=2)
    ray_results = Path.home() / "ray_results"
    before = set(ray_results.iterdir()) if ray_results.is_dir() else set()
    on_ray = run_sweep(definition([0, 1], ["0.1", "0.5"]), tmp_path / "ray", backend="ray",
                       workers=2)
    assert (set(ray_results.iterdir()) if ray_results.is_dir() else set()) == before
    assert on_ray.ran == 4 and not on_ray.failed and not on_ray.interrupted
    assert len(run_dirs(local.path)) == len(run_dirs(on_ray.path)) == 4
    local_trials, ray_trials = by_slot(local), by_slot(on_ray)
    for key, trial in ray_trials.items():
        assert trial.status == "completed" and trial.run_dir is not None
        run = Path(trial.run_dir)
        assert run.parent == on_ray.path / trial.slot
        assert untimed(run) == untimed(Path(str(local_trials[key].run_dir))), key
        assert untimed(run) == untimed(single_run(tmp_path / "single", key[1], key[0])), key
        assert trial.final_eval == local_trials[key].final_eval
    assert on_ray.aggregates == local.aggregates
    saved = json.loads((on_ray.path / "sweep.json").read_text())
    assert {t["status"] for t in saved["trials"]} == {"completed"}
    # Tune's own files stay in the sweep directory, and write no TensorBoard events.
    assert (on_ray.path / "ray").is_dir()
    assert not list((on_ray.path / "ray").rglob("events.out.tfevents*"))


def test_a_failing_trial_is_reported_and_the_others_finish_on_ray(tmp_path: Path) -> None:
    sweep = definition([0, 1], ["0.1", "0.5"])
    slot = sweep_dir(tmp_path, "qlearning", "frozenlake", sweep) / "trials/alpha=0.5/seed-1"
    slot.parent.mkdir(parents=True)
    slot.write_text("a file where the trial's folder goes: its run cannot start")
    result = run_sweep(sweep, tmp_path, backend="ray", workers=2)
    trials = by_slot(result)
    assert [t.status for t in result.trials] == ["completed"] * 3 + ["failed"]
    assert result.ran == 3 and not result.interrupted
    error = trials[("0.5", 1)].error or ""
    assert error.startswith(f"cannot use {slot} as the runs directory"), error
    saved = json.loads((result.path / "sweep.json").read_text())
    assert saved["trials"][3]["status"] == "failed" and saved["trials"][3]["error"] == error
    assert {r["config_name"]: r["n"] for r in result.aggregates
            if r["metric"] == "eval/mean_return"} == {"alpha=0.1": 2, "alpha=0.5": 1}


def dying_trainable(config: dict[str, Any]) -> dict[str, Any]:
    """Seed 1's Ray worker dies (as if killed or out of memory); the others train."""
    if config["task"]["slot"].endswith("seed-1"):
        os._exit(1)
    return sweep_ray._trainable(config)


def test_a_dead_ray_worker_fails_its_trial_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sweep_ray, "_trainable", dying_trainable)
    # Ray's workers cannot import this test module: send them the function itself.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        result = run_sweep(definition([0, 1], ["0.1"]), tmp_path, backend="ray", workers=2)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    trials = by_slot(result)
    assert trials[("0.1", 0)].status == "completed" and not result.interrupted
    assert trials[("0.1", 1)].status == "failed"
    error = trials[("0.1", 1)].error or ""
    assert error.startswith("the Ray trial failed: ") and "died" in error, error


def test_rerunning_on_ray_finishes_only_the_missing_trials(tmp_path: Path) -> None:
    sweep = definition([0, 1, 2], ["0.1"])
    first = run_sweep(sweep, tmp_path, backend="ray", workers=2)
    assert first.ran == 3
    # Seed 1's slot as Ctrl-C leaves it: a run stopped at step 1500 with last.pt; seed
    # 2's emptied.
    slot = first.path / by_slot(first)[("0.1", 1)].slot
    shutil.rmtree(slot)
    shutil.rmtree(first.path / by_slot(first)[("0.1", 2)].slot)
    interrupted = interrupt_in(slot, seed=1)

    again = run_sweep(sweep, tmp_path, backend="ray", workers=2)
    trials = by_slot(again)
    assert again.path == first.path and again.ran == 2
    assert not trials[("0.1", 0)].ran and trials[("0.1", 1)].ran and trials[("0.1", 2)].ran
    assert all(t.status == "completed" for t in again.trials)
    (run,) = [p for p in slot.iterdir()]  # resumed in place, no second run directory
    assert run == interrupted and trials[("0.1", 1)].run_dir == str(run)
    assert untimed(run) == untimed(single_run(tmp_path / "single", 1, "0.1"))
    assert len(run_dirs(again.path)) == 3
    assert run_sweep(sweep, tmp_path, backend="ray").ran == 0


def test_cli_sweep_on_ray(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*CLI_ARGS, "--backend", "ray", "--workers", "2",
                                      "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("alpha=0.1: 2/2 seeds completed", "alpha=0.5: 2/2 seeds completed",
                 "4 trials trained now, 4 in all"):
        assert text in result.output, text
    assert "Trial status" not in result.output and "View detailed results" not in result.output
    (path,) = (tmp_path / "sweeps").iterdir()
    assert len(run_dirs(path)) == 4


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_address_is_one_line_of_error(tmp_path: Path, scheme: str) -> None:
    address = f"{scheme}127.0.0.1:{free_port()}"
    with pytest.raises(GymkitError, match=f"cannot reach the Ray cluster at {address}"):
        run_sweep(definition([0], ["0.1"]), tmp_path, backend="ray", address=address)
    assert not (tmp_path / "sweeps").exists()
    result = CliRunner().invoke(app, [*CLI_ARGS, "--backend", "ray", "--address", address,
                                      "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: cannot reach the Ray cluster") and "--address" in line


def test_address_needs_the_ray_backend(tmp_path: Path) -> None:
    with pytest.raises(GymkitError, match="add --backend ray or drop --address"):
        run_sweep(definition([0], ["0.1"]), tmp_path, address="auto")
    result = CliRunner().invoke(app, [*CLI_ARGS, "--address", "auto", "--runs-dir",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "--backend ray" in result.output


def test_without_ray_the_error_says_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(GymkitError, match=r"pip install 'gymkit\[ray\]'"):
        run_sweep(definition([0], ["0.1"]), tmp_path, backend="ray")
    assert not (tmp_path / "sweeps").exists()
    result = CliRunner().invoke(app, [*CLI_ARGS, "--backend", "ray", "--runs-dir",
                                      str(tmp_path)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "pip install 'gymkit[ray]'" in line and "Traceback" not in result.output


def test_importing_the_sweep_module_does_not_import_ray() -> None:
    code = "import sys, toolkit.sweep, toolkit.cli; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
