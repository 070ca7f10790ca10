"""Bad input that once took the bug path or was checked too late: each is one line on stderr,
exit code 2, no traceback file, and no run directory that looks finished (or none at all).

docs/testing.md lists these inputs with their messages; `test_the_table_names_tests_that_exist`
keeps that table honest.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from toolkit import launch
from toolkit.cli import app
from toolkit.config import MAX_BUDGET
from toolkit.errors import ConfigError, GymkitError

SMALL = ["--steps", "2000", "--set", "eval_every=1000", "--set", "eval_episodes=5",
         "--set", "final_eval_episodes=5", "-q"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def tracebacks() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("gymkit-traceback-*")}


@pytest.fixture
def no_new_traceback() -> Iterator[None]:
    before = tracebacks()
    yield
    assert tracebacks() == before, "a traceback file was written: the bug path"


def one_line(result: Result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def assert_no_runs(runs: Path) -> None:
    assert not runs.exists() or not any(runs.rglob("config.json")), list(runs.rglob("*"))


@pytest.fixture
def agent_run(frozenlake_run: Path) -> Path:
    return frozenlake_run


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("vae-runs")
    result = invoke("run", "generative", "vae", "--dataset", "digits", "--epochs", "1",
                    "--runs-dir", str(runs), "-q")
    assert result.exit_code == 0, result.output
    (path,) = runs.iterdir()
    return path


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


# -- section 2: the bug path ----------------------------------------------------------------

@pytest.mark.parametrize("command", [["eval", "--episodes", "2"], ["resume", "-q"],
                                     ["reproduce", "-q"]])
def test_a_config_json_that_is_not_utf8(agent_run: Path, tmp_path: Path, command: list[str],
                                        no_new_traceback: None) -> None:
    run = copy_of(agent_run, tmp_path)
    (run / "config.json").write_bytes(b'{"kind": "agent", "note": "\xe9t\xe9"}')
    one_line(invoke(command[0], str(run), *command[1:]), "config.json", "is not UTF-8 text")
    assert [p.name for p in tmp_path.iterdir()] == [run.name]  # no rerun directory


def test_sample_onto_a_folder_that_cannot_be_written(vae_run: Path,
                                                     no_new_traceback: None) -> None:
    # /proc takes no new files, even from root; `os.access` cannot tell beforehand, so the
    # write itself fails and must still be one line.
    one_line(invoke("sample", str(vae_run), "--out", "/proc/gymkit-samples.png"),
             "cannot write /proc/gymkit-samples.png")


def test_sample_under_a_file(vae_run: Path, tmp_path: Path, no_new_traceback: None) -> None:
    (tmp_path / "notes.txt").write_text("x")
    one_line(invoke("sample", str(vae_run), "--out", str(tmp_path / "notes.txt" / "a.png")),
             "is a file")


def test_sample_too_many_for_one_grid(vae_run: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      no_new_traceback: None) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before --n was checked")

    monkeypatch.setattr(launch, "rebuild", never)
    one_line(invoke("sample", str(vae_run), "--n", "1000000", "--out", str(tmp_path / "s.png")),
             "--n 1,000,000", "1,024 at most", "--seed")
    assert not (tmp_path / "s.png").exists()


def test_sample_draws_in_chunks_and_writes_the_grid(vae_run: Path, tmp_path: Path) -> None:
    from PIL import Image

    from toolkit import cli

    out = tmp_path / "grid.png"
    result = invoke("sample", str(vae_run), "--n", str(cli.SAMPLE_CHUNK + 4), "--out", str(out))
    assert result.exit_code == 0, result.output
    width, height = Image.open(out).size
    assert width > 0 and height > 0
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


@pytest.mark.parametrize(("hyperparams", "fragments"), [
    ("{n_step: 512}", ["takes no argument 'n_step'", "did you mean: n_steps"]),
    ("{learning_rate: fast}", ["hyperparams.learning_rate must be a number or lin_<x>",
                               "got 'fast'"]),
    ("{policy_kwargs: {}}", ["must not set 'policy_kwargs'", "net_arch"]),
    ("{train_freq: [1, episode]}", []),  # a DQN keyword: sb3-ppo has no train_freq
])
def test_sb3_keywords_are_checked_before_anything_is_built(
        tmp_path: Path, hyperparams: str, fragments: list[str], no_new_traceback: None) -> None:
    runs = tmp_path / "runs"
    result = invoke("run", "agent", "cartpole", "--algo", "sb3-ppo", "--steps", "1000",
                    "--set", f"hyperparams={hyperparams}", "--runs-dir", str(runs))
    line = one_line(result, *fragments)
    assert "multiple of" not in line  # not the budget check that used to come first
    assert_no_runs(runs)


def test_an_sb3_dqn_train_freq_in_episodes_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"counts episodes; .* write \[1, step\]"):
        launch.prepare("agent", "cartpole", "sb3-dqn",
                       assignments=["hyperparams.train_freq=[1, episode]"])


def test_a_hyperparams_override_merges_into_the_presets(tmp_path: Path) -> None:
    preset = launch.prepare("agent", "cartpole", "sb3-ppo").spec["config"]["hyperparams"]
    assert len(preset) > 3 and preset["n_steps"] != 512
    for assignment in ("hyperparams.n_steps=512", "hyperparams={n_steps: 512}"):
        spec = launch.prepare("agent", "cartpole", "sb3-ppo", assignments=[assignment]).spec
        assert spec["config"]["hyperparams"] == {**preset, "n_steps": 512}, assignment
    config = tmp_path / "c.yaml"
    config.write_text("hyperparams.gamma: 0.9\n")
    spec = launch.prepare("agent", "cartpole", "sb3-ppo", config_file=config,
                          assignments=["hyperparams.n_steps=512"]).spec
    assert spec["config"]["hyperparams"] == {**preset, "n_steps": 512, "gamma": 0.9}


# -- section 3: checked too late, or not at all ---------------------------------------------

def test_dcgan_on_a_dataset_without_labels_leaves_no_run(tmp_path: Path,
                                                         no_new_traceback: None) -> None:
    runs = tmp_path / "runs"
    one_line(invoke("run", "generative", "dcgan", "--dataset", "bars-and-stripes",
                    "--runs-dir", str(runs)), "needs labels", "bars-and-stripes")
    assert_no_runs(runs)


def _generative_names() -> list[str]:
    from toolkit.registry import GENERATIVE

    return [name for name in GENERATIVE.names() if ":" not in name]


@pytest.mark.parametrize("dataset", ["bars-and-stripes", "digits"])
@pytest.mark.parametrize("plugin", _generative_names())
def test_every_model_and_dataset_that_do_not_fit_are_refused_before_training(
        plugin: str, dataset: str) -> None:
    """Either the launcher refuses the pair (before any run directory), or a train step, an
    evaluation and the images all work: nothing is found out after an epoch of training."""
    from toolkit.registry import GENERATIVE

    units = GENERATIVE.get(plugin).budget_units
    flags = {"seed": 0, **({"steps": 1} if "steps" in units else {"epochs": 1})}
    try:
        prepared = launch.prepare("generative", dataset, plugin, flags=flags)
    except GymkitError:
        return
    trainer = prepared.trainer
    try:
        trainer.train_step()
        trainer.evaluate(1, 5)
        trainer.images()
    finally:
        trainer.close()


@pytest.mark.parametrize(("args", "fragments"), [
    (["cartpole", "--algo", "dqn", "--set", "batch_size=100000", "--set", "buffer_size=100"],
     ["batch_size (100000) must not exceed buffer_size (100)"]),
    (["cartpole", "--algo", "dqn", "--steps", "1000", "--set", "learning_starts=1000"],
     ["learning_starts (1,000) is not below the budget of 1,000 steps"]),
    (["cartpole", "--algo", "ppo", "--set", "n_steps=16", "--set", "n_envs=2", "--set",
      "batch_size=64"], ["batch_size (64) exceeds the rollout", "16 x 2 = 32"]),
    (["frozenlake", "--steps", "100000000000000000000000"],
     [f"steps must be at most {MAX_BUDGET:,}"]),
])
def test_relations_between_keys_are_checked_up_front(tmp_path: Path, args: list[str],
                                                     fragments: list[str],
                                                     no_new_traceback: None) -> None:
    runs = tmp_path / "runs"
    one_line(invoke("run", "agent", *args, "--runs-dir", str(runs)), *fragments)
    assert_no_runs(runs)


def test_an_empty_runs_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_line(invoke("run", "agent", "frozenlake", "--runs-dir", ""), "--runs-dir", "is empty")
    assert list(tmp_path.iterdir()) == []


def test_a_config_file_with_a_key_twice(tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("alpha: 0.1\ngamma: 0.9\nalpha: 0.5\n")
    one_line(invoke("run", "agent", "frozenlake", "--config", str(config),
                    "--runs-dir", str(tmp_path / "runs")),
             "the key 'alpha' appears twice (line 3)")
    nested = tmp_path / "nested.yaml"
    nested.write_text("hyperparams:\n  n_steps: 8\n  n_steps: 16\n")
    with pytest.raises(ConfigError, match="'n_steps' appears twice"):
        launch.prepare("agent", "cartpole", "sb3-ppo", config_file=nested)


def test_a_checkpoint_of_random_bytes_is_not_blamed_on_a_plugin(agent_run: Path,
                                                                tmp_path: Path) -> None:
    run = copy_of(agent_run, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(bytes(range(256)) * 4)
    line = one_line(invoke("eval", str(run), "--episodes", "2"), "is not a gymkit checkpoint")
    assert "plugin" not in line


def test_a_bad_grid_value_stops_the_sweep_before_any_trial(tmp_path: Path,
                                                           no_new_traceback: None) -> None:
    result = invoke("sweep", "agent", "frozenlake", "--seeds", "0-1", "--grid",
                    "alpha=0.1,-5", "--steps", "1000", "--workers", "1",
                    "--runs-dir", str(tmp_path))
    one_line(result, "--grid alpha=-5", "alpha must be in (0, 1]", "no trial was started")
    assert not (tmp_path / "sweeps").exists()


def test_a_sweep_of_two_seeds_prints_no_interval(tmp_path: Path) -> None:
    result = invoke("sweep", "agent", "frozenlake-deterministic", "--seeds", "0-1", "--steps",
                    "1000", "--workers", "1", "--runs-dir", str(tmp_path), "--set",
                    "eval_every=500", "--set", "final_eval_episodes=5", "-q")
    assert result.exit_code == 0, result.output
    assert "n too small" in result.output
    assert not re.search(r"\d ± \d", result.output)  # no interval printed for any metric


# -- section 4: leftovers -------------------------------------------------------------------

def test_a_killed_run_is_told_from_a_running_one(agent_run: Path, tmp_path: Path) -> None:
    import fcntl

    from toolkit.rundir import RunDir

    run = copy_of(agent_run, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    assert RunDir(run).status() == "died"  # nobody holds its lock: the process is gone
    result = invoke("eval", str(run), "--episodes", "2")
    assert result.exit_code == 0 and "died while training" in result.stderr
    with (run / ".lock").open("w") as handle:  # a live process holds it
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert RunDir(run).status() == "running"
        result = invoke("eval", str(run), "--episodes", "2")
        assert result.exit_code == 0 and "still training" in result.stderr


def test_the_docs_table_names_inputs_that_are_tested() -> None:
    """docs/testing.md's table of bad inputs points at tests that exist."""
    text = (Path(__file__).parent.parent / "docs" / "testing.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", text))
    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    assert named and not {name for name in named if f"def {name}(" not in sources}


def test_a_gymkit_error_subclass_survives_the_grid_prefix() -> None:
    # run_sweep rebuilds the error with the grid value in front: every subclass takes a
    # single message.
    for cls in GymkitError.__subclasses__():
        assert str(cls("x")) == "x"
