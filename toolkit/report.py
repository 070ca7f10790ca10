"""Rich rendering of a run's summary, evaluation results and the plugin tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from toolkit.trainer import Trainer


def eval_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """Human rows for the ``eval/`` metrics of `Trainer.evaluate`."""
    rows = []
    n = int(metrics.get("eval/episodes", 0))
    if "eval/success_rate" in metrics:
        rows.append(("eval success rate",
                     f"[bold]{metrics['eval/success_rate']:.3f}[/] (95% CI "
                     f"{metrics['eval/success_rate_ci_low']:.3f}–"
                     f"{metrics['eval/success_rate_ci_high']:.3f}) over {n} episodes"))
    if "eval/mean_return" in metrics:
        rows.append(("eval mean return",
                     f"{metrics['eval/mean_return']:.3f} ± {metrics['eval/return_ci95']:.3f} "
                     f"(95% CI) over {n} episodes, mean length {metrics['eval/mean_length']:.1f}"))
    shown = {"eval/success_rate", "eval/success_rate_ci_low", "eval/success_rate_ci_high",
             "eval/mean_return", "eval/return_ci95", "eval/mean_length", "eval/episodes"}
    rows += [(k.removeprefix("eval/").replace("_", " "), f"{v:.4g}")
             for k, v in metrics.items() if k not in shown]
    return rows


def render_summary(console: Console, summary: dict[str, Any], trainer: Trainer) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    table.add_row("run", f"{summary['plugin']} on {summary['target']}, seed {summary['seed']}")
    counters = ", ".join(f"{v:,} {k}" for k, v in summary["progress"].items())
    table.add_row("trained", counters)
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s, training and evaluation")
    for name, value in eval_rows(summary.get("final_eval", {})):
        table.add_row(name, value)
    horizon = summary.get("optimum_horizon")
    for key in ("optimal_success_rate", "optimal_mean_return"):
        if key == "optimal_mean_return" and summary.get(key) == summary.get("optimal_success_rate"):
            continue  # rewards of 1 for success only: the two optima are one number
        if key in summary:
            table.add_row(key.replace("_", " "),
                          f"{summary[key]:.4f} (value iteration on the env's transition table, "
                          f"{horizon}-step limit)")
    table.add_row("run directory", summary["run_dir"])
    table.add_row("tensorboard", f"gymkit tensorboard {Path(summary['run_dir']).parent}")
    parts: list[Any] = [table]
    parts += [Panel(text, title=title, expand=False) for title, text in trainer.panels()]
    console.print(Panel(Group(*parts), title=f"[bold]{summary['status']}", expand=False))
