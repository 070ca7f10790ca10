"""Output on an 80-column terminal: no name or path is ever cut, no line is wider than 80."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner, Result

from toolkit.cli import app
from toolkit.data import DATASETS, Dataset, DatasetSource, Split, dataset_source
from toolkit.data.builtin import load_digits
from toolkit.environments import ENVS, EnvPreset
from toolkit.registry import AGENTS, GENERATIVE
from toolkit.report import break_path, counters_text, eval_rows, fitted_table, render_summary

SMALL = ["--steps", "2000", "--set", "eval_every=1000", "--set", "eval_episodes=5",
         "--set", "final_eval_episodes=1", "-q"]


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def assert_fits(text: str, width: int = 80) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, "\n".join(too_wide)
    assert "…" not in text


def names_in_first_column(text: str) -> set[str]:
    return {line.split()[0] for line in text.splitlines() if line.strip()}


# -- gymkit list ------------------------------------------------------------------------------

def test_list_never_cuts_a_name() -> None:
    result = invoke("list", "all")
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    first = names_in_first_column(result.stdout)
    for registry in (AGENTS, GENERATIVE, ENVS, DATASETS):
        for name in registry.names():
            assert name in first, name


def test_list_keeps_long_names_and_ids_whole() -> None:
    name = "frozenlake-deterministic-extra-long-name"
    ENVS.add(name, EnvPreset(name, "FrozenLake-v1", {"map_name": "8x8", "is_slippery": False},
                             description="A long description " * 6, algo="qlearning"),
             description="A long description " * 6)
    dataset = "a-dataset-with-a-name-as-long-as-they-come"
    DATASETS.add(dataset, DatasetSource(lambda data_dir: load_digits(None), shape=(1, 8, 8),
                                        size="1,797", origin="a source with a long name"),
                 description="many words to describe it " * 5,
                 source="a-package-with-a-long-name")
    try:
        result = invoke("list", "all")
    finally:
        ENVS.remove(name)
        DATASETS.remove(dataset)
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout)
    first = names_in_first_column(result.stdout)
    assert name in first and dataset in first
    assert "FrozenLake-v1" in result.stdout


def test_datasets_table_is_shown_empty_with_a_package_column(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DATASETS, "entries", list)  # none installed, whatever is installed here
    result = invoke("list", "all")
    datasets = result.stdout.split("datasets")[1].split("environments")[0]
    assert re.search(r"name\s+shape\s+size\s+source\s+description\s+package", datasets), \
        datasets
    assert re.search(r"—\s+none registered yet", datasets), datasets


def test_datasets_table_names_the_package() -> None:
    @dataset_source(shape=(1,), size="3", origin="made up")
    def points(data_dir: Path | None) -> Dataset:
        """Three points."""
        x = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
        return Dataset("three-points", {name: Split(x) for name in ("train", "validation",
                                                                    "test")})

    DATASETS.add("three-points", points)
    try:
        result = invoke("list", "all")
    finally:
        DATASETS.remove("three-points")
    datasets = result.stdout.split("datasets")[1].split("environments")[0]
    assert re.search(r"three-points\s+1\s+3\s+made up\s+Three points\.\s+\S+", datasets), \
        datasets
    assert "none registered yet" not in datasets


def test_fitted_table_gives_way_in_order() -> None:
    rows = [("a-long-plugin-name", "word " * 30, "some-package"),
            ("x", "short", "p")]
    console = Console(width=60, record=True)
    console.print(fitted_table("t", ("name", "description", "package"), rows, 60,
                               shrink=("description", "package"), floors={"description": 20}))
    text = console.export_text()
    assert_fits(text, 60)
    assert "a-long-plugin-name" in text and "some-package" in text  # description gave way


# -- the summary of a run ---------------------------------------------------------------------

class NoPanels:
    def panels(self) -> list[tuple[str, str]]:
        return []


def summary(run_dir: str, plugin: str = "qlearning", target: str = "frozenlake") -> dict[str, Any]:
    return {"status": "completed", "plugin": plugin, "target": target, "seed": 0,
            "progress": {"steps": 1, "episodes": 1000}, "wall_time_s": 1.0,
            "final_eval": {"eval/mean_return": 1.0, "eval/return_ci95": 0.0,
                           "eval/mean_length": 6.0, "eval/episodes": 1.0},
            "run_dir": run_dir}


def panel_lines(text: str) -> list[str]:
    return [line.strip("│ ") for line in text.splitlines()]


@pytest.mark.parametrize("parent", ["runs", "/tmp/" + "a-rather-long-folder-name/" * 3])
def test_summary_never_cuts_the_run_directory(parent: str) -> None:
    name = "20261123-171248-qlearning-frozenlake-deterministic-s0"
    run_dir = f"{parent.rstrip('/')}/{name}"
    console = Console(width=80, record=True)
    render_summary(console, summary(run_dir), NoPanels())  # type: ignore[arg-type]
    text = console.export_text()
    assert_fits(text)
    assert any(name in line for line in panel_lines(text))  # whole, on one line
    assert run_dir in "".join(panel_lines(text))


def test_summary_keeps_a_long_target_name() -> None:
    target = "a-very-long-environment-name-that-is-registered-by-some-plugin-package-v0"
    console = Console(width=80, record=True)
    render_summary(console, summary("runs/x", target=target), NoPanels())  # type: ignore[arg-type]
    text = console.export_text()
    assert_fits(text)
    assert target in "".join(panel_lines(text))


def test_run_output_at_80_columns(tmp_path: Path) -> None:
    runs = tmp_path / "a-folder-with-a-rather-long-name-for-all-of-its-runs"
    result = invoke("run", "agent", "frozenlake-deterministic", "--runs-dir", str(runs), *SMALL)
    assert result.exit_code == 0, result.output
    (run,) = runs.iterdir()
    assert str(run) in result.stdout.splitlines()  # the first line: whole, to copy
    panel = result.stdout[result.stdout.index("╭"):]
    assert any(run.name in line for line in panel_lines(panel))
    assert str(run) in "".join(panel_lines(panel))
    assert "…" not in result.stdout
    assert all(cell_len(line) <= 80 for line in panel.splitlines()), panel
    assert "1 episode," in result.stdout and "1 episodes" not in result.stdout


def test_break_path_keeps_directory_names_whole() -> None:
    assert break_path("/tmp/abc/defgh/ij", 9) == ["/tmp/abc/", "defgh/ij"]
    assert break_path("gymkit tensorboard runs", 20) == ["gymkit tensorboard", "runs"]
    assert break_path("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert break_path("short", 80) == ["short"]


# -- wording ----------------------------------------------------------------------------------

def test_counts_are_pluralized() -> None:
    assert counters_text({"steps": 1, "episodes": 1000}) == "1 step, 1,000 episodes"
    assert counters_text({"epochs": 2}) == "2 epochs"
    rows = dict(eval_rows({"eval/mean_return": 1.0, "eval/return_ci95": 0.0,
                           "eval/mean_length": 3.0, "eval/episodes": 1.0,
                           "eval/success_rate": 1.0, "eval/success_rate_ci_low": 0.2,
                           "eval/success_rate_ci_high": 1.0}))
    assert rows["eval success rate"].endswith("over 1 episode")
    assert "over 1 episode," in rows["eval mean return"]


def test_list_warns_about_a_name_two_packages_register() -> None:
    ENVS.add("taxi", EnvPreset("taxi", "Taxi-v3", description="another taxi"),
             description="another taxi", source="other-envs")
    try:
        result = invoke("list", "all")
    finally:
        ENVS.remove("taxi", source="other-envs")
    assert result.exit_code == 0, result.output
    assert re.search(r"^taxi\s.*\bgymkit\b", result.stdout, re.M)
    assert re.search(r"^taxi\s.*\bother-envs\b", result.stdout, re.M)
    assert result.stderr.strip() == ("warning: env 'taxi' is registered by gymkit, other-envs; "
                                     "name one of them: gymkit:taxi or other-envs:taxi")


def test_eval_replays_the_final_evaluation(tmp_path: Path) -> None:
    result = invoke("run", "agent", "frozenlake", "--runs-dir", str(tmp_path), "--steps", "3000",
                    "--set", "eval_every=1000", "--set", "final_eval_episodes=200", "-q")
    assert result.exit_code == 0, result.output
    (run,) = tmp_path.iterdir()
    final = json.loads((run / "summary.json").read_text())["final_eval"]
    result = invoke("eval", str(run), "--episodes", "200")
    assert result.exit_code == 0, result.output
    assert f"{final['eval/success_rate']:.3f} (95% CI" in result.stdout
    assert f"{final['eval/mean_return']:.3f} ± {final['eval/return_ci95']:.3f}" in result.stdout
