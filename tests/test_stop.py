"""Ctrl-C is acknowledged at once and takes effect within a step, whatever the preset; long
work shows progress, as bars on a terminal and as plain lines elsewhere.

Latency is measured as work done after the signal (env steps, minibatches), not in seconds.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agents.actor_critic import PPO
from agents.dqn import DQN
from toolkit import launch, progress
from toolkit.checkpoint import load_checkpoint
from toolkit.cli import app
from toolkit.testing import make_trainer
from toolkit.trainer import Budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def stop_when(trainer: Any, count: int, wrapped: Any) -> Any:
    """`wrapped`, which raises the trainer's stop flag (as the runner's signal handler does)
    on its `count`-th call."""
    calls = 0

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == count:
            trainer.ctx.stop.requested = True
        return wrapped(*args, **kwargs)

    return call


# -- each long train_step returns at its next unit of work ---------------------------------

def test_dqn_stops_after_the_env_step_under_way() -> None:
    agent = make_trainer(DQN, "cartpole", {"steps_per_call": 1000, "learning_starts": 10,
                                           "n_envs": 2}, budget=Budget("steps", 10**6))
    assert isinstance(agent, DQN)
    agent.envs.step = stop_when(agent, 7, agent.envs.step)
    agent.train_step()
    assert agent.steps == 7 * 2  # not the call's 1,000
    agent.close()


def test_ppo_stops_after_the_minibatch_under_way() -> None:
    agent = make_trainer(PPO, "cartpole", {"n_steps": 32, "n_envs": 2, "batch_size": 8,
                                           "n_epochs": 4}, budget=Budget("steps", 10**6))
    assert isinstance(agent, PPO)
    minibatches = agent._minibatches

    def marked(steps: int, n: int) -> Iterator[Any]:
        for i, batch in enumerate(minibatches(steps, n)):
            if i == 2:
                agent.ctx.stop.requested = True
            yield batch

    agent._minibatches = marked  # type: ignore[assignment]
    agent.train_step()
    # The flag went up as the third minibatch of the first epoch was handed out: two
    # gradient steps were taken, not the 32 of the four epochs.
    assert agent.updates == 2
    agent.close()


def test_ppo_drops_a_rollout_that_a_stop_cut_short() -> None:
    agent = make_trainer(PPO, "cartpole", {"n_steps": 64, "n_envs": 2, "batch_size": 32},
                         budget=Budget("steps", 10**6))
    assert isinstance(agent, PPO)
    agent.envs.step = stop_when(agent, 5, agent.envs.step)
    metrics = agent.train_step()
    assert "losses/policy_loss" not in metrics
    assert (agent.steps, agent.updates) == (5 * 2, 0)
    agent.close()


# -- the slowest agent preset, through the runner and a real signal ------------------------

def test_ctrl_c_on_the_slowest_preset_stops_within_an_env_step(tmp_path: Path) -> None:
    """minatar-breakout's cpu preset does 10,000 env steps per train_step (about 7 s): a
    SIGINT must stop it after the env step under way, and say so at once."""
    pytest.importorskip("minatar")
    prepared = launch.prepare("agent", "minatar-breakout", hyperparams="cpu",
                              flags={"steps": 20_000, "seed": 0})
    out = io.StringIO()
    runner = launch.start(prepared, tmp_path, console=Console(file=out, width=100))
    trainer = runner.trainer
    sent: list[int] = []

    def send() -> None:
        while trainer.progress()["steps"] < 6_000:  # learning has started
            time.sleep(0.01)
        sent.append(trainer.progress()["steps"])
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=send, daemon=True).start()
    try:
        result = runner.run()
    finally:
        trainer.close()
    assert result.interrupted and result.signal == signal.SIGINT
    stopped = result.summary["progress"]["steps"]
    assert sent and stopped - sent[0] <= 2, (sent, stopped)  # the step under way, at most
    assert stopped < 10_000  # the first train_step of 10,000 steps did not run to its end
    assert load_checkpoint(result.rundir.checkpoint("last"))["trainer"]["steps"] == stopped
    for _ in range(100):  # the acknowledgement is printed by a thread, at once
        if "stopping after the current step" in out.getvalue():
            break
        time.sleep(0.02)
    assert "stopping after the current step" in out.getvalue()


# -- a generative trainer stops mid-epoch and resumes bit for bit --------------------------

def _vae(tmp_path: Path, name: str) -> Any:
    prepared = launch.prepare("generative", "digits", "vae",
                              flags={"epochs": 2, "seed": 3, "batch_size": 128})
    return launch.start(prepared, tmp_path / name, quiet=True)


def test_a_vae_stopped_mid_epoch_resumes_to_the_same_metrics(tmp_path: Path) -> None:
    full = _vae(tmp_path, "full")
    full.run()
    full.trainer.close()

    stopped = _vae(tmp_path, "stopped")
    trainer = stopped.trainer
    train_batch = trainer._train_batch

    def batch(index: Any) -> Any:
        if trainer.steps == 3:  # the third batch of the first epoch
            stopped.request_stop()
        return train_batch(index)

    trainer._train_batch = batch
    result = stopped.run()
    trainer.close()
    assert result.interrupted
    assert result.summary["progress"] == {"epochs": 0, "steps": 3}
    runner, checkpoint = launch.resume(result.rundir.path, quiet=True)
    try:
        runner.run(checkpoint)
    finally:
        runner.trainer.close()

    def lines(run: Any) -> list[dict[str, Any]]:
        records = [json.loads(line) for line in run.rundir.metrics_path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]

    assert lines(runner) == lines(full)


def test_a_generative_stop_says_it_waits_for_the_batch(tmp_path: Path) -> None:
    runner = _vae(tmp_path, "r")
    assert "the current batch" in runner._stopping_message()
    runner.trainer.close()


# -- progress ---------------------------------------------------------------------------------

RUN = ["run", "agent", "cartpole", "--algo", "dqn", "--steps", "3000", "--set",
       "learning_starts=500", "--set", "eval_every=1000", "--set", "eval_episodes=3",
       "--set", "final_eval_episodes=3"]


def test_progress_is_plain_lines_when_stdout_is_not_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    result = CliRunner().invoke(app, [*RUN, "--runs-dir", str(tmp_path)],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    training = [line for line in result.output.splitlines() if line.startswith("dqn: ")]
    assert any("/3,000 steps (" in line and "steps/s, ETA" in line for line in training)
    assert "episodic_return" in training[-1]  # the metrics, whole
    assert any(line.startswith("evaluating: ") for line in result.output.splitlines())
    assert "\x1b[" not in result.output  # no terminal codes in a log


def test_at_80_columns_the_bar_keeps_the_metrics_whole(tmp_path: Path) -> None:
    prepared = launch.prepare("agent", "cartpole", "dqn", flags={"steps": 2000},
                              assignments=["learning_starts=500", "eval_every=1000",
                                           "eval_episodes=3", "final_eval_episodes=3"])
    out = io.StringIO()
    runner = launch.start(prepared, tmp_path, console=Console(file=out, width=80,
                                                              force_terminal=True))
    runner.run()
    runner.trainer.close()
    text = out.getvalue()
    assert "2,000/2,000 steps" in text and "steps/s" in text and "ETA" in text
    assert "episodic_return" in text and "best eval" in text
    assert "episodic_retu…" not in text


def test_gymkit_eval_shows_its_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(app, [*RUN, "--runs-dir", str(tmp_path), "-q"]).exit_code == 0
    (run,) = tmp_path.iterdir()
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    result = CliRunner().invoke(app, ["eval", str(run), "--episodes", "20"])
    assert result.exit_code == 0, result.output
    assert re.search(r"evaluating: \d+/20 episodes", result.output), result.output


# -- child processes and stray output ---------------------------------------------------------

def test_sigterm_stops_tensorboard_and_its_server(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tmp_path.joinpath("runs").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "toolkit", "tensorboard",
                                str(tmp_path / "runs"), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _listening(port):
        time.sleep(0.2)
    assert _listening(port), "tensorboard did not start"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _listening(port):
        time.sleep(0.2)
    assert not _listening(port), "the tensorboard child still serves"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_recording_a_video_prints_no_stray_error(tmp_path: Path) -> None:
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    runs = tmp_path / "runs"
    assert CliRunner().invoke(app, [*RUN, "--runs-dir", str(runs), "-q"]).exit_code == 0
    (run,) = runs.iterdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER", "DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "toolkit", "eval", str(run), "--video",
                           str(tmp_path / "videos"), "--episodes", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower(), done.stderr
    assert list((tmp_path / "videos").glob("*.mp4"))

