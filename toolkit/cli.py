"""The `gymkit` command line: run, list, eval, resume, tensorboard."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toolkit.errors import GymkitError

app = typer.Typer(help="gymkit: reinforcement learning and generative models on Gymnasium "
                       "and PyTorch.", no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
run_app = typer.Typer(help="Train a plugin and write a run directory.", no_args_is_help=True)
app.add_typer(run_app, name="run")

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn a GymkitError into one red line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt:
            err_console.print("[yellow]stopped at once[/]; `gymkit resume RUN_DIR` continues "
                              "from the last checkpoint")
            raise typer.Exit(130) from None
        except GymkitError as exc:
            message = " ".join(str(exc).split())
            err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class RenderMode(str, Enum):
    human = "human"
    ansi = "ansi"
    rgb_array = "rgb_array"


SeedOpt = Annotated[int | None, typer.Option(help="random seed [default: 0]")]
DeviceOpt = Annotated[Device | None, typer.Option(help="where tensors live [default: auto]")]
StepsOpt = Annotated[int | None, typer.Option(help="training budget in steps")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a config key: "
                                                  "--set alpha=0.2 (repeatable)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML file of key: value")]
RunsDirOpt = Annotated[Path, typer.Option("--runs-dir", help="where run directories go")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


@run_app.command("agent")
@friendly
def run_agent(
    env: Annotated[str, typer.Argument(help="short name (see `gymkit list`) or gymnasium id")],
    algo: Annotated[str | None, typer.Option(help="agent; default: the env's preset")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    steps: StepsOpt = None,
    episodes: Annotated[int | None, typer.Option(help="training budget in episodes")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Train an RL agent, e.g. `gymkit run agent frozenlake`."""
    flags = {"seed": seed, "device": device.value if device else None, "steps": steps,
             "episodes": episodes}
    _train("agent", env, algo, flags, set_, config, runs_dir, quiet)


@run_app.command("generative")
@friendly
def run_generative(
    model: Annotated[str, typer.Argument(help="generative trainer (see `gymkit list`)")],
    dataset: Annotated[str | None, typer.Option(help="dataset; default: the model's")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    epochs: Annotated[int | None, typer.Option(help="training budget in epochs")] = None,
    steps: StepsOpt = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Train a generative model, e.g. `gymkit run generative vae --dataset digits`."""
    flags = {"seed": seed, "device": device.value if device else None, "steps": steps,
             "epochs": epochs}
    _train("generative", dataset, model, flags, set_, config, runs_dir, quiet)


def _train(kind: str, target: str | None, plugin: str | None, flags: dict[str, Any],
           assignments: list[str] | None, config: Path | None, runs_dir: Path,
           quiet: bool) -> None:
    from toolkit import launch

    prepared = launch.prepare(kind, target, plugin, config_file=config,
                              assignments=assignments, flags=flags)
    runner = launch.start(prepared, runs_dir, console=console, quiet=quiet)
    console.print(f"run directory: [bold]{runner.rundir}[/]")
    _finish(runner, runner.run())


def _finish(runner: Any, result: Any) -> None:
    from toolkit.report import render_summary

    runner.trainer.close()
    if result.interrupted:
        err_console.print(f"[yellow]interrupted[/] at {result.summary['progress']}; checkpoint "
                          f"saved. Continue with: gymkit resume {result.rundir}")
        raise typer.Exit(130)
    render_summary(console, result.summary, runner.trainer)


@app.command("resume")
@friendly
def resume(
    run_dir: Annotated[Path, typer.Argument(help="run directory to continue")],
    quiet: QuietOpt = False,
) -> None:
    """Continue an interrupted run from its last checkpoint, bit for bit."""
    from toolkit import launch

    runner, checkpoint = launch.resume(run_dir, console=console, quiet=quiet)
    console.print(f"resuming [bold]{runner.rundir}[/] from checkpoints/last.pt")
    _finish(runner, runner.run(checkpoint))


@app.command("eval")
@friendly
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="run directory to evaluate")],
    episodes: Annotated[int | None, typer.Option(
        help="episodes [default: 1000, or 1 when rendering]")] = None,
    checkpoint: Annotated[str, typer.Option(help="last or best")] = "last",
    render: Annotated[RenderMode | None, typer.Option(help="show the episodes")] = None,
    video: Annotated[Path | None, typer.Option(help="record mp4 videos into this folder")] = None,
) -> None:
    """Evaluate a trained run's checkpoint, optionally rendering or recording it."""
    from toolkit import launch
    from toolkit.checkpoint import load_checkpoint
    from toolkit.report import eval_rows
    from toolkit.watch import watch

    if checkpoint not in ("last", "best"):
        raise GymkitError(f"--checkpoint must be last or best, got '{checkpoint}'")
    if episodes is not None and episodes < 1:
        raise GymkitError(f"--episodes must be positive, got {episodes}")
    rundir, prepared = launch.rebuild(run_dir)
    trainer = prepared.trainer
    trainer.load_state_dict(load_checkpoint(rundir.checkpoint(checkpoint))["trainer"])
    if render is not None or video is not None:
        mode = render.value if render else "rgb_array"
        metrics = watch(trainer, episodes or 1, mode, video, console)
    else:
        metrics = trainer.evaluate(episodes or 1000)
    trainer.close()
    table = Table(title=f"{rundir} ({checkpoint}.pt)", show_header=False)
    for name, value in eval_rows(metrics):
        table.add_row(name, value)
    console.print(table)


@app.command("list")
@friendly
def list_plugins() -> None:
    """Every registered agent, generative trainer, environment and dataset."""
    from toolkit.data import DATASETS
    from toolkit.environments import ENVS
    from toolkit.registry import AGENTS, GENERATIVE

    for title, registry in (("agents", AGENTS), ("generative trainers", GENERATIVE)):
        table = Table(title=title, title_justify="left")
        for column in ("name", "description", "package"):
            table.add_column(column)
        for entry in registry.entries():
            table.add_row(entry.name, entry.description, entry.source)
        if not registry.names():
            table.add_row("—", "none registered yet", "")
        console.print(table)
    table = Table(title="environments", title_justify="left")
    for column in ("name", "gymnasium id", "default agent", "description", "package"):
        table.add_column(column)
    for env_entry in ENVS.entries():
        preset = env_entry.obj
        kwargs = ", ".join(f"{k}={v}" for k, v in preset.kwargs.items())
        table.add_row(env_entry.name, f"{preset.id}" + (f" ({kwargs})" if kwargs else ""),
                      preset.algo, env_entry.description, env_entry.source)
    console.print(table)
    console.print("Any gymnasium id works as well, e.g. `gymkit run agent FrozenLake-v1 "
                  "--algo qlearning`.")
    if DATASETS.names():
        table = Table(title="datasets", title_justify="left")
        table.add_column("name")
        table.add_column("description")
        for data_entry in DATASETS.entries():
            table.add_row(data_entry.name, data_entry.description)
        console.print(table)


@app.command("tensorboard")
@friendly
def tensorboard(
    runs_dir: Annotated[Path, typer.Argument(help="folder of run directories")] = Path("runs"),
    port: Annotated[int, typer.Option(help="port to serve on")] = 6006,
) -> None:
    """Launch TensorBoard on the run directories."""
    if not runs_dir.is_dir():
        raise GymkitError(f"{runs_dir} does not exist; train something first or pass a folder")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs_dir),
               "--port", str(port)]
    console.print(f"TensorBoard on http://localhost:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(command))


def main() -> None:
    app()
