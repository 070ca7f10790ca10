"""The `gymkit` command line: run, sweep, list, eval, reproduce, sample, recommend, resume,
tensorboard.

Every failure reaches the user as one line on stderr (see `GymkitGroup`):
bad input (a `GymkitError` or a usage error) exits with code 2, a bug with
code 1 and the path of a file holding its traceback, Ctrl-C with code 130.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from toolkit.cli_new import new_plugin
from toolkit.config import MAX_SEED
from toolkit.errors import GymkitError

CONTEXT = {"help_option_names": ["-h", "--help"]}
#: Exit codes: bad input, a bug, Ctrl-C (128 + SIGINT).
EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED = 2, 1, 130

#: The run directory of the command in progress, once it exists: what Ctrl-C can point to.
_active_run: Path | None = None


def stdout() -> Console:
    """A console on stdout; made per use, so that COLUMNS and redirections are current."""
    return Console(highlight=False)


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def error_line(message: str) -> None:
    """`error: message` as one line on stderr, however long (the terminal wraps it)."""
    stderr().print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)


def _hide_flag_types(params: list[Any]) -> list[Any]:
    """A flag takes no value: show `-q`, not `-q <bool>`, in the help."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class GymkitCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))


class GymkitGroup(TyperGroup):
    """The one guard: no exception leaves the CLI as a traceback."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _hide_flag_types(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        global _active_run
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            stderr().print(_stopped_message(_active_run), soft_wrap=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except GymkitError as exc:
            error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise  # `gymkit list | head`: typer exits quietly
            report_unexpected(exc)
            raise typer.Exit(EXIT_BUG) from None
        finally:
            _active_run = None

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        """Usage errors (an unknown option, a missing argument) as one line, too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode,
                                windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args,
                                **extra)
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
                sys.exit(EXIT_BAD_INPUT)
            usage = getattr(exc, "ctx", None)
            hint = f"; see `{usage.command_path} --help`" if usage is not None else ""
            error_line(exc.format_message().rstrip(".") + hint)
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(EXIT_BUG)
        except Exception as exc:  # raised outside a command: in a parameter's callback
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise
            report_unexpected(exc)
            sys.exit(EXIT_BUG)
        sys.exit(code if isinstance(code, int) else 0)


def _stopped_message(run: Path | None) -> str:
    """What a Ctrl-C that stopped a command at once leaves behind, and what to do next."""
    if run is None:
        return "[yellow]stopped[/]"
    from toolkit.rundir import RunDir

    if RunDir(run).checkpoint("last").is_file():
        return (f"[yellow]stopped at once[/]; checkpoints/last.pt from before it is intact. "
                f"Continue with: gymkit resume {escape(str(run))}")
    return (f"[yellow]stopped at once[/], before the first checkpoint; {escape(str(run))} "
            "cannot be resumed: start again with gymkit run")


def report_unexpected(exc: BaseException) -> None:
    """A bug, not bad input: one line naming it and the file that holds its traceback."""
    path = getattr(exc, "gymkit_traceback", None)
    if not isinstance(path, str):
        try:
            path = save_traceback(exc)
        except OSError as write_error:
            path = f"nowhere: it could not be saved ({write_error.strerror})"
    message = " ".join(str(exc).split()) or "(no message)"
    if len(message) > 500:
        message = message[:500] + "…"
    error_line(f"unexpected {type(exc).__name__}: {message}; full traceback in {path}")


def save_traceback(exc: BaseException) -> str:
    """Write `exc`'s traceback to a new file in the temp folder and return its path."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"gymkit-traceback-{stamp}-{os.getpid()}"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for attempt in range(1000):
        path = Path(tempfile.gettempdir()) / (base + (f"-{attempt}" if attempt else "") + ".txt")
        try:
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
        except FileExistsError:
            continue
        return str(path)
    raise OSError(errno.EEXIST, "every candidate file name is taken")


def _version(value: bool) -> None:
    if value:
        from toolkit import __version__

        stdout().print(f"gymkit {__version__}")
        raise typer.Exit()


app = typer.Typer(help="gymkit: reinforcement learning and generative models on Gymnasium "
                       "and PyTorch.", no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False, cls=GymkitGroup, context_settings=CONTEXT)
run_app = typer.Typer(help="Train a plugin and write a run directory.", no_args_is_help=True,
                      cls=GymkitGroup, context_settings=CONTEXT)
app.add_typer(run_app, name="run")
new_app = typer.Typer(help="Start a new package from a template: `gymkit new plugin NAME`.",
                      no_args_is_help=True, cls=GymkitGroup, context_settings=CONTEXT)
new_app.command("plugin", cls=GymkitCommand)(new_plugin)
app.add_typer(new_app, name="new")


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", help="Show gymkit's version and exit.",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    """gymkit: reinforcement learning and generative models on Gymnasium and PyTorch."""


def _default(text: str) -> str:
    """`[default: text]` for a help string; escaped, or rich would read it as markup."""
    return escape(f"[default: {text}]")


def _path(value: str | Path) -> Path:
    """A path option's value; an empty one would mean the current folder, silently."""
    if isinstance(value, Path):  # the default
        return value
    if not value.strip():
        raise typer.BadParameter("is empty; name a file or folder")
    return Path(value)


class RenderMode(str, Enum):
    human = "human"
    ansi = "ansi"
    rgb_array = "rgb_array"


SeedOpt = Annotated[int | None, typer.Option(
    metavar="N", help=f"random seed, 0 to 4294967295 {_default('0')}")]
# "--device" spelled out: typer 0.27 named the option after an upper-case metavar that
# matches the parameter's name (`--DEVICE`).
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", metavar="DEVICE",
    help=f"where tensors live: auto, cpu, cuda or cuda:N {_default('auto')}")]
RunDeviceOpt = Annotated[str | None, typer.Option(
    "--device", metavar="DEVICE", help="where tensors live: auto, cpu, cuda or cuda:N "
                                       + _default("the run's"))]
StepsOpt = Annotated[int | None, typer.Option(metavar="N", help="training budget in steps")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="override a config key, e.g. --set alpha=0.2 "
                                       "(repeatable)")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE", parser=_path,
    help="YAML file of key: value, the same keys as --set")]
RunsDirOpt = Annotated[Path, typer.Option(
    "--runs-dir", metavar="DIR", parser=_path, help="where run directories go")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-config", help="import and call the env setup, wrappers and env id that the run's "
                           "config.json names even where no installed package declares them "
                           "(docs/security.md); only for run directories you trust")]
SummaryOpt = Annotated[bool, typer.Option(
    "--summary", help="show each network's layers, output shapes and parameter counts first")]


@run_app.command("agent", cls=GymkitCommand)
def run_agent(
    env: Annotated[str, typer.Argument(
        metavar="ENV", help="short name (see `gymkit list`) or gymnasium id")],
    algo: Annotated[str | None, typer.Option(
        metavar="NAME", help="agent (see `gymkit list`); default: the env's preset")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    steps: StepsOpt = None,
    episodes: Annotated[int | None, typer.Option(
        metavar="N", help="training budget in episodes")] = None,
    preset: Annotated[str | None, typer.Option(
        metavar="NAME", help="a named hyperparameter set of the env (see `gymkit list presets`), "
                             "e.g. linear-qnet")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
    summary: SummaryOpt = False,
) -> None:
    """Train an RL agent, e.g. `gymkit run agent frozenlake`."""
    flags = {"seed": seed, "device": device, "steps": steps, "episodes": episodes}
    _train("agent", env, algo, flags, set_, config, runs_dir, quiet, preset, summary)


@run_app.command("generative", cls=GymkitCommand)
def run_generative(
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="generative trainer (see `gymkit list`)")],
    dataset: Annotated[str | None, typer.Option(
        metavar="NAME", help="dataset (see `gymkit list`); default: the model's")] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    epochs: Annotated[int | None, typer.Option(
        metavar="N", help="training budget in epochs")] = None,
    steps: StepsOpt = None,
    preset: Annotated[str | None, typer.Option(
        metavar="NAME", help="a named hyperparameter set of the model (see `gymkit list "
                             "presets`), e.g. textbook")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", metavar="DIR", parser=_path,
        help="where the dataset's files are (mnist's IDX files, a folder of images)")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
    summary: SummaryOpt = False,
) -> None:
    """Train a generative model, e.g. `gymkit run generative vae --dataset digits`."""
    flags = {"seed": seed, "device": device, "steps": steps, "epochs": epochs}
    _train("generative", dataset, model, flags, set_, config, runs_dir, quiet, preset,
           show_networks=summary, data_dir=data_dir)


def _train(kind: str, target: str | None, plugin: str | None, flags: dict[str, Any],
           assignments: list[str] | None, config: Path | None, runs_dir: Path,
           quiet: bool, hyperparams: str | None = None, show_networks: bool = False,
           data_dir: Path | None = None) -> None:
    global _active_run
    from toolkit import launch

    out = stdout()
    prepared = launch.prepare(kind, target, plugin, config_file=config,
                              assignments=assignments, flags=flags, hyperparams=hyperparams,
                              data_dir=data_dir)
    if show_networks:
        print_networks(out, prepared.trainer, prepared.spec["plugin"])
    runner = launch.start(prepared, runs_dir, console=out, quiet=quiet)
    _active_run = runner.rundir.path
    print_path(out, "run directory:", runner.rundir.path)
    _finish(runner, runner.run(), out)


def print_networks(console: Console, trainer: Any, plugin: str) -> None:
    """A table per network: layers, output shapes and parameter counts."""
    networks = trainer.networks()
    if not networks:
        console.print(f"{plugin} has no neural networks to summarise")
        return
    from toolkit.nets.summary import summary, summary_table

    for name, (module, inputs) in networks.items():
        console.print(summary_table(summary(module, *inputs), title=f"{plugin}: {name}"))


def print_path(console: Console, label: str, path: Path | str) -> None:
    """`label path` on one line if it fits, else the path on a line of its own.

    Never cut, and never broken by a newline: a path longer than the terminal is one
    logical line that the terminal wraps, so that it copies and pastes whole."""
    text = Text(str(path), style="bold")
    if len(label) + 1 + text.cell_len <= console.width:
        console.print(Text(label + " ") + text, soft_wrap=True)
    else:
        console.print(Text(label), soft_wrap=True)
        console.print(text, soft_wrap=True)


def _finish(runner: Any, result: Any, out: Console) -> None:
    from toolkit.report import counters_text, render_summary

    runner.trainer.close()
    if result.interrupted:
        signum = getattr(result, "signal", None)
        stderr().print(
            f"[yellow]interrupted[/] at {counters_text(result.summary['progress'])}; checkpoint "
            f"saved. Continue with: gymkit resume {escape(str(result.rundir))}", soft_wrap=True)
        raise typer.Exit(128 + signum if signum else EXIT_INTERRUPTED)
    render_summary(out, result.summary, runner.trainer)


@app.command("resume", cls=GymkitCommand)
def resume(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                            help="run directory to continue")],
    quiet: QuietOpt = False,
    trust_config: TrustOpt = False,
) -> None:
    """Continue an interrupted run from its last checkpoint.

    qlearning and the generative trainers continue bit for bit; the deep agents (dqn,
    a2c, ppo, their -lstm and sb3- variants) keep weights, optimizer, buffers and counters
    and start fresh episodes (docs/reproducibility.md).
    """
    global _active_run
    from toolkit import launch

    _active_run = run_dir  # Ctrl-C while loading leaves the run as resumable as it was
    out = stdout()
    runner, checkpoint = launch.resume(run_dir, console=out, quiet=quiet, trust=trust_config)
    _active_run = runner.rundir.path
    print_path(out, "resuming from checkpoints/last.pt:", runner.rundir.path)
    if not runner.trainer.exact_resume:
        out.print(f"{runner.spec['plugin']} resumes with its weights, optimizer, buffers and "
                  "counters, and fresh episodes: from here the run differs from an "
                  "uninterrupted one", soft_wrap=True)
    _finish(runner, runner.run(checkpoint), out)


#: The most samples `gymkit sample` draws into one grid: 32 x 32 images, still readable.
MAX_SAMPLES = 1024
SAMPLE_CHUNK = 256


@app.command("sample", cls=GymkitCommand)
def sample(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                            help="run directory of a generative model")],
    n: Annotated[int, typer.Option("--n", metavar="N", help="how many samples")] = 64,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", parser=_path,
                                      help="the PNG to write")
                   ] = Path("samples.png"),
    checkpoint: Annotated[str, typer.Option(metavar="last|best", help="which checkpoint")
                          ] = "last",
    seed: Annotated[int, typer.Option(metavar="N", help="seed of the samples")] = 0,
    device: RunDeviceOpt = None,
) -> None:
    """Write a grid of samples from a generative model's checkpoint as a PNG."""
    from PIL import Image

    from toolkit import progress
    from toolkit.atomic import atomic_write, check_writable
    from toolkit.images import display_scale, image_grid

    if n < 1:
        raise GymkitError(f"--n must be positive, got {n}")
    if n > MAX_SAMPLES:
        raise GymkitError(f"--n {n:,} is more than one readable grid holds ({MAX_SAMPLES:,} at "
                          "most); draw several grids with different --seed values")
    if out.suffix.lower() != ".png":
        raise GymkitError(f"--out {out} must name a .png file")
    if out.exists():
        raise GymkitError(f"{out} exists already; choose another --out (nothing is "
                          "overwritten)")
    check_writable(out.parent, f"--out {out}")
    _, prepared = _trained_run(run_dir, checkpoint, device)
    trainer = prepared.trainer
    console = stdout()
    try:
        if prepared.spec["kind"] != "generative":
            raise GymkitError(f"{run_dir} is an agent's run; gymkit sample draws from "
                              "generative models")
        chunks = []
        with progress.reporting(console), progress.task("drawing samples", n,
                                                        "samples") as bar:
            # In chunks, for the progress; chunk i is drawn with seed + i, so the first
            # SAMPLE_CHUNK samples of a seed do not depend on --n.
            for index, start in enumerate(range(0, n, SAMPLE_CHUNK)):
                size = min(SAMPLE_CHUNK, n - start)
                chunks.append(trainer.sample(size, seed + index))
                bar.advance(size)
    except NotImplementedError as exc:
        raise GymkitError(f"{prepared.spec['plugin']} cannot draw samples") from exc
    finally:
        trainer.close()
    import numpy as np

    images = np.concatenate(chunks)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(out, "wb") as f:
            Image.fromarray(image_grid(images, scale=display_scale(images.shape[-1]))).save(
                f, format="PNG")
    except OSError as exc:
        raise GymkitError(f"cannot write {out}: {exc.strerror or exc}; pass another "
                          "--out") from exc
    print_path(console, f"{n} samples of {checkpoint}.pt written to", out)


@app.command("recommend", cls=GymkitCommand)
def recommend(
    run_dir: Annotated[Path, typer.Argument(
        metavar="RUN_DIR", help="run directory of a recommender (rbm on --dataset movielens)")],
    user: Annotated[int, typer.Option("--user", metavar="ID", help="MovieLens UserID")],
    top: Annotated[int, typer.Option("--top", metavar="N", help="how many movies")] = 10,
    checkpoint: Annotated[str, typer.Option(metavar="last|best", help="which checkpoint")
                          ] = "last",
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", metavar="DIR", parser=_path, help="where ratings.dat is "
                                          + _default("the run's --data-dir"))] = None,
) -> None:
    """The top N movies a user has not rated, by the rating a recommender predicts.

    Feeds the user's ratings from ratings.dat to the model and ranks every movie they have
    not rated by its predicted rating (stars, 1 to 5)."""
    import numpy as np
    import torch

    from toolkit import launch
    from toolkit.checkpoint import load_checkpoint
    from toolkit.data.movielens import MAX_STARS, find_ratings, read_ratings
    from toolkit.registry import GENERATIVE
    from toolkit.rundir import RunDir

    if top < 1:
        raise GymkitError(f"--top must be positive, got {top}")
    if checkpoint not in ("last", "best"):
        raise GymkitError(f"--checkpoint must be last or best, got '{checkpoint}'")
    rundir = RunDir.open(run_dir)
    spec = rundir.read_config()
    if spec.get("kind") != "generative" or spec.get("dataset") != "movielens":
        raise GymkitError(f"{run_dir} is a run of {spec.get('plugin', '?')} on "
                          f"{spec.get('dataset') or spec.get('target', '?')}; gymkit recommend "
                          "needs a recommender trained with --dataset movielens, e.g. gymkit "
                          "run generative rbm --dataset movielens --preset recommender")
    folder = data_dir if data_dir is not None else spec.get("data_dir")
    ratings = read_ratings(find_ratings(Path(folder) if folder is not None else None))
    row = ratings.user_row(user)
    package = spec.get("plugin_package") or {}
    name = f"{package['name']}:{spec['plugin']}" if package.get("name") else spec["plugin"]
    # The run's config and settings, on the data dir chosen here.
    prepared = launch.prepare("generative", "movielens", name if name in GENERATIVE
                              else spec["plugin"], flags={**spec["config"], **spec["run"]},
                              data_dir=folder)
    trainer = prepared.trainer
    try:
        if not hasattr(trainer, "predict_ratings"):
            raise GymkitError(f"{spec['plugin']} predicts no ratings; gymkit recommend needs "
                              "an rbm trained with --dataset movielens")
        state = load_checkpoint(rundir.checkpoint(checkpoint), require=("trainer",))["trainer"]
        trainer.load_policy_state_dict(state)
        stars = ratings.matrix[row]
        predicted = MAX_STARS * trainer.predict_ratings(
            torch.as_tensor(stars / MAX_STARS)[None])[0].cpu().numpy()
    finally:
        trainer.close()
    if len(predicted) != len(ratings.item_ids):
        raise GymkitError(f"the ratings hold {len(ratings.item_ids)} movies, but the run's model "
                          f"was trained on {len(predicted)}; pass the --data-dir it was "
                          "trained on")
    unseen = np.flatnonzero(np.isnan(stars))
    best = unseen[np.argsort(-predicted[unseen], kind="stable")][:top]
    out = stdout()
    print_path(out, f"{checkpoint}.pt of", rundir.path)
    table = Table(title=f"top {len(best)} of the {len(unseen)} movies user {user} has not rated "
                        f"(rated {len(stars) - len(unseen)})")
    table.add_column("#", justify="right")
    table.add_column("movie ID", justify="right", style="cyan")
    table.add_column("title", overflow="fold")
    table.add_column("predicted stars", justify="right")
    for rank, item in enumerate(best, 1):
        movie = int(ratings.item_ids[item])
        table.add_row(str(rank), str(movie), escape(ratings.title(movie)),
                      f"{predicted[item]:.2f}")
    out.print(table)


def _trained_run(run_dir: Path, checkpoint: str, device: str | None = None,
                 trust: bool = False) -> tuple[Any, Any]:
    """The run directory and its rebuilt trainer (on `device`, or the run's own) with the
    weights of `checkpoint` (``last`` or ``best``), for `gymkit eval` and `gymkit sample`."""
    from toolkit import launch
    from toolkit.checkpoint import load_checkpoint

    if checkpoint not in ("last", "best"):
        raise GymkitError(f"--checkpoint must be last or best, got '{checkpoint}'")
    rundir, prepared = launch.rebuild(run_dir, device, trust=trust)
    state = load_checkpoint(rundir.checkpoint(checkpoint), require=("trainer",))["trainer"]
    prepared.trainer.load_policy_state_dict(state)
    return rundir, prepared


@app.command("eval", cls=GymkitCommand)
def evaluate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                            help="run directory to evaluate")],
    episodes: Annotated[int | None, typer.Option(
        metavar="N", help=f"episodes {_default('1000, or 1 when rendering')}")] = None,
    checkpoint: Annotated[str, typer.Option(metavar="last|best", help="which checkpoint")
                          ] = "last",
    render: Annotated[RenderMode | None, typer.Option(
        help="show the episodes: ansi in the terminal, human in a window")] = None,
    video: Annotated[Path | None, typer.Option(
        metavar="DIR", parser=_path, help="record mp4 videos into this new folder")] = None,
    nll_samples: Annotated[int | None, typer.Option(
        "--nll-samples", metavar="K", help="a generative model's importance-weighted negative "
                                           "log-likelihood with K samples (eval/nll_iw)")] = None,
    ais_runs: Annotated[int | None, typer.Option(
        "--ais-runs", metavar="R", help="an energy model's log-likelihood by annealed importance "
                                        "sampling with R runs (eval/ais_ll)")] = None,
    ais_betas: Annotated[int | None, typer.Option(
        "--ais-betas", metavar="M", help="AIS's number of inverse temperatures, linear from 0 to "
                                         "1 (with --ais-runs) "
                                         + _default("the config's ais_betas, 10000"))] = None,
    eval_seed: Annotated[int | None, typer.Option(
        "--eval-seed", metavar="N", help="seed of the episodes (agents) or of the estimates' "
                                         "draws (--nll-samples, --ais-runs) "
                                         + _default("the run's final evaluation's"))] = None,
    device: RunDeviceOpt = None,
    trust_config: TrustOpt = False,
) -> None:
    """Evaluate a trained run's checkpoint, optionally rendering or recording it.

    Without --render or --video it plays the episodes of the run's final
    evaluation, so `--episodes` equal to final_eval_episodes reproduces it; --eval-seed
    gives an independent estimate.
    """
    from toolkit.report import eval_rows
    from toolkit.watch import check_display, check_video_dir, watch

    if episodes is not None and episodes < 1:
        raise GymkitError(f"--episodes must be positive, got {episodes}")
    if eval_seed is not None and not 0 <= eval_seed <= MAX_SEED:
        raise GymkitError(f"--eval-seed must be in 0..{MAX_SEED}, got {eval_seed}")
    if render is RenderMode.human:
        check_display()
    if video is not None:
        check_video_dir(video)
    out = stdout()
    rundir, prepared = _trained_run(run_dir, checkpoint, device, trust_config)
    trainer = prepared.trainer
    status = rundir.status()
    if status in ("running", "died"):
        note = ("it is still training: this evaluates the checkpoint as it is now"
                if status == "running" else "its process died while training (killed, "
                f"crashed); `gymkit resume {rundir.path}` continues it from checkpoints/last.pt")
        stderr().print(f"[yellow]note:[/] {escape(str(rundir.path))}: {escape(note)}",
                       soft_wrap=True)
    if nll_samples is not None:
        if nll_samples < 1:
            raise GymkitError(f"--nll-samples must be positive, got {nll_samples}")
        if not hasattr(trainer.cfg, "nll_samples"):
            raise GymkitError(f"{prepared.spec['plugin']} has no likelihood estimate; drop "
                              "--nll-samples")
        trainer.cfg.nll_samples = nll_samples
    if ais_runs is not None or ais_betas is not None:
        if ais_runs is not None and ais_runs < 1:
            raise GymkitError(f"--ais-runs must be positive, got {ais_runs}")
        if ais_betas is not None and ais_betas < 2:
            raise GymkitError(f"--ais-betas must be at least 2 (0 and 1), got {ais_betas}")
        if not hasattr(trainer.cfg, "ais_runs"):
            raise GymkitError(f"{prepared.spec['plugin']} has no AIS likelihood estimate; drop "
                              "--ais-runs and --ais-betas")
        if ais_runs is not None:
            trainer.cfg.ais_runs = ais_runs
        if ais_betas is not None:
            trainer.cfg.ais_betas = ais_betas
        if trainer.cfg.ais_runs < 1:
            raise GymkitError("--ais-betas sets the schedule of the AIS runs; add --ais-runs R")
    try:
        if render is not None or video is not None:
            mode = render.value if render else "rgb_array"
            metrics = watch(trainer, episodes or 1, mode, video, out)
        else:
            from toolkit import progress
            from toolkit.trainer import FINAL_EVAL_SEED

            seed = eval_seed if eval_seed is not None else \
                prepared.settings.seed + FINAL_EVAL_SEED
            with progress.reporting(out), progress.label("evaluating"):
                metrics = trainer.evaluate(episodes or 1000, seed)
    finally:
        trainer.close()
    print_path(out, f"{checkpoint}.pt of", rundir.path)
    table = Table(show_header=False)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in eval_rows(metrics):
        table.add_row(name, value)
    out.print(table)


@app.command("reproduce", cls=GymkitCommand)
def reproduce(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="run directory to rerun")],
    runs_dir: Annotated[Path | None, typer.Option(
        "--runs-dir", metavar="DIR", parser=_path, help="where the rerun's directory goes "
                                          + _default("the folder of RUN_DIR"))
                        ] = None,
    quiet: QuietOpt = False,
    trust_config: TrustOpt = False,
) -> None:
    """Rerun a run from its config.json into a new run directory and compare metrics.jsonl.

    Prints `identical` (exit 0) or the first differing key, step and both values (exit
    1); docs/reproducibility.md says what is reproducible.
    """
    from toolkit.reproduce import main

    raise typer.Exit(main(run_dir, runs_dir, quiet, trust=trust_config))


sweep_app = typer.Typer(help="Train every combination of --grid values and --seeds, each an "
                             "ordinary run directory, and aggregate the final metrics.",
                        no_args_is_help=True, cls=GymkitGroup, context_settings=CONTEXT)
app.add_typer(sweep_app, name="sweep")
SeedsOpt = Annotated[str, typer.Option(
    "--seeds", metavar="SEEDS", help="seeds to run each configuration with: 0-9, 0,3,5 or 7")]
GridOpt = Annotated[list[str] | None, typer.Option(
    "--grid", metavar="KEY=V1,V2", help="values of a config key to sweep, e.g. --grid "
                                        "alpha=0.1,0.2 (repeatable: every combination)")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", metavar="NAME", help="where trials run: local (a process pool here) or ray "
                                      + escape("(Ray Tune; pip install 'gymkit[ray]')"))]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", metavar="ADDR", help="--backend ray's cluster: auto, HOST:PORT or "
                                      f"ray://HOST:10001 {_default('a local Ray instance')}")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", metavar="N", help=f"trials at once {_default('the number of CPU cores')}")]


@sweep_app.command("agent", cls=GymkitCommand)
def sweep_agent(
    env: Annotated[str, typer.Argument(
        metavar="ENV", help="short name (see `gymkit list`) or gymnasium id")],
    seeds: SeedsOpt,
    algo: Annotated[str | None, typer.Option(
        metavar="NAME", help="agent (see `gymkit list`); default: the env's preset")] = None,
    grid: GridOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    steps: StepsOpt = None,
    episodes: Annotated[int | None, typer.Option(
        metavar="N", help="training budget in episodes")] = None,
    preset: Annotated[str | None, typer.Option(
        metavar="NAME", help="a named hyperparameter set of the env")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Sweep an RL agent, e.g. `gymkit sweep agent frozenlake --seeds 0-4 --grid
    alpha=0.1,0.2`; rerunning the same command finishes only the missing trials."""
    flags = {"device": device, "steps": steps, "episodes": episodes}
    _sweep("agent", env, algo, seeds, grid, backend, workers, flags, set_, config, runs_dir,
           quiet, preset, address=address)


@sweep_app.command("generative", cls=GymkitCommand)
def sweep_generative(
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="generative trainer (see `gymkit list`)")],
    seeds: SeedsOpt,
    dataset: Annotated[str | None, typer.Option(
        metavar="NAME", help="dataset (see `gymkit list`); default: the model's")] = None,
    grid: GridOpt = None,
    backend: BackendOpt = "local",
    address: AddressOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    epochs: Annotated[int | None, typer.Option(
        metavar="N", help="training budget in epochs")] = None,
    steps: StepsOpt = None,
    preset: Annotated[str | None, typer.Option(
        metavar="NAME", help="a named hyperparameter set of the model")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", metavar="DIR", parser=_path, help="where the dataset's files are")] = None,
    set_: SetOpt = None,
    config: ConfigOpt = None,
    runs_dir: RunsDirOpt = Path("runs"),
    quiet: QuietOpt = False,
) -> None:
    """Sweep a generative model, e.g. `gymkit sweep generative vae --seeds 0-2`."""
    flags = {"device": device, "steps": steps, "epochs": epochs}
    _sweep("generative", dataset, model, seeds, grid, backend, workers, flags, set_, config,
           runs_dir, quiet, preset, data_dir, address=address)


def _sweep(kind: str, target: str | None, plugin: str | None, seeds: str,
           grid: list[str] | None, backend: str, workers: int | None, flags: dict[str, Any],
           assignments: list[str] | None, config: Path | None, runs_dir: Path, quiet: bool,
           hyperparams: str | None, data_dir: Path | None = None,
           address: str | None = None) -> None:
    """Exit 0 when every trial completed, 1 when one failed, 130 when Ctrl-C stopped it."""
    from toolkit import sweep

    out = stdout()
    definition = sweep.SweepDefinition(
        kind, target, plugin, sweep.parse_seeds(seeds), sweep.parse_grid(grid or []),
        assignments=list(assignments or []),
        flags={k: v for k, v in flags.items() if v is not None},
        hyperparams=hyperparams, config_file=str(config.resolve()) if config else None,
        data_dir=str(data_dir.expanduser().resolve()) if data_dir else None)
    result = sweep.run_sweep(definition, runs_dir, backend=backend, workers=workers,
                             address=address, console=None if quiet else out)
    print_path(out, "sweep directory:", result.path)
    if result.interrupted:
        stderr().print("[yellow]interrupted[/]; the trials stopped where they were. Finish them "
                       "by running the same command again.", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    sweep.render(out, result)
    out.print(f"{result.ran} trials trained now, {len(result.trials)} in all; "
              f"{sweep.SWEEP_JSON} and {sweep.SWEEP_CSV} hold the aggregates")
    if result.failed:
        error_line(f"{len(result.failed)} of {len(result.trials)} trials failed; see above")
        raise typer.Exit(EXIT_BUG)


class ListKind(str, Enum):
    agents = "agents"
    models = "models"
    envs = "envs"
    datasets = "datasets"
    presets = "presets"
    all = "all"


@app.command("list", cls=GymkitCommand)
def list_plugins(kind: Annotated[ListKind | None, typer.Argument(
        help="one kind in full: agents, models, envs (with their presets and the agents that "
             "fit them), datasets, presets, or all")] = None) -> None:
    """What is installed: a summary of each kind, or one kind in full."""
    from toolkit.data import DATASETS
    from toolkit.environments import ENVS
    from toolkit.registry import AGENTS, GENERATIVE, load_problems

    out = stdout()
    if kind is None:
        _list_summary(out)
    else:
        shown = ([ListKind.agents, ListKind.models, ListKind.datasets, ListKind.envs]
                 if kind is ListKind.all else [kind])
        for one in shown:
            LISTINGS[one](out)
            out.print()
    for line in [*name_clashes((AGENTS, GENERATIVE, ENVS, DATASETS)), *load_problems]:
        stderr().print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)


def _list_summary(out: Console) -> None:
    """Each kind's count and names, wrapped to the terminal: one screen."""
    import textwrap

    from toolkit.data import DATASETS
    from toolkit.environments import ENVS
    from toolkit.registry import AGENTS, GENERATIVE

    env_presets = [f"{e.name}:{preset}" for e in ENVS.entries() if not e.error
                   for preset in e.obj.presets]

    def usable_and_not(registry: Any) -> list[str]:
        broken = sorted({f"{e.name} (UNUSABLE)" for e in registry.entries() if e.error})
        return [*registry.names(), *broken]

    kinds = (("agents", "agents", usable_and_not(AGENTS)),
             ("generative models", "models", usable_and_not(GENERATIVE)),
             ("environments", "envs", usable_and_not(ENVS)),
             ("datasets", "datasets", usable_and_not(DATASETS)),
             ("env presets", "presets (the models' too)", env_presets))
    width = max(40, min(out.width, 100))
    for title, word, names in kinds:
        out.print(f"[bold]{title}[/] ({len(names)})  [dim]gymkit list {word}[/]")
        out.print(textwrap.fill(", ".join(names) or "none registered yet", width,
                                initial_indent="  ", subsequent_indent="  ",
                                break_on_hyphens=False), highlight=False)
    out.print("Any gymnasium id is an env too: gymkit run agent FrozenLake-v1 --algo qlearning")


def _list_plugins_of(out: Console, title: str, registry: Any) -> None:
    from toolkit.report import fitted_table

    rows = [(e.name, f"UNUSABLE: {e.error}" if e.error else e.description, e.source)
            for e in registry.entries()] or [("—", "none registered yet", "")]
    out.print(fitted_table(title, ("name", "description", "package"), rows, out.width,
                           shrink=("description", "package"),
                           floors={"package": _package_floor(rows)}))


def _list_agents(out: Console) -> None:
    from toolkit.registry import AGENTS

    _list_plugins_of(out, "agents", AGENTS)


def _list_models(out: Console) -> None:
    from toolkit.registry import GENERATIVE

    _list_plugins_of(out, "generative trainers", GENERATIVE)


def _list_datasets(out: Console) -> None:
    from toolkit.data import DATASETS
    from toolkit.report import fitted_table

    width = out.width
    data_rows = [(e.name, "", "", "", f"UNUSABLE: {e.error}", e.source) if e.error else
                 (e.name, e.obj.shape_text(), e.obj.size, e.obj.origin, e.description, e.source)
                 for e in DATASETS.entries()] or [("—", "", "", "", "none registered yet", "")]
    out.print(fitted_table("datasets", ("name", "shape", "size", "source", "description",
                                        "package"), data_rows, width,
                           shrink=("description", "source", "package", "size"),
                           floors={"package": _package_floor(data_rows), "source": 12,
                                   "size": 8, "description": 15}))


def _list_envs(out: Console) -> None:
    from toolkit.environments import ENVS
    from toolkit.report import fitted_table

    width = out.width
    env_rows = []
    origins: set[str] = set()
    for env_entry in ENVS.entries():
        preset = env_entry.obj
        limit, origin = preset.time_limit()
        origins.add(origin)
        # One kwarg a line: the column stays narrow and nothing in it needs cutting. The time
        # limit has a line of its own, whether it comes from the kwargs or not.
        gym_id = "\n".join([*id_lines(preset.id), *(f"{k}={v}" for k, v in preset.kwargs.items()
                                                    if k != "max_episode_steps"),
                            time_limit_line(limit, origin)])
        agents = ", ".join([preset.algo, *(a for a in _fitting(env_entry.name)
                                           if a != preset.algo)])
        env_rows.append((env_entry.name, gym_id, agents, "\n".join(preset.presets) or "—",
                         env_entry.description, env_entry.source))
    out.print(fitted_table("environments",
                           ("name", "gymnasium id", "agents", "presets", "description",
                            "package"),
                           env_rows or [("—", "", "", "", "none registered yet", "")], width,
                           shrink=("description", "package", "gymnasium id", "agents",
                                   "presets"),
                           floors={"description": 15, "package": _package_floor(env_rows),
                                   "gymnasium id": ID_FLOOR, "agents": 18, "presets": 7}))
    out.print("agents: the default first, then every other installed agent that fits the "
              "env's spaces.")
    if "gymkit default" in origins:
        out.print("* gymkit's time limit for an env registered without one; set "
                  "max_episode_steps in the preset's kwargs to change it.")
    if "unknown" in origins:
        out.print("? the env is registered by the preset's setup, which `gymkit list` does not "
                  "run; set max_episode_steps in the preset's kwargs to show it.")
    out.print("Any gymnasium id works as well, e.g. `gymkit run agent FrozenLake-v1 --algo "
              "qlearning`.")


def _fitting(env_name: str) -> list[str]:
    """The installed agents that fit `env_name`'s spaces; none when the env cannot be made
    here (an optional extra it needs is missing)."""
    from toolkit.environments import resolve_env
    from toolkit.launch import fitting_agents
    from toolkit.registry import AGENTS

    try:
        return fitting_agents(resolve_env(env_name)[0], AGENTS)
    except Exception:  # a listing shows what it can
        return []


def _list_presets(out: Console) -> None:
    """Every named hyperparameter set (`--preset NAME`): the envs' and the models'."""
    from toolkit.environments import ENVS
    from toolkit.registry import GENERATIVE
    from toolkit.report import fitted_table

    rows = []
    for entry in ENVS.entries():
        for name, values in entry.obj.presets.items():
            rows.append((name, f"gymkit run agent {entry.name} --preset {name}",
                         str(values.get("algo") or entry.obj.algo)))
    for model in GENERATIVE.entries():
        if model.error:
            continue
        for name in getattr(GENERATIVE.get(model.name), "presets", {}):
            rows.append((name, f"gymkit run generative {model.name} --preset {name}",
                         model.name))
    out.print(fitted_table("presets", ("name", "command", "plugin"),
                           rows or [("—", "none registered yet", "")], out.width,
                           shrink=("command",), floors={"command": 20}))


LISTINGS = {ListKind.agents: _list_agents, ListKind.models: _list_models,
            ListKind.envs: _list_envs, ListKind.datasets: _list_datasets,
            ListKind.presets: _list_presets}


#: The width the gymnasium id column of `gymkit list` gives way to on a narrow terminal.
ID_FLOOR = 17


def id_lines(env_id: str) -> list[str]:
    """A long namespaced id (``MinAtar/SpaceInvaders-v1``) on two lines, broken after its
    namespace, so that the id column never folds it in the middle of a word."""
    namespace, slash, rest = env_id.rpartition("/")
    if len(env_id) <= ID_FLOOR or not slash:
        return [env_id]
    return [namespace + slash, rest]


def time_limit_line(limit: int | None, origin: str) -> str:
    """``max 500 steps``: the time limit an env's episodes run under, for `gymkit list`;
    ``*`` marks gymkit's default, ``?`` a limit that only the preset's setup can tell."""
    if limit is None:
        return "max ? steps"
    return f"max {limit:,} steps{'*' if origin == 'gymkit default' else ''}"


def _package_floor(rows: Sequence[Sequence[str]]) -> int:
    """Package names fold only when they are longer than 20 characters."""
    return min(max([7, *(len(row[-1]) for row in rows)]), 20)


def name_clashes(registries: Sequence[Any]) -> list[str]:
    """One line per name that several packages register, printed as warnings under the
    tables of `gymkit list` (the tables list every one of them, with its package).

    Uses ``Registry.clashes()`` (name -> packages) where a registry has it.
    """
    lines: list[str] = []
    for registry in registries:
        report = getattr(registry, "clashes", None)
        if not callable(report):
            continue
        for name, sources in report().items():
            choices = " or ".join(f"{source}:{name}" for source in sources)
            lines.append(f"{registry.kind} '{name}' is registered by {', '.join(sources)}; "
                         f"name one of them: {choices}")
    return lines


@app.command("tensorboard", cls=GymkitCommand)
def tensorboard(
    runs_dir: Annotated[Path, typer.Argument(
        metavar="RUNS_DIR", help="folder of run directories")] = Path("runs"),
    port: Annotated[int, typer.Option(metavar="N", help="port to serve on")] = 6006,
) -> None:
    """Launch TensorBoard on the run directories."""
    import importlib.util

    if not runs_dir.is_dir():
        raise GymkitError(f"{runs_dir} does not exist; train something first or pass a folder")
    check_port(port)
    if importlib.util.find_spec("tensorboard") is None:
        raise GymkitError("TensorBoard is not installed; install it with `pip install tensorboard`")
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs_dir),
               "--port", str(port)]
    stdout().print(f"TensorBoard on http://localhost:{port} (Ctrl-C to stop)")
    raise typer.Exit(serve(command))


def serve(command: list[str]) -> int:
    """Run a server child until it ends, or until Ctrl-C or SIGTERM stops this process:
    then the child is stopped too (SIGTERM, then SIGKILL after 5 s), never left serving."""
    import signal

    child = subprocess.Popen(command)
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        received.append(signum)
        child.terminate()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        code = child.wait()
        if received:  # stopped by SIGTERM, whatever the child returned: 128 + 15
            return 128 + received[0]
        return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell
    finally:  # Ctrl-C (KeyboardInterrupt) too: the child got it as well, but may linger
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def check_port(port: int) -> None:
    """Refuse a port TensorBoard could not serve on, before it starts and fails."""
    if not 1 <= port <= 65535:
        raise GymkitError(f"--port must be in 1..65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name != "nt":  # as servers do; on Windows the option would steal a busy port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise GymkitError(f"cannot serve on port {port}: {reason}; pass another port, "
                              f"e.g. --port {port + 1 if port < 65535 else 6006}") from exc


def main() -> None:
    # Plugin load problems reach the user inside gymkit's own messages (`gymkit list`, and
    # the error for a name they hide), not as Python's multi-line warnings.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="toolkit.registry")
    app()
