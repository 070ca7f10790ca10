"""Help text on an 80-column terminal: defaults shown, sensible metavars, -h, --version."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
import typer
from rich.cells import cell_len
from typer.testing import CliRunner, Result

import toolkit
from toolkit.cli import app


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command and group of the app, as the words that name it."""
    found = [list(path)]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*path, name))
    return found


COMMANDS = command_paths(typer.main.get_command(app))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})


def flat(text: str) -> str:
    """The help without its box drawing, whitespace collapsed: wrapped phrases rejoined."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def help_of(*command: str) -> str:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_checked() -> None:
    assert {"run agent", "run generative", "resume", "eval", "list", "tensorboard"} <= {
        " ".join(c) for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "gymkit")
def test_every_command_takes_h_and_fits_80_columns(command: list[str]) -> None:
    short, long = invoke(*command, "-h"), invoke(*command, "--help")
    assert short.exit_code == 0 and long.exit_code == 0, short.output
    assert short.stdout == long.stdout and "Usage:" in short.stdout
    assert "-h" in flat(short.stdout)
    assert all(cell_len(line) <= 80 for line in short.stdout.splitlines()), short.stdout
    assert "<bool>" not in short.stdout  # flags take no value


def test_run_agent_help_shows_defaults_and_metavars() -> None:
    text = flat(help_of("run", "agent"))
    for expected in ("random seed, 0 to 4294967295 [default: 0]",
                     "auto, cpu, cuda or cuda:N [default: auto]",
                     "--set KEY=VALUE", "--config FILE",
                     "--runs-dir DIR where run directories go [default: runs]",
                     "--steps N", "--episodes N", "--seed N", "--device DEVICE",
                     "--algo NAME", "--quiet -q no progress bar"):
        assert expected in text, expected
    assert "<list[str]>" not in text and "<path>" not in text.split("Options")[1]


def test_eval_help_shows_its_default_and_dir() -> None:
    text = flat(help_of("eval"))
    assert "episodes [default: 1000, or 1 when rendering]" in text
    assert "--video DIR" in text and "--checkpoint last|best which checkpoint" in text


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"gymkit {toolkit.__version__}"


def test_device_cuda_n_reaches_run_settings() -> None:
    """Not refused by the option parser (an Enum did), but by the check both paths share."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    for args in (["--device", "cuda:0"], ["--set", "device=cuda:0"]):
        result = invoke("run", "agent", "frozenlake", *args)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: --device cuda:0 requested but CUDA is not "
                                        "available"), result.stderr


def option_names(command: Any) -> list[tuple[str, list[str]]]:
    """(parameter name, its long option names) for every option of every command."""
    found = [(p.name, [o for o in p.opts if o.startswith("--")])
             for p in command.params if p.param_type_name == "option"]
    for sub in getattr(command, "commands", {}).values():
        found += option_names(sub)
    return found


def test_every_option_is_spelled_in_lower_case() -> None:
    # typer 0.27 turned `device` with metavar="DEVICE" into `--DEVICE`: `--device` failed with
    # "No such option" on a machine with that typer (found on the GPU machine, 2026-11-24).
    options = option_names(typer.main.get_command(app))
    assert ("device", ["--device"]) in options
    assert all(name == name.lower() for _, names in options for name in names)
