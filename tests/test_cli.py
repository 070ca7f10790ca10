"""The CLI through typer's CliRunner, and once as real subprocesses."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import metrics_lines, q_table
from typer.testing import CliRunner

from toolkit import launch
from toolkit.cli import app

cli = CliRunner()
SMALL = ["--steps", "3000", "--set", "eval_every=1000", "--set", "eval_episodes=20",
         "--set", "final_eval_episodes=100", "-q"]


def invoke(*args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    code, out = invoke("run", "agent", "frozenlake-deterministic", "--runs-dir", str(runs), *SMALL)
    assert code == 0, out
    (path,) = runs.iterdir()
    return path


def test_run_prints_the_summary(trained: Path) -> None:
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_eval"]["eval/success_rate"] == 1.0


def test_run_output(tmp_path: Path) -> None:
    code, out = invoke("run", "agent", "frozenlake-deterministic", "--runs-dir", str(tmp_path),
                       *SMALL)
    assert code == 0, out
    for text in ("eval success rate", "1.000 (95% CI", "over 100 episodes",
                 "optimal success rate", "value iteration", "greedy policy", "H",
                 "run directory", "gymkit tensorboard"):
        assert text in out, text


def test_config_file_and_set_layers(tmp_path: Path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text("update: expected_sarsa\nalpha: 0.3\nsteps: 999999\n")
    runs = tmp_path / "runs"
    code, out = invoke("run", "agent", "frozenlake-deterministic", "--runs-dir", str(runs),
                       "--config", str(config), *SMALL, "--set", "alpha=0.4", "--seed", "7")
    assert code == 0, out
    (path,) = runs.iterdir()
    resolved = json.loads((path / "config.json").read_text())
    assert resolved["config"]["update"] == "expected_sarsa"  # from the file
    assert resolved["config"]["alpha"] == 0.4  # --set beats the file
    assert resolved["run"]["steps"] == 3000 and resolved["run"]["seed"] == 7  # flags beat both
    assert resolved["config"]["gamma"] == 0.99  # plugin default


def test_list_shows_plugins_and_envs() -> None:
    code, out = invoke("list", "all")
    assert code == 0
    for text in ("qlearning", "frozenlake8x8", "FrozenLake-v1", "taxi", "cliffwalking",
                 "cartpole", "gymkit"):
        assert text in out, text


def test_list_summarizes_every_kind_on_one_screen() -> None:
    from toolkit.data import DATASETS
    from toolkit.environments import ENVS
    from toolkit.registry import AGENTS, GENERATIVE

    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 80, result.stdout
    names = set(re.split(r"[,\s]+", result.stdout))
    for registry in (AGENTS, GENERATIVE, ENVS, DATASETS):
        assert set(registry.names()) <= names
    for title, registry in (("agents", AGENTS), ("generative models", GENERATIVE),
                            ("environments", ENVS), ("datasets", DATASETS)):
        assert f"{title} ({len(registry.names())})" in result.stdout
    assert "frozenlake:linear-qnet" in names


def test_list_envs_shows_presets_and_the_agents_that_fit() -> None:
    result = CliRunner().invoke(app, ["list", "envs"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    frozenlake = next(line for line in result.stdout.splitlines()
                      if line.startswith("frozenlake "))
    assert re.search(r"\bqlearning, .*\bdqn\b.*\blinear-qnet\b", frozenlake), frozenlake
    cartpole = next(line for line in result.stdout.splitlines()
                    if line.startswith("cartpole "))
    assert "qlearning" not in cartpole and "dqn, " in cartpole  # Box observations


def test_list_presets_names_the_envs_and_the_models_sets() -> None:
    result = CliRunner().invoke(app, ["list", "presets"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "gymkit run agent frozenlake --preset linear-qnet" in result.stdout
    assert "gymkit run generative vae --preset pytorch-examples" in result.stdout


def test_eval_reports_success_rate(trained: Path) -> None:
    code, out = invoke("eval", str(trained), "--episodes", "30")
    assert code == 0, out
    assert "eval success rate" in out and "over 30 episodes" in out


def test_eval_best_checkpoint(trained: Path) -> None:
    code, out = invoke("eval", str(trained), "--episodes", "5", "--checkpoint", "best")
    assert code == 0, out
    assert "best.pt" in out


def test_eval_renders_ansi_frames(trained: Path) -> None:
    code, out = invoke("eval", str(trained), "--render", "ansi")
    assert code == 0, out
    assert "SFFF" in out and ("(Down)" in out or "(Right)" in out)
    assert "over 1 episode," in out and "over 1 episodes" not in out


def test_video_records_mp4_files(trained: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    code, out = invoke("eval", str(trained), "--video", str(tmp_path / "videos"),
                       "--episodes", "2")
    assert code == 0, out
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)


def test_video_without_moviepy_says_how_to_install(trained: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy -> ImportError
    code, out = invoke("eval", str(trained), "--video", str(tmp_path / "videos"))
    assert code == 2, out
    assert "pip install 'gymkit[render]'" in out and "Traceback" not in out


def test_resume_of_a_completed_run_is_refused(trained: Path) -> None:
    code, out = invoke("resume", str(trained))
    assert code == 2 and "already completed" in out


def test_tensorboard_launches_on_the_runs_dir(trained: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr("toolkit.cli.serve", lambda cmd: calls.append(cmd) or 0)
    with socket.socket() as probe:  # a port that is free now
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    code, out = invoke("tensorboard", str(trained.parent), "--port", port)
    assert code == 0, out
    assert calls and calls[0][-4:] == ["--logdir", str(trained.parent), "--port", port]
    assert f"http://localhost:{port}" in out


@pytest.mark.parametrize(("args", "message"), [
    (["run", "agent", "frozenlak"], "unknown environment 'frozenlak' (did you mean: frozenlake"),
    (["run", "agent", "frozenlake", "--algo", "qlearnin"], "unknown agent 'qlearnin'"),
    (["run", "agent", "frozenlake", "--set", "gamma=2"], "gamma must be in [0, 1], got 2"),
    (["run", "agent", "frozenlake", "--set", "alpha=-0.1"], "alpha must be in (0, 1]"),
    (["run", "agent", "frozenlake", "--set", "alpha=fast"], "alpha expects a number"),
    (["run", "agent", "frozenlake", "--set", "gama=0.9"], "unknown config key 'gama'"),
    (["run", "agent", "frozenlake", "--set", "gamma"], "--set expects key=value"),
    (["run", "agent", "cartpole", "--algo", "qlearning"], "needs Discrete observation"),
    (["run", "agent", "Pendulum-v1"],
     "has no default agent; pass --algo (one of: a2c, a2c-lstm, ppo, ppo-lstm, sb3-a2c, "
     "sb3-ppo)"),
    (["run", "agent", "Taxi-v4"],
     "has no default agent; pass --algo (one of: a2c, a2c-lstm, dqn, ppo, ppo-lstm, qlearning, "
     "sb3-a2c, sb3-dqn, sb3-ppo)"),
    (["run", "agent", "frozenlake", "--device", "cuda"], "CUDA is not available"),
    (["run", "generative", "vea"], "unknown generative 'vea' (did you mean: vae?)"),
    (["run", "agent", "taxi", "--epochs", "3"], "No such option: --epochs"),
    (["run", "agent", "taxi", "--steps", "many"], "Invalid value for '--steps'"),
    (["run", "agent", "frozenlake", "--seed", "-1"], "seed must be in [0, 4294967295], got -1"),
    (["run", "agent", "frozenlake", "--seed", "99999999999999999999999"],
     "seed must be in [0, 4294967295], got 99999999999999999999999"),
    (["run", "agent", "frozenlake", "--set", "seed=4294967296"],
     "seed must be in [0, 4294967295], got 4294967296"),
    (["run", "agent", "frozenlake", "--device", "tpu"],
     "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["run", "agent", "frozenlake", "--set", "device=tpu"],
     "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["run", "agent", "frozenlake", "--device", "cuda:0"], "CUDA is not available"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_dir(args: list[str], message: str,
                                                      tmp_path: Path) -> None:
    if any(a.startswith("cuda") for a in args) and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    runs = tmp_path / "runs"
    code, out = invoke(*args, "--runs-dir", str(runs))
    assert code == 2, out
    assert message in out, out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1 and out.startswith("error: "), out
    assert not runs.exists() or not any(runs.iterdir())


def test_corrupted_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from conftest import train

    def stop(runner: launch.Runner) -> None:
        runner.request_stop()

    result = train(tmp_path, on_step=stop)
    last = result.rundir.path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    for command in ("resume", "eval"):
        code, out = invoke(command, str(result.rundir.path))
        assert code == 2, out
        assert "corrupted or not a gymkit checkpoint" in out
        assert len(out.strip().splitlines()) == 1 and "Traceback" not in out


def test_runs_dir_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    code, out = invoke("run", "agent", "frozenlake", "--runs-dir", str(not_a_dir))
    assert code == 2 and "pass another --runs-dir" in out and "Traceback" not in out


def test_not_a_run_directory(tmp_path: Path) -> None:
    code, out = invoke("eval", str(tmp_path))
    assert code == 2 and "not a gymkit run directory" in out


# -- real subprocesses ------------------------------------------------------------------------

GYMKIT = [sys.executable, "-m", "toolkit"]


@pytest.fixture
def env_vars() -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}


def test_subprocess_list_and_error_exit_codes(env_vars: dict[str, str]) -> None:
    ok = subprocess.run([*GYMKIT, "list"], capture_output=True, text=True, env=env_vars)
    assert ok.returncode == 0 and "qlearning" in ok.stdout
    bad = subprocess.run([*GYMKIT, "run", "agent", "nosuchenv"], capture_output=True, text=True,
                         env=env_vars)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown environment 'nosuchenv'")
    assert "Traceback" not in bad.stderr


def test_sigint_then_resume_matches_an_uninterrupted_run(tmp_path: Path,
                                                         env_vars: dict[str, str]) -> None:
    args = ["run", "agent", "frozenlake", "--seed", "3", "--steps", "60000",
            "--set", "eval_every=20000", "--set", "checkpoint_every=20000",
            "--set", "steps_per_call=200", "--set", "final_eval_episodes=200"]
    runs = tmp_path / "interrupted"
    process = subprocess.Popen([*GYMKIT, *args, "--runs-dir", str(runs)], env=env_vars,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = list(runs.glob("*/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (path,) = runs.iterdir()
    assert re.search(r"interrupted at [\d,]+ steps, [\d,]+ episodes?; checkpoint saved\. "
                     rf"Continue with: gymkit resume {re.escape(str(path))}$",
                     stderr.strip()), stderr
    assert json.loads((path / "summary.json").read_text())["status"] == "interrupted"
    steps_at_interrupt = json.loads((path / "summary.json").read_text())["progress"]["steps"]
    assert steps_at_interrupt < 60000

    resumed = subprocess.run([*GYMKIT, "resume", str(path)], capture_output=True, text=True,
                             env=env_vars)
    assert resumed.returncode == 0, resumed.stderr
    assert "completed" in resumed.stdout
    evaluated = subprocess.run([*GYMKIT, "eval", str(path), "--episodes", "50"],
                               capture_output=True, text=True, env=env_vars)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "over 50 episodes" in evaluated.stdout

    full = tmp_path / "full"
    done = subprocess.run([*GYMKIT, *args, "--runs-dir", str(full), "-q"], capture_output=True,
                          text=True, env=env_vars)
    assert done.returncode == 0, done.stderr
    (full_path,) = full.iterdir()
    assert metrics_lines(path) == metrics_lines(full_path)
    assert q_table(path) == q_table(full_path)


def test_run_generative_through_the_cli(tmp_path: Path) -> None:
    from toy_generative import ToyGaussian, toy_dataset

    from toolkit.data import DATASETS
    from toolkit.registry import GENERATIVE

    GENERATIVE.add("toy-gaussian", ToyGaussian)
    DATASETS.add("toy-points", toy_dataset)
    try:
        code, out = invoke("run", "generative", "toy-gaussian", "--epochs", "4", "-q",
                           "--runs-dir", str(tmp_path))
        assert code == 0, out
        assert "toy-gaussian on toy-points" in out and "4 epochs" in out
        code, out = invoke("run", "generative", "toy-gaussian", "--dataset", "toy-pts",
                           "--runs-dir", str(tmp_path / "bad"))
        assert code == 2 and "unknown dataset 'toy-pts' (did you mean: toy-points?)" in out
    finally:
        GENERATIVE.remove("toy-gaussian")
        DATASETS.remove("toy-points")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_a_run_trained_on_a_gpu_evaluates_and_samples_on_a_cpu_with_device(
        tmp_path: Path) -> None:
    # config.json records --device cuda, as a run trained on a GPU machine does.
    for args in (["agent", "cartpole", "--steps", "128", "--set", "learning_starts=32",
                  "--set", "eval_every=128", "--set", "eval_episodes=1",
                  "--set", "final_eval_episodes=1"], ["generative", "vae", "--epochs", "1"]):
        code, out = invoke("run", *args, "--runs-dir", str(tmp_path), "-q")
        assert code == 0, out
    agent_run, vae_run = sorted(tmp_path.iterdir(), key=lambda p: "vae" in p.name)
    for run in (agent_run, vae_run):
        config = json.loads((run / "config.json").read_text())
        config["run"]["device"] = "cuda"
        (run / "config.json").write_text(json.dumps(config))
    for command in (["eval", str(agent_run)], ["resume", str(agent_run)],
                    ["reproduce", str(agent_run)]):
        code, out = invoke(*command)
        assert code == 2 and (f"was trained with --device cuda and CUDA is not available here; "
                              f"continue or rerun it on a machine with a GPU, or evaluate it "
                              f"here with `gymkit eval {agent_run} --device cpu`"
                              ) in " ".join(out.split()), out
    code, out = invoke("eval", str(agent_run), "--episodes", "2", "--device", "cpu")
    assert code == 0 and "eval mean return" in out, out
    png = tmp_path / "samples.png"
    code, out = invoke("sample", str(vae_run), "--n", "4", "--out", str(png), "--device", "cpu")
    assert code == 0 and png.is_file(), out
    code, out = invoke("eval", str(agent_run), "--device", "tpu")
    assert code == 2 and "device must be auto, cpu, cuda or cuda:N, got 'tpu'" in out
