"""What Ctrl-C (and SIGTERM) print and return: a resume hint only where a resume can work."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from toolkit import launch
from toolkit.cli import app

RUN = ["run", "agent", "frozenlake", "--steps", "20000", "--set", "steps_per_call=500",
       "--set", "eval_every=5000", "--set", "eval_episodes=5", "--set", "final_eval_episodes=5",
       "-q"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def with_on_step(monkeypatch: pytest.MonkeyPatch, on_step: Callable[[Any], None]) -> None:
    """Make the CLI's runner call `on_step` after every train step."""
    start = launch.start

    def start_with_hook(*args: Any, **kwargs: Any) -> Any:
        return start(*args, on_step=on_step, **kwargs)

    monkeypatch.setattr(launch, "start", start_with_hook)


def test_ctrl_c_before_the_run_directory_exists(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "prepare", interrupt)
    runs = tmp_path / "runs"
    result = invoke(*RUN, "--runs-dir", str(runs))
    assert result.exit_code == 130
    assert result.stderr.strip() == "stopped"
    assert "resume" not in result.output and not runs.exists()


def test_ctrl_c_during_eval_has_nothing_to_resume(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "rebuild", interrupt)
    result = invoke("eval", str(tmp_path))
    assert result.exit_code == 130
    assert result.stderr.strip() == "stopped" and "resume" not in result.output


def test_ctrl_c_stops_tensorboard_without_a_resume_hint(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("toolkit.cli.serve", interrupt)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = invoke("tensorboard", str(tmp_path), "--port", str(port))
    assert result.exit_code == 130
    assert result.stderr.strip() == "stopped" and "resume" not in result.output


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_graceful_stop_names_counts_and_the_resume_command(
        signum: int, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(runner: Any) -> None:
        if runner.trainer.progress()["steps"] >= 1000:
            runner.request_stop(signum)

    with_on_step(monkeypatch, stop)
    runs = tmp_path / "runs"
    result = invoke(*RUN, "--runs-dir", str(runs))
    (run,) = runs.iterdir()
    assert result.exit_code == code, result.output
    line = result.stderr.strip()
    assert re.fullmatch(r"interrupted at 1,\d{3} steps, \d+ episodes?; checkpoint saved\. "
                        rf"Continue with: gymkit resume {re.escape(str(run))}", line), line
    assert "{" not in result.output
    assert (run / "checkpoints" / "last.pt").is_file()


def test_second_ctrl_c_after_a_checkpoint_points_to_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def stop_at_once(runner: Any) -> None:
        if runner.trainer.progress()["steps"] >= 2000:
            raise KeyboardInterrupt

    with_on_step(monkeypatch, stop_at_once)
    runs = tmp_path / "runs"
    result = invoke(*RUN, "--set", "checkpoint_every=1000", "--runs-dir", str(runs))
    (run,) = runs.iterdir()
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == ("stopped at once; checkpoints/last.pt from before it is "
                                     f"intact. Continue with: gymkit resume {run}")
    resumed = invoke("resume", str(run), "-q")
    assert resumed.exit_code == 0, resumed.output


def test_second_ctrl_c_before_any_checkpoint_says_so(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with_on_step(monkeypatch, interrupt)
    runs = tmp_path / "runs"
    result = invoke(*RUN, "--set", "checkpoint_every_s=0", "--runs-dir", str(runs))
    (run,) = runs.iterdir()
    assert result.exit_code == 130, result.output
    assert not (run / "checkpoints" / "last.pt").exists()
    assert result.stderr.strip() == (f"stopped at once, before the first checkpoint; {run} "
                                     "cannot be resumed: start again with gymkit run")
    assert "gymkit resume" not in result.output


def test_ctrl_c_while_resume_loads_keeps_the_run_resumable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def stop(runner: Any) -> None:
        runner.request_stop()

    with_on_step(monkeypatch, stop)
    runs = tmp_path / "runs"
    assert invoke(*RUN, "--runs-dir", str(runs)).exit_code == 130
    (run,) = runs.iterdir()
    monkeypatch.setattr(launch, "resume", interrupt)
    result = invoke("resume", str(run))
    assert result.exit_code == 130
    assert result.stderr.strip().endswith(f"Continue with: gymkit resume {run}")
