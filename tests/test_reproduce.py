"""`gymkit reproduce`: every plugin's CPU run reruns bit for bit; edits are named exactly.

docs/reproducibility.md points at the tests here for each of its CPU claims.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.environments import resolve_env
from toolkit.registry import AGENTS, GENERATIVE
from toolkit.reproduce import Difference, compare_metrics, read_metrics, same_value

cli = CliRunner()
#: Evaluations small enough for a run of a second or two.
EVAL = ["--set", "eval_every=64", "--set", "eval_episodes=2", "--set", "final_eval_episodes=2"]
#: A tiny CPU run of each registered plugin (`gymkit run` arguments), as in test_contract.
RUNS: dict[str, list[str]] = {
    "qlearning": ["agent", "frozenlake", "--algo", "qlearning", "--steps", "400",
                  "--set", "steps_per_call=100", "--set", "eval_every=200",
                  "--set", "eval_episodes=5", "--set", "final_eval_episodes=5"],
    "expected-sarsa": ["agent", "taxi", "--algo", "qlearning", "--set", "update=expected_sarsa",
                       "--steps", "400", "--set", "steps_per_call=100",
                       "--set", "eval_every=200", "--set", "eval_episodes=5",
                       "--set", "final_eval_episodes=5"],
    "dqn": ["agent", "cartpole", "--algo", "dqn", "--steps", "128", "--set", "steps_per_call=32",
            "--set", "learning_starts=32", "--set", "batch_size=16", "--set", "hidden=[16]",
            *EVAL],
    "a2c": ["agent", "cartpole", "--algo", "a2c", "--steps", "128", "--set", "n_envs=2",
            "--set", "n_steps=8", "--set", "hidden=[16]", *EVAL],
    "ppo": ["agent", "cartpole", "--algo", "ppo", "--steps", "128", "--set", "n_envs=2",
            "--set", "n_steps=8", "--set", "hidden=[16]", "--set", "n_epochs=2",
            "--set", "batch_size=8", *EVAL],
    "a2c-lstm": ["agent", "cartpole-masked", "--algo", "a2c-lstm", "--steps", "128",
                 "--set", "n_envs=2", "--set", "n_steps=8", "--set", "hidden=[16]",
                 "--set", "lstm_hidden_size=8", *EVAL],
    "ppo-lstm": ["agent", "cartpole-masked", "--algo", "ppo-lstm", "--steps", "128",
                 "--set", "n_envs=2", "--set", "n_steps=8", "--set", "hidden=[16]",
                 "--set", "n_epochs=2", "--set", "batch_size=8", "--set", "lstm_hidden_size=8",
                 *EVAL],
    "sb3-dqn": ["agent", "cartpole", "--algo", "sb3-dqn", "--steps", "128",
                "--set", "hyperparams={learning_starts: 16, train_freq: 4, batch_size: 8}",
                "--set", "steps_per_call=32", "--set", "net_arch=[16]", *EVAL],
    "sb3-a2c": ["agent", "cartpole", "--algo", "sb3-a2c", "--steps", "128",
                "--set", "hyperparams={n_steps: 8}", "--set", "steps_per_call=16",
                "--set", "net_arch=[16]", *EVAL],
    "sb3-ppo": ["agent", "cartpole", "--algo", "sb3-ppo", "--steps", "256",
                "--set", "hyperparams={n_steps: 32, batch_size: 32, n_epochs: 1}",
                "--set", "steps_per_call=32", "--set", "net_arch=[16]",
                "--set", "eval_every=128", "--set", "eval_episodes=2",
                "--set", "final_eval_episodes=2"],
    **{name: ["generative", name, "--epochs", "1"] for name in
       ("vae", "autoencoder", "classifier", "dcgan", "rbm", "dbn")},
}


def invoke(*args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


def train(runs: Path, name: str, *extra: str) -> Path:
    """A tiny run of `name` (a key of RUNS) in `runs`; its run directory."""
    before = set(runs.iterdir()) if runs.is_dir() else set()
    code, out = invoke("run", *RUNS[name], *extra, "--runs-dir", str(runs), "-q")
    assert code == 0, out
    (path,) = set(runs.iterdir()) - before
    return path


def reproduce(path: Path, *extra: str) -> tuple[int, str, Path | None]:
    """`gymkit reproduce path`: exit code, output and the rerun's directory (if any)."""
    before = set(path.parent.iterdir())
    code, out = invoke("reproduce", str(path), "-q", *extra)
    new = set(path.parent.iterdir()) - before
    return code, out, new.pop() if new else None


def one_line(out: str) -> str:
    return " ".join(out.split())


def edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def qlearning_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("runs"), "qlearning")


def test_every_registered_plugin_has_a_tiny_run() -> None:
    assert set(AGENTS.names()) | set(GENERATIVE.names()) <= set(RUNS)


@pytest.mark.parametrize("name", list(RUNS))
def test_a_cpu_run_of_each_plugin_reproduces_bit_for_bit(name: str, tmp_path: Path) -> None:
    original = train(tmp_path, name)
    code, out, rerun = reproduce(original)
    assert code == 0, out
    assert rerun is not None and rerun != original
    text = one_line(out)
    assert f"original: {original}" in text and f"rerun: {rerun}" in text
    assert "identical:" in text
    lines = read_metrics(original / "metrics.jsonl")
    assert len(lines) >= 2 and lines == read_metrics(rerun / "metrics.jsonl")
    assert json.loads((rerun / "config.json").read_text())["reproduces"] == str(original)


def test_an_edited_config_names_the_first_difference(tmp_path: Path) -> None:
    original = train(tmp_path, "qlearning")
    records = read_metrics(original / "metrics.jsonl")
    edit_json(original / "config.json", lambda c: c["config"].update(alpha=0.5))
    code, out, rerun = reproduce(original)
    assert code == 1, out
    assert rerun is not None
    changed = read_metrics(rerun / "metrics.jsonl")
    expected = compare_metrics(records, changed).difference
    assert expected is not None and expected.key is not None
    # The learning rate is logged in the first record: the first difference is there.
    assert (expected.line, expected.key) == (1, "charts/learning_rate")
    assert (f"different: line 1 of metrics.jsonl (step {records[0]['step']}), key "
            f"charts/learning_rate: 0.1 in the original, 0.5 in the rerun") in one_line(out)


def test_an_edited_seed_is_a_difference(tmp_path: Path) -> None:
    original = train(tmp_path, "dqn")
    edit_json(original / "config.json", lambda c: c["run"].update(seed=1))
    code, out, _ = reproduce(original)
    assert code == 1 and "different: line 1 of metrics.jsonl" in one_line(out), out


@pytest.mark.parametrize(("line", "key"), [(1, "charts/epsilon"), (3, "losses/td_error"),
                                           (4, "eval/mean_length")])
def test_an_edited_value_is_named_with_its_step_and_both_values(
        qlearning_run: Path, tmp_path: Path, line: int, key: str) -> None:
    copy = tmp_path / qlearning_run.name
    copy.mkdir()
    (copy / "config.json").write_text((qlearning_run / "config.json").read_text())
    (copy / "summary.json").write_text((qlearning_run / "summary.json").read_text())
    records = read_metrics(qlearning_run / "metrics.jsonl")
    assert key in records[line - 1]
    before = records[line - 1][key]
    records[line - 1][key] = before + 1e-12 if before else 1e-300
    (copy / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, _ = reproduce(copy)
    assert code == 1, out
    assert (f"line {line} of metrics.jsonl (step {records[line - 1]['step']}), key {key}: "
            f"{records[line - 1][key]!r} in the original, {before!r} in the rerun"
            ) in one_line(out)


def test_a_missing_last_line_of_a_completed_run_is_a_difference(qlearning_run: Path,
                                                                 tmp_path: Path) -> None:
    copy = tmp_path / qlearning_run.name
    copy.mkdir()
    for name in ("config.json", "summary.json"):
        (copy / name).write_text((qlearning_run / name).read_text())
    lines = (qlearning_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (copy / "metrics.jsonl").write_text("".join(lines[:-1]))
    code, out, _ = reproduce(copy)
    step = json.loads(lines[-1])["step"]
    assert code == 1
    assert f"line {len(lines)} of metrics.jsonl (step {step}) is only in the rerun" in out


def test_an_interrupted_original_is_compared_over_the_lines_it_recorded(
        qlearning_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / qlearning_run.name
    copy.mkdir()
    (copy / "config.json").write_text((qlearning_run / "config.json").read_text())
    summary = json.loads((qlearning_run / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    lines = (qlearning_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (copy / "metrics.jsonl").write_text("".join(lines[:2]))
    code, out, rerun = reproduce(copy)
    assert code == 0, out
    assert rerun is not None and len(read_metrics(rerun / "metrics.jsonl")) == len(lines)
    text = one_line(out)
    assert "the original was interrupted, not completed: compared the 2 lines it recorded" in text
    assert "identical: 2 lines" in text


def _interrupt_and_resume(runs: Path, plugin: str, flags: dict[str, Any],
                          assignments: list[str], stop_at: int) -> Path:
    from toolkit import launch

    prepared = launch.prepare("agent", "cartpole", plugin, flags=flags, assignments=assignments)
    runner = launch.start(prepared, runs, quiet=True, on_step=lambda r: r.request_stop()
                          if r.trainer.progress()["steps"] >= stop_at else None)
    try:
        assert runner.run().interrupted
    finally:
        runner.trainer.close()
    resumed, checkpoint = launch.resume(runner.rundir.path, quiet=True)
    try:
        assert resumed.run(checkpoint).status == "completed"
    finally:
        resumed.trainer.close()
    return runner.rundir.path


def test_a_difference_after_an_inexact_resume_is_explained(tmp_path: Path) -> None:
    path = _interrupt_and_resume(tmp_path, "dqn", {"steps": 256, "seed": 0}, [
        "steps_per_call=32", "learning_starts=32", "batch_size=16", "hidden=[16]",
        "eval_every=64", "eval_episodes=2", "final_eval_episodes=2"], stop_at=128)
    summary = json.loads((path / "summary.json").read_text())
    assert summary["resumed_at"] == [128] and summary["exact_resume"] is False
    code, out, _ = reproduce(path)
    assert code == 1, out
    text = one_line(out)
    assert "different: line" in text
    assert "the original was resumed (at 128), and dqn resumes with fresh episodes" in text


def test_an_exact_resume_is_not_used_to_explain_a_difference(tmp_path: Path) -> None:
    from toolkit.reproduce import Comparison, Difference, Reproduction

    differs = Comparison(3, 5, 5, Difference(3, 4000, "eval/mean_return", 1.0, 2.0))
    exact = Reproduction(tmp_path, tmp_path, "completed", differs, (), resumed_at=(2000,),
                         exact_resume=True, plugin="qlearning")
    assert not exact.resume_explains()
    before = Reproduction(tmp_path, tmp_path, "completed",
                          Comparison(3, 5, 5, Difference(3, 1000, "x", 1.0, 2.0)), (),
                          resumed_at=(2000,), exact_resume=False, plugin="dqn")
    assert not before.resume_explains()  # the difference comes before the resume
    after = Reproduction(tmp_path, tmp_path, "completed", differs, (), resumed_at=(2000,),
                         exact_resume=False, plugin="dqn")
    assert after.resume_explains()


def test_wall_clock_fields_are_ignored() -> None:
    a = [{"step": 1, "losses/loss": 0.5, "time/SPS": 100.0}]
    b = [{"step": 1, "losses/loss": 0.5, "time/SPS": 250.0}]
    assert compare_metrics(a, b).identical
    assert not compare_metrics(a, [{"step": 1, "losses/loss": 0.5000000000000001}]).identical


def test_values_are_compared_bit_for_bit() -> None:
    assert same_value(float("nan"), float("nan")) and same_value(0.1 + 0.2, 0.30000000000000004)
    assert not same_value(0.0, -0.0) and not same_value(1, 1.0) and not same_value(0.3, 0.1 + 0.2)


def test_a_key_in_one_record_only_is_a_difference() -> None:
    a = [{"step": 5, "x": 1.0}]
    comparison = compare_metrics(a, [{"step": 5, "x": 1.0, "y": 2.0}])
    assert comparison.difference is not None
    assert comparison.difference.describe() == ("line 1 of metrics.jsonl (step 5), key y: "
                                                "(absent) in the original, 2.0 in the rerun")
    assert compare_metrics(a, [{"step": 5, "x": 1.0}], prefix=True).identical


def test_extra_rerun_lines_count_only_for_a_completed_original() -> None:
    a = [{"step": 1, "x": 1.0}]
    b = [*a, {"step": 2, "x": 2.0}]
    assert compare_metrics(a, b).difference == Difference(2, 2, None, None, b[1])
    assert compare_metrics(a, b, prefix=True).identical
    assert compare_metrics(b, a, prefix=True).difference == Difference(2, 2, None, b[1], None)


def test_the_rerun_goes_where_runs_dir_says(qlearning_run: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    code, out = invoke("reproduce", str(qlearning_run), "-q", "--runs-dir", str(target))
    assert code == 0, out
    (rerun,) = target.iterdir()
    assert f"rerun: {rerun}" in one_line(out)


def test_a_changed_plugin_version_is_one_warning_line(qlearning_run: Path,
                                                      tmp_path: Path) -> None:
    copy = tmp_path / qlearning_run.name
    copy.mkdir()
    for name in ("config.json", "summary.json", "metrics.jsonl"):
        (copy / name).write_text((qlearning_run / name).read_text())
    edit_json(copy / "config.json", lambda c: c["plugin_package"].update(version="0.0.1"))
    code, out, _ = reproduce(copy)
    assert code == 0, out  # compared all the same
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "the original ran with 0.0.1" in warning[0], out


@pytest.mark.parametrize(("setup", "message"), [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("{}"), "is a file, not a run directory"),
    (lambda p: p.mkdir(), "has no config.json: it is not a gymkit run directory"),
])
def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, setup: Callable[[Path], None],
                                              message: str) -> None:
    path = tmp_path / "run"
    setup(path)
    code, out = invoke("reproduce", str(path))
    assert code == 2 and message in out and out.startswith("error:"), out
    assert len(out.strip().splitlines()) == 1


def test_an_original_with_no_metrics_is_refused_before_training(qlearning_run: Path,
                                                                tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_text((qlearning_run / "config.json").read_text())
    code, out = invoke("reproduce", str(copy))
    assert code == 2 and "has no metrics.jsonl" in out, out
    (copy / "metrics.jsonl").write_text("")
    code, out = invoke("reproduce", str(copy))
    assert code == 2 and "is empty" in out, out
    (copy / "metrics.jsonl").write_text('{"step": 1}\n{"step": \n')
    code, out = invoke("reproduce", str(copy))
    assert code == 2 and "line 2 of" in out and "is not JSON" in out, out
    assert sorted(p.name for p in copy.parent.iterdir()) == ["copy"]


def test_async_vector_envs_step_like_sync_ones() -> None:
    """Gymnasium's AsyncVectorEnv gathers its subprocesses' results in env order: seeded
    alike and given the same actions, it returns what SyncVectorEnv does, bit for bit."""
    source, _ = resolve_env("cartpole")
    runs = []
    for asynchronous in (False, True):
        envs = source.make_vector(2, asynchronous=asynchronous)
        try:
            envs.action_space.seed(3)
            obs, _ = envs.reset(seed=7)
            trace = [obs.tobytes()]
            for _ in range(60):
                obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
                trace.append(obs.tobytes() + reward.tobytes() + terminated.tobytes()
                             + truncated.tobytes())
        finally:
            envs.close()
        runs.append(trace)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("name", ["a2c", "ppo", "dqn"])
def test_async_envs_train_like_sync_ones(name: str, tmp_path: Path) -> None:
    """`--set async_envs=true` steps the agent's envs in subprocesses; the metrics are the
    same bits as in one process (dqn with 2 envs, so that there is something to gather)."""
    extra = ["--set", "n_envs=2"] if name == "dqn" else []
    sync = train(tmp_path / "sync", name, *extra)
    asynchronous = train(tmp_path / "async", name, *extra, "--set", "async_envs=true")
    config = json.loads((asynchronous / "config.json").read_text())["config"]
    assert config["async_envs"] is True
    lines = read_metrics(sync / "metrics.jsonl")
    assert len(lines) >= 2 and lines == read_metrics(asynchronous / "metrics.jsonl")
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    from toolkit import launch

    for flag, kind in (("false", SyncVectorEnv), ("true", AsyncVectorEnv)):
        fits = {"ppo": ["batch_size=64"], "dqn": ["learning_starts=32"]}.get(name, [])
        prepared = launch.prepare("agent", "cartpole", name, assignments=[
            f"async_envs={flag}", "n_envs=2", *fits], flags={"steps": 64})
        try:
            assert type(prepared.trainer.envs) is kind
        finally:
            prepared.trainer.close()


#: PPO with layers wide enough that torch splits its matrix products across threads.
WIDE_PPO = ["agent", "cartpole", "--algo", "ppo", "--steps", "1024", "--set", "n_envs=4",
            "--set", "n_steps=64", "--set", "hidden=[256,256]", "--set", "n_epochs=2",
            "--set", "batch_size=256", "--set", "eval_every=512", "--set", "eval_episodes=2",
            "--set", "final_eval_episodes=2", "-q"]


def test_the_recorded_thread_count_reproduces(tmp_path: Path) -> None:
    code, out = invoke("run", *WIDE_PPO, "--set", "threads=2", "--runs-dir", str(tmp_path))
    assert code == 0, out
    (original,) = tmp_path.iterdir()
    code, out, _ = reproduce(original)
    assert code == 0 and "identical" in out, out


def test_a_different_thread_count_can_change_the_numbers(tmp_path: Path) -> None:
    code, out = invoke("run", *WIDE_PPO, "--set", "threads=1", "--runs-dir", str(tmp_path))
    assert code == 0, out
    (original,) = tmp_path.iterdir()
    edit_json(original / "config.json", lambda c: c["run"].update(threads=2))
    code, out, _ = reproduce(original)
    if code == 0:
        pytest.skip("this machine's torch kernels give the same numbers with 1 and 2 threads")
    assert code == 1 and "different: line 1 of metrics.jsonl" in one_line(out), out
    assert "key losses/" in one_line(out), out


@pytest.fixture
def float32_products_afterwards() -> Any:
    """Leave torch's matrix-product precision as the other tests expect it."""
    import torch

    yield
    torch.set_float32_matmul_precision("highest")


@pytest.mark.usefixtures("float32_products_afterwards")
def test_the_launcher_sets_the_runs_matmul_precision() -> None:
    import torch

    from toolkit import launch

    for precision in ("medium", "high", "highest"):
        launch.prepare("generative", "digits", "rbm", flags={"epochs": 1, "device": "cpu",
                                                              "matmul_precision": precision})
        assert torch.get_float32_matmul_precision() == precision
    launch.prepare("generative", "digits", "rbm", flags={"epochs": 1, "device": "cpu",
                                                          "matmul_precision": "medium"})
    launch.prepare("generative", "digits", "rbm", flags={"epochs": 1, "device": "cpu"})
    assert torch.get_float32_matmul_precision() == "highest"  # the default, set again
    code, out = invoke("run", "generative", "rbm", "--epochs", "1", "--set",
                       "matmul_precision=low")
    assert code == 2
    assert "matmul_precision must be one of highest, high, medium, got 'low'" in one_line(out)


@pytest.mark.usefixtures("float32_products_afterwards")
def test_the_recorded_matmul_precision_reproduces_and_medium_changes_the_numbers(
        tmp_path: Path) -> None:
    """bfloat16 inside the products (medium) reruns bit for bit, and gives other numbers
    than float32 on a CPU where torch uses bfloat16 for it (with AMX or AVX-512 BF16)."""
    original = train(tmp_path, "rbm", "--set", "matmul_precision=medium")
    assert json.loads((original / "config.json").read_text())["run"]["matmul_precision"] == \
        "medium"
    code, out, _ = reproduce(original)
    assert code == 0 and "identical" in out, out
    edit_json(original / "config.json", lambda c: c["run"].update(matmul_precision="highest"))
    code, out, _ = reproduce(original)
    if code == 0:
        pytest.skip("this machine's torch computes float32 products in float32 at medium")
    assert code == 1 and "different: line 1 of metrics.jsonl" in one_line(out), out


def test_the_launcher_switches_torch_to_deterministic_kernels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from toolkit import launch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    torch.use_deterministic_algorithms(False)
    try:
        prepared = launch.prepare("agent", "cartpole", "dqn", flags={"steps": 64, "device": "cpu"},
                                  assignments=["hidden=[16]", "learning_starts=32"])
        prepared.trainer.close()
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(True, warn_only=True)


def test_the_docs_name_only_tests_that_exist() -> None:
    root = Path(__file__).resolve().parent.parent
    doc = (root / "docs" / "reproducibility.md").read_text()
    named = set(re.findall(r"`(?:tests/(\w+)\.py::)?(test_\w+)`", doc))
    assert len(named) >= 10
    for module, test in named:
        source = (root / "tests" / f"{module or 'test_reproduce'}.py").read_text()
        assert f"def {test}(" in source, f"docs/reproducibility.md names {test}, which is gone"
