"""A run directory is data: a forged config.json cannot make gymkit import or call code.

Each forged entry names a module that, if imported, writes a marker file; the commands that
rebuild a run (eval, resume, reproduce, sweep reruns) must refuse it with one line and exit
code 2, with the marker never written and the module never imported. With --trust-config a
legitimate third-party env (a ``module:Env-v0`` id) works.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from toolkit import launch, sweep
from toolkit.cli import app
from toolkit.trust import declared_entries, is_gymnasium_wrapper

SMALL = ["--steps", "2000", "--set", "eval_every=1000", "--set", "eval_episodes=5",
         "--set", "final_eval_episodes=5", "-q"]
MARKER_MODULE = "gymkit_forged_marker"
THIRD_PARTY = "gymkit_thirdparty_corridor"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module on sys.path that writes `marker` when imported, and whose wrapper and
    setup function write it when called."""
    folder = tmp_path / "modules"
    folder.mkdir()
    path = tmp_path / "marker.txt"
    (folder / f"{MARKER_MODULE}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(path)!r}).write_text("imported")

        def register():
            Path({str(path)!r}).write_text("called")

        def Wrapper(env, **kwargs):
            Path({str(path)!r}).write_text("called")
            return env
        """))
    monkeypatch.syspath_prepend(str(folder))
    yield path
    sys.modules.pop(MARKER_MODULE, None)


@pytest.fixture
def trained(frozenlake_run: Path) -> Path:
    return frozenlake_run


def forged_copy(run: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of `run` whose config.json's env block `edit` changed."""
    import shutil

    copy = tmp_path / "forged-run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
    config = json.loads((copy / "config.json").read_text())
    edit(config["env"])
    (copy / "config.json").write_text(json.dumps(config))
    summary = json.loads((copy / "summary.json").read_text())
    summary["status"] = "interrupted"  # so that resume would go ahead
    (copy / "summary.json").write_text(json.dumps(summary))
    return copy


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "setup module": (lambda env: env.update(setup=[MARKER_MODULE]),
                     f"setup entry '{MARKER_MODULE}'"),
    "setup function": (lambda env: env.update(setup=[f"{MARKER_MODULE}:register"]),
                       f"setup entry '{MARKER_MODULE}:register'"),
    "os:system": (lambda env: env.update(setup=["os:system"]), "setup entry 'os:system'"),
    "builtins:print": (lambda env: env.update(wrappers=[["builtins:print",
                                                          {"sep": "FORGED-OUTPUT"}]]),
                       "wrapper 'builtins:print'"),
    "wrapper module": (lambda env: env.update(wrappers=[[f"{MARKER_MODULE}:Wrapper", {}]]),
                       f"wrapper '{MARKER_MODULE}:Wrapper'"),
    "module:Env id": (lambda env: env.update(id=f"{MARKER_MODULE}:Forged-v0"),
                      f"env id '{MARKER_MODULE}:Forged-v0'"),
    "RecordVideo": (lambda env: env.update(wrappers=[["RecordVideo",
                                                       {"video_folder": "/tmp/forged"}]]),
                    "wrapper 'RecordVideo'"),
}
COMMANDS = {"eval": ["eval", "--episodes", "2"], "resume": ["resume", "-q"],
            "reproduce": ["reproduce", "-q"]}


@pytest.mark.parametrize("forgery", FORGERIES)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_forged_config_is_refused_before_anything_is_imported(
        trained: Path, tmp_path: Path, marker: Path, forgery: str, command: str) -> None:
    edit, named = FORGERIES[forgery]
    forged = forged_copy(trained, tmp_path, edit)
    before = sorted(p.name for p in forged.parent.iterdir())
    args = COMMANDS[command]
    result = invoke(args[0], str(forged), *args[1:])
    line = one_error_line(result)
    assert named in line and "--trust-config" in line
    assert "neither gymkit nor an installed plugin declares" in line
    assert not marker.exists()
    assert MARKER_MODULE not in sys.modules
    assert "FORGED-OUTPUT" not in result.output
    assert sorted(p.name for p in forged.parent.iterdir()) == before  # no rerun directory


def test_trust_config_lets_gymkit_import_what_the_run_names(trained: Path, tmp_path: Path,
                                                            marker: Path) -> None:
    edit, _ = FORGERIES["setup module"]
    forged = forged_copy(trained, tmp_path, edit)
    result = invoke("eval", str(forged), "--episodes", "2", "--trust-config")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"


def test_what_gymkit_and_its_presets_declare_needs_no_flag(trained: Path, tmp_path: Path) -> None:
    declared = declared_entries()
    assert {"ale_py", "minatar.gym:register_envs", "envs.wrappers:MaskVelocity",
            "AtariPreprocessing", "ALE/Pong-v5"} <= declared
    assert is_gymnasium_wrapper("ClipReward") and not is_gymnasium_wrapper("RecordVideo")
    assert not is_gymnasium_wrapper("builtins:print") and not is_gymnasium_wrapper("nope")
    forged = forged_copy(trained, tmp_path, lambda env: env.update(
        wrappers=[["ClipReward", {"min_reward": 0.0, "max_reward": 1.0}]]))
    result = invoke("eval", str(forged), "--episodes", "2")
    assert result.exit_code == 0, result.output


# -- a third party's env, named by the user's own command ---------------------------------------

@pytest.fixture
def corridor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A third-party module that registers an env when gymnasium imports it."""
    import gymnasium as gym

    folder = tmp_path / "thirdparty"
    folder.mkdir()
    (folder / f"{THIRD_PARTY}.py").write_text(textwrap.dedent("""
        import gymnasium as gym

        class Corridor(gym.Env):
            observation_space = gym.spaces.Discrete(4)
            action_space = gym.spaces.Discrete(2)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.position = 0
                return self.position, {}

            def step(self, action):
                self.position = max(0, min(3, self.position + (1 if action else -1)))
                done = self.position == 3
                return self.position, float(done), done, False, {}

        gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=20)
        """))
    monkeypatch.syspath_prepend(str(folder))
    yield f"{THIRD_PARTY}:Corridor-v0"
    sys.modules.pop(THIRD_PARTY, None)
    gym.registry.pop("Corridor-v0", None)


def test_a_third_party_env_id_needs_the_flag_to_be_rebuilt(corridor: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke("run", "agent", corridor, "--algo", "qlearning", "--runs-dir", str(runs),
                    *SMALL)
    assert result.exit_code == 0, result.output  # the user's own command: their choice
    (run,) = runs.iterdir()
    line = one_error_line(invoke("eval", str(run), "--episodes", "2"))
    assert f"env id '{corridor}'" in line
    result = invoke("eval", str(run), "--episodes", "2", "--trust-config")
    assert result.exit_code == 0, result.output
    result = invoke("reproduce", str(run), "-q", "--trust-config")
    assert result.exit_code == 0, result.output
    assert "identical" in result.output


def test_a_sweep_reruns_its_own_trials_of_a_third_party_env(corridor: str,
                                                            tmp_path: Path) -> None:
    """A sweep's rerun resumes its interrupted trial: the sweep's own command names the env."""
    prepared = launch.prepare("agent", corridor, "qlearning",
                              flags={"seed": 0, "steps": 4000, "eval_every": 1000,
                                     "checkpoint_every": 1000})
    slot = tmp_path / "slot"
    runner = launch.start(prepared, slot, quiet=True,
                          on_step=lambda r: r.request_stop() if r.trainer.progress()[
                              "steps"] >= 1500 else None)
    assert runner.run().interrupted
    task = {"slot": str(slot), "kind": "agent", "target": corridor, "plugin": "qlearning",
            "config_file": None, "assignments": [], "hyperparams": None, "data_dir": None,
            "flags": {"seed": 0, "steps": 4000}}
    refused = sweep.run_trial(task)
    assert refused["status"] == "failed" and "--trust-config" in refused["error"]
    outcome = sweep.run_trial({**task, "vouched": sorted({corridor})})
    assert outcome["status"] == "completed", outcome
    assert len(list(slot.iterdir())) == 1  # resumed in place, not started afresh


def test_a_checkpoint_cannot_point_its_side_folder_elsewhere(tmp_path: Path) -> None:
    from toolkit.checkpoint import load_checkpoint, save_checkpoint

    prepared = launch.prepare("agent", "cartpole", "dqn",
                              flags={"seed": 0, "steps": 256},
                              assignments=["learning_starts=64", "eval_every=128",
                                           "eval_episodes=1", "final_eval_episodes=1"])
    runner = launch.start(prepared, tmp_path / "runs", quiet=True)
    runner.run()
    runner.trainer.close()
    last = runner.rundir.checkpoint("last")
    payload = load_checkpoint(last)
    payload = {k: v for k, v in payload.items() if k not in ("format", "format_version")}
    payload["extra"] = "../../../elsewhere"
    save_checkpoint(last, payload)
    summary = json.loads(runner.rundir.summary_path.read_text())
    summary["status"] = "interrupted"
    runner.rundir.summary_path.write_text(json.dumps(summary))
    line = one_error_line(invoke("resume", str(runner.rundir.path), "-q"))
    assert "not a folder gymkit writes" in line
