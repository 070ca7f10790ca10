"""Bad input and bugs through the CLI: one line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import importlib.util
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from typer.testing import CliRunner, Result

from toolkit import launch
from toolkit.cli import app

SMALL = ["--steps", "2000", "--set", "eval_every=1000", "--set", "eval_episodes=5",
         "--set", "final_eval_episodes=5", "-q"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def assert_one_error_line(result: Result, code: int, *fragments: str) -> str:
    """The result failed with `code` and exactly one stderr line naming the problem."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def assert_no_runs(runs: Path) -> None:
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())


@pytest.fixture
def trained(frozenlake_run: Path) -> Path:
    return frozenlake_run


# -- --config files ---------------------------------------------------------------------------

def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("alpha: 0.3\nupdate: expected_sarsa # é\n".encode("latin-1"))
    runs = tmp_path / "runs"
    result = invoke("run", "agent", "frozenlake", "--config", str(config), "--runs-dir", str(runs))
    assert_one_error_line(result, 2, str(config), "is not UTF-8", "save it as UTF-8")
    assert_no_runs(runs)


@pytest.mark.parametrize("text", ["1: 0.2\n", "alpha: 0.2\ntrue: x\n", "~: 3\n"])
def test_config_file_whose_keys_are_not_strings(tmp_path: Path, text: str) -> None:
    config = tmp_path / "keys.yaml"
    config.write_text(text)
    runs = tmp_path / "runs"
    result = invoke("run", "agent", "frozenlake", "--config", str(config), "--runs-dir", str(runs))
    assert_one_error_line(result, 2, str(config), "is not a config name", "alpha: 0.2")
    assert_no_runs(runs)


@pytest.mark.parametrize("args", [
    ["run", "generative", "vae", "--dataset", "digits"],
    ["run", "agent", "cartpole", "--algo", "dqn"],
    ["run", "agent", "cartpole", "--algo", "ppo"],
])
def test_an_unknown_activation_is_one_line(tmp_path: Path, args: list[str]) -> None:
    runs = tmp_path / "runs"
    result = invoke(*args, "--set", "activation=foo", "--runs-dir", str(runs))
    assert_one_error_line(result, 2, "activation must be one of tanh, relu", "got 'foo'")
    assert_no_runs(runs)


def test_the_activation_names_a_config_accepts_are_the_modules() -> None:
    from toolkit.config import ACTIVATION_NAMES
    from toolkit.nets.mlp import ACTIVATIONS

    assert set(ACTIVATION_NAMES) == set(ACTIVATIONS)


# -- envs that need a package that is not installed ---------------------------------------------

@pytest.fixture
def missing_module_env() -> Iterator[str]:
    env_id = "GymkitTest/NeedsMissingModule-v0"
    gym.register(env_id, entry_point="gymkit_test_no_such_module.envs:Env")
    try:
        yield env_id
    finally:
        del gym.registry[env_id]


def test_env_whose_module_is_missing(missing_module_env: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke("run", "agent", missing_module_env, "--algo", "qlearning",
                    "--runs-dir", str(runs))
    assert_one_error_line(result, 2, missing_module_env, "'gymkit_test_no_such_module'",
                          "pip install gymkit_test_no_such_module")
    assert_no_runs(runs)


def test_env_that_raises_dependency_not_installed(tmp_path: Path) -> None:
    def needs_pygame(**_: object) -> gym.Env:
        raise gym.error.DependencyNotInstalled(
            'pygame is not installed, run `pip install "gymnasium[toy-text]"`')

    env_id = "GymkitTest/NeedsPygame-v0"
    gym.register(env_id, entry_point=needs_pygame)
    runs = tmp_path / "runs"
    try:
        result = invoke("run", "agent", env_id, "--algo", "qlearning", "--runs-dir", str(runs))
    finally:
        del gym.registry[env_id]
    assert_one_error_line(result, 2, env_id, "pygame is not installed",
                          'pip install "gymnasium[toy-text]"')
    assert_no_runs(runs)


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed")
@pytest.mark.parametrize("env_id", ["tabular/CliffWalking-v0", "phys2d/CartPole-v1"])
def test_gymnasium_jax_envs_without_jax(env_id: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke("run", "agent", env_id, "--algo", "qlearning", "--runs-dir", str(runs))
    assert_one_error_line(result, 2, env_id, "'jax'", "pip install jax")
    assert_no_runs(runs)


# -- the guard: anything else is a bug, reported in one line with a traceback file -------------

def test_unexpected_exception_is_one_line_with_a_traceback_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("the tensor\nwas\t not there")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(launch, "prepare", broken)
    result = invoke("run", "agent", "frozenlake", "--runs-dir", str(tmp_path / "runs"))
    line = assert_one_error_line(result, 1, "error: unexpected ValueError: the tensor was not "
                                            "there; full traceback in ")
    path = Path(line.rpartition("full traceback in ")[2])
    assert path.parent == tmp_path and path.name.startswith("gymkit-traceback-")
    assert path.suffix == ".txt"
    text = path.read_text()
    assert "Traceback" in text and "ValueError: the tensor" in text and "def broken" not in text
    assert "in broken" in text  # the frame that raised


def test_two_unexpected_errors_get_two_traceback_files(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("x")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(launch, "rebuild", broken)
    for _ in range(2):
        assert_one_error_line(invoke("eval", str(tmp_path)), 1, "unexpected KeyError")
    assert len(list(tmp_path.glob("gymkit-traceback-*.txt"))) == 2


def test_unexpected_exception_that_names_its_own_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = tmp_path / "run" / "traceback.txt"

    def broken(*args: object, **kwargs: object) -> None:
        exc = RuntimeError("CUDA error: device-side assert triggered")
        exc.gymkit_traceback = str(written)  # type: ignore[attr-defined]
        raise exc

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(launch, "prepare", broken)
    result = invoke("run", "agent", "frozenlake", "--runs-dir", str(tmp_path / "runs"))
    assert_one_error_line(result, 1, "unexpected RuntimeError: CUDA error: device-side assert "
                                     f"triggered; full traceback in {written}")
    assert not list(tmp_path.glob("gymkit-traceback-*"))


def test_a_plugin_bug_during_a_run_points_to_the_run_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.qlearning import QLearning

    def train_step(self: QLearning) -> dict[str, float]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(QLearning, "train_step", train_step)
    runs = tmp_path / "runs"
    result = invoke("run", "agent", "frozenlake", "--runs-dir", str(runs), *SMALL)
    (run,) = runs.iterdir()
    assert_one_error_line(result, 1, "unexpected ZeroDivisionError: division by zero; full "
                                     f"traceback in {run / 'traceback.txt'}")
    assert "Traceback" in (run / "traceback.txt").read_text()
    assert '"failed"' in (run / "summary.json").read_text()


def test_usage_errors_are_one_line_too() -> None:
    result = invoke("run", "agent")
    assert_one_error_line(result, 2, "Missing argument 'ENV'", "run agent --help")
    result = invoke("eval", "somewhere", "--render", "window")
    assert_one_error_line(result, 2, "--render", "eval --help")


# -- eval --video and --render human ----------------------------------------------------------

def test_video_under_a_file(trained: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = invoke("eval", str(trained), "--video", str(blocker / "videos"))
    assert_one_error_line(result, 2, f"{blocker / 'videos'}", "is a file", "another folder")
    assert blocker.read_text() == "x"


def test_video_into_an_existing_file(trained: Path, tmp_path: Path) -> None:
    target = tmp_path / "video.mp4"
    target.write_text("x")
    result = invoke("eval", str(trained), "--video", str(target))
    assert_one_error_line(result, 2, str(target), "is a file", "pass a folder")
    assert target.read_text() == "x"


def test_video_into_a_folder_with_earlier_videos_is_refused(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    videos = tmp_path / "videos"
    first = invoke("eval", str(trained), "--video", str(videos), "--episodes", "1")
    assert first.exit_code == 0, first.output
    (earlier,) = videos.glob("*.mp4")
    before = earlier.read_bytes()
    (videos / "videos-2").mkdir()  # a name inside, not beside: the suggestion looks beside it
    result = invoke("eval", str(trained), "--video", str(videos), "--episodes", "1")
    assert_one_error_line(result, 2, "already holds 1 earlier video",
                          f"pass a new folder, e.g. --video {tmp_path / 'videos-2'}")
    assert earlier.read_bytes() == before and len(list(videos.glob("*.mp4"))) == 1
    (tmp_path / "videos-2").mkdir()
    result = invoke("eval", str(trained), "--video", str(videos))
    assert_one_error_line(result, 2, f"--video {tmp_path / 'videos-3'}")


def test_video_into_an_empty_existing_folder_is_fine(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    result = invoke("eval", str(trained), "--video", str(tmp_path), "--episodes", "1")
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.mp4"))) == 1
    assert "Overwriting" not in result.output


def test_render_human_with_the_dummy_video_driver(trained: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    result = invoke("eval", str(trained), "--render", "human")
    assert_one_error_line(result, 2, "--render human needs a display", "SDL_VIDEODRIVER=dummy",
                          "--render ansi", "--video DIR")


def test_render_human_without_a_display_on_linux(trained: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("eval", str(trained), "--render", "human")
    assert_one_error_line(result, 2, "neither DISPLAY nor WAYLAND_DISPLAY is set",
                          "--render ansi", "--video DIR")


# -- tensorboard ports ------------------------------------------------------------------------

@pytest.fixture
def no_tensorboard_process(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr("toolkit.cli.serve", lambda cmd: calls.append(cmd) or 0)
    return calls


def test_tensorboard_on_a_busy_port(tmp_path: Path, no_tensorboard_process: list) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = invoke("tensorboard", str(tmp_path), "--port", str(port))
    assert_one_error_line(result, 2, f"cannot serve on port {port}", "pass another port")
    assert not no_tensorboard_process
    assert "http://" not in result.output


@pytest.mark.parametrize("port", ["0", "65536", "-80"])
def test_tensorboard_on_an_invalid_port(port: str, tmp_path: Path,
                                        no_tensorboard_process: list) -> None:
    result = invoke("tensorboard", str(tmp_path), "--port", port)
    assert_one_error_line(result, 2, f"--port must be in 1..65535, got {port}")
    assert not no_tensorboard_process


def test_a_bug_outside_any_command_is_one_line_too(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import toolkit.cli

    def broken() -> None:
        raise RuntimeError("no console")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(toolkit.cli, "stdout", broken)
    result = invoke("--version")  # runs in the option's callback, before any command
    assert_one_error_line(result, 1, "unexpected RuntimeError: no console; full traceback in "
                                     f"{tmp_path}")
