"""Rich rendering of a run's summary, evaluation results and the plugin tables.

Everything here fits an 80-column terminal without cutting what a user may
copy: run directories, plugin and env names are folded onto their own lines
when they are too long, never shortened with an ellipsis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from toolkit.trainer import Trainer

#: Columns a summary panel adds around its content: two borders, two spaces of padding.
PANEL_FRAME = 4


def plural(count: float, noun: str, plural_form: str | None = None) -> str:
    """``1 episode``, ``2 episodes``, ``1,000 steps`` (thousands separated)."""
    number = f"{count:,}" if isinstance(count, int) else f"{count:,g}"
    word = noun if count == 1 else (plural_form or noun + "s")
    return f"{number} {word}"


def counters_text(progress: dict[str, int]) -> str:
    """``{"steps": 1000, "episodes": 1}`` -> ``1,000 steps, 1 episode``."""
    return ", ".join(plural(value, _singular(name), name) for name, value in progress.items())


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name


def eval_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """Human rows (rich markup) for the ``eval/`` metrics of `Trainer.evaluate`."""
    rows = []
    over = "over " + plural(int(metrics.get("eval/episodes", 0)), "episode")
    if "eval/success_rate" in metrics:
        rows.append(("eval success rate",
                     f"[bold]{metrics['eval/success_rate']:.3f}[/] (95% CI "
                     f"{metrics['eval/success_rate_ci_low']:.3f}–"
                     f"{metrics['eval/success_rate_ci_high']:.3f}) {over}"))
    if "eval/mean_return" in metrics:
        rows.append(("eval mean return",
                     f"{metrics['eval/mean_return']:.3f} ± {metrics['eval/return_ci95']:.3f} "
                     f"(95% CI) {over}, mean length {metrics['eval/mean_length']:.1f}"))
    shown = {"eval/success_rate", "eval/success_rate_ci_low", "eval/success_rate_ci_high",
             "eval/mean_return", "eval/return_ci95", "eval/mean_length", "eval/episodes"}
    rows += [(k.removeprefix("eval/").replace("_", " "), f"{v:.4g}")
             for k, v in metrics.items() if k not in shown]
    return rows


def render_summary(console: Console, summary: dict[str, Any], trainer: Trainer) -> None:
    """The panel printed at the end of a run; fits `console.width` without cutting paths."""
    rows: list[tuple[str, str | Text]] = [
        ("run", escape(f"{summary['plugin']} on {summary['target']}, seed {summary['seed']}")),
        ("trained", counters_text(summary["progress"])),
        ("wall time", f"{summary['wall_time_s']:.1f} s, training and evaluation"
                      + (f", {summary['threads']} torch thread"
                         f"{'s' if summary['threads'] != 1 else ''}"
                         if summary.get("threads") and trainer.uses_torch else "")),
        *eval_rows(summary.get("final_eval", {})),
        *best_checkpoint_rows(summary, trainer),
    ]
    horizon = summary.get("optimum_horizon")
    for key in ("optimal_success_rate", "optimal_mean_return"):
        if key == "optimal_mean_return" and summary.get(key) == summary.get("optimal_success_rate"):
            continue  # rewards of 1 for success only: the two optima are one number
        if key in summary:
            rows.append((key.replace("_", " "),
                         f"{summary[key]:.4f} (value iteration on the env's transition table, "
                         f"{horizon}-step limit)"))
    if "device_note" in summary:
        rows.append(("device", escape(summary["device_note"])))
    # Text, not markup: a path is shown exactly as it is, brackets and all.
    rows.append(("run directory", Text(str(summary["run_dir"]))))
    rows.append(("tensorboard", Text(f"gymkit tensorboard {Path(summary['run_dir']).parent}")))
    parts: list[RenderableType] = [key_value_block(rows, console.width - PANEL_FRAME)]
    parts += [Panel(text, title=title, expand=False) for title, text in trainer.panels()]
    console.print(Panel(Group(*parts), title=f"[bold]{escape(str(summary['status']))}",
                        expand=False))


def best_checkpoint_rows(summary: dict[str, Any], trainer: Trainer) -> list[tuple[str, str]]:
    """How best.pt did on the final evaluation's episodes, and which checkpoint won."""
    best = summary.get("final_eval_best")
    if not best:
        return []
    metric = trainer.eval_metric
    name = metric.removeprefix("eval/").replace("_", " ")
    last_value = summary.get("final_eval", {}).get(metric)
    verdict = {"last": "last.pt is better", "best": "best.pt is better",
               "equal": "the two score the same"}[summary.get("better_checkpoint", "equal")]
    if metric not in best or last_value is None:
        return []
    return [("best.pt", f"{name} {best[metric]:.3f} in the same final evaluation (last.pt "
                        f"{last_value:.3f}): {verdict}")]


def key_value_block(rows: Sequence[tuple[str, str | Text]], width: int) -> Group:
    """Label/value rows in two columns, `width` wide at most.

    A `Text` value (a path or a command to copy) that does not fit beside its label
    goes on its own line below it; one that does not fit even there is broken after
    a ``/`` or a space (see `break_path`). Other values wrap at spaces, and fold a
    word longer than the column.
    """
    label_width = max((cell_len(label) for label, _ in rows), default=0)
    value_width = max(width - label_width - 2, 1)
    parts: list[RenderableType] = []
    table: Table | None = None
    for label, value in rows:
        if isinstance(value, Text) and value.cell_len > value_width:
            table = None
            indent = "  " if value.cell_len + 2 <= width else ""
            parts.append(Text(label, style="cyan"))
            lines = break_path(value.plain, max(width - len(indent), 1))
            parts.append(Text("\n".join(indent + line for line in lines), style=value.style,
                              overflow="fold"))
            continue
        if table is None:
            table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 1))
            table.add_column(style="cyan", no_wrap=True, min_width=label_width)
            table.add_column(overflow="fold")
            parts.append(table)
        table.add_row(label, value)
    return Group(*parts)


def break_path(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, broken after a ``/`` or a space where it can
    be, so that each directory name stays whole; a name longer than `width` is folded."""
    pieces = re.findall(r"[^/\\ ]*(?:[/\\ ]|$)", text)
    lines: list[str] = []
    current = ""
    for piece in filter(None, pieces):
        if cell_len(current + piece.rstrip()) <= width:
            current += piece
            continue
        if current.strip():
            lines.append(current.rstrip())
        while cell_len(piece.rstrip()) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        current = piece
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def fitted_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    shrink: Sequence[str] = (),
    floors: dict[str, int] | None = None,
) -> Table:
    """A table at most `width` columns wide whose first column (names) is never cut.

    The first column never wraps and is as wide as its longest entry. When the
    table is too wide, the columns named in `shrink` give way in that order, each
    down to its floor in `floors` (default: its header's width, 10 at least),
    wrapping at spaces and folding long words; if that is not enough, the widest
    of them gives way, down to 4. Cells are plain text, not markup.
    """
    floors = floors or {}
    widths = [max(_text_width(text) for text in (header, *(row[i] for row in rows)))
              for i, header in enumerate(headers)]
    # box.SIMPLE_HEAD without edges, and padding on the right only: two columns between
    # neighbours (the separator line's gap and one space of padding).
    excess = sum(widths) + 2 * (len(headers) - 1) - width
    indexes = [list(headers).index(name) for name in shrink]
    for index in indexes:  # in order, each down to its floor
        floor = floors.get(headers[index], max(10, cell_len(headers[index])))
        give = max(min(excess, widths[index] - floor), 0)
        widths[index] -= give
        excess -= give
    while excess > 0:  # then the widest of them, a column at a time, down to 4
        index = max(indexes, key=lambda i: widths[i], default=0)
        if not indexes or widths[index] <= 4:
            break
        widths[index] -= 1
        excess -= 1
    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for index, header in enumerate(headers):
        if index == 0:
            # Only a terminal too narrow for the names alone makes them fold.
            table.add_column(header, no_wrap=excess <= 0, min_width=widths[0], style="cyan",
                             overflow="fold")
        else:
            table.add_column(header, width=widths[index], overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _text_width(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)
