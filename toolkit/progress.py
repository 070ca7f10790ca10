"""Progress of long work, shown the same way wherever it happens.

Code that does long work (the training loop, an evaluation's episodes, a likelihood
estimate, drawing samples, a sweep's trials) opens a `task` and advances it; it never asks
where the progress goes. A command that wants progress shown wraps its work in `reporting`:

- on a terminal, rich bars with the count, the rate, the elapsed time and an ETA, each
  task's metrics on a line of its own below its bar (never cut short);
- elsewhere (CI logs, ``nohup``, a pipe), a plain line per task every `PLAIN_INTERVAL_S`
  seconds, and one when a task that printed lines ends;
- outside `reporting`, or with ``quiet``, nothing.

Tasks nest (the final evaluation inside the training loop); `label` names the inner ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.progress import Task as RichTask
from rich.table import Column
from rich.text import Text

#: Seconds between two plain progress lines of one task when the output is not a terminal.
PLAIN_INTERVAL_S = 15.0


@dataclass
class Task:
    """One long piece of work: `advance` it, or `update` it to a count; `info` is a short
    text (metrics) shown with it."""

    description: str
    total: int | None
    unit: str
    completed: int = 0
    info: str = ""
    closing_line: bool = False
    started: float = field(default_factory=time.monotonic)
    _reporter: _Reporter | None = None
    _handle: object = None

    def advance(self, amount: int = 1) -> None:
        self.update(self.completed + amount)

    def update(self, completed: int | None = None, info: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if info is not None:
            self.info = info
        if self._reporter is not None:
            self._reporter.changed(self)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.completed / elapsed if elapsed > 0 else 0.0


class _Reporter:
    """Where tasks show; the base shows nothing."""

    def start(self, task: Task) -> None:
        pass

    def changed(self, task: Task) -> None:
        pass

    def finish(self, task: Task) -> None:
        pass

    def announce(self, text: str) -> None:
        """A line that must be seen now (Ctrl-C's acknowledgement); safe to call from a
        signal handler: it never writes to a stream the interrupted code may be writing to."""


_active: _Reporter | None = None
_label: list[str] = []


@contextmanager
def reporting(console: Console, *, quiet: bool = False,
              interval: float | None = None) -> Iterator[None]:
    """Show the tasks opened inside on `console` (bars on a terminal, plain lines
    elsewhere), or nothing when `quiet`. Inside another `reporting`, the outer one goes on
    showing them, unless this one is `quiet` (a sweep's trial)."""
    global _active
    outer = _active
    if outer is not None and not quiet:
        yield
        return
    if quiet:
        _active = _Quiet(console)
    elif console.is_terminal:
        _active = _Bars(console)
    else:
        _active = _Lines(console, PLAIN_INTERVAL_S if interval is None else interval)
    try:
        yield
    finally:
        _active.close()
        _active = outer


@contextmanager
def task(description: str | None, total: int | None, unit: str, *,
         closing_line: bool = False) -> Iterator[Task]:
    """A task for the work in the block; `description` None takes the innermost `label`.
    With `closing_line`, plain output ends it with a line even if it was short (a run's
    training: the line that says what it did)."""
    name = description or (_label[-1] if _label else "working")
    reporter = _active
    handle = Task(name, total, unit, closing_line=closing_line, _reporter=reporter)
    if reporter is not None:
        reporter.start(handle)
    try:
        yield handle
    finally:
        if reporter is not None:
            reporter.finish(handle)
        handle._reporter = None


@contextmanager
def label(text: str) -> Iterator[None]:
    """Name the tasks opened inside without a description of their own."""
    _label.append(text)
    try:
        yield
    finally:
        _label.pop()


def announce(text: str, console: Console | None = None) -> None:
    """Show `text` at once (see `_Reporter.announce`); with no reporter, on `console`."""
    if _active is not None:
        _active.announce(text)
    elif console is not None:
        _print_later(console, text)


def _print_later(console: Console, text: str) -> None:
    # From a signal handler, printing could re-enter a write the handler interrupted
    # (io raises "reentrant call"); a thread prints once that write is done.
    threading.Thread(target=console.print, args=(text,), kwargs={"soft_wrap": True},
                     daemon=True).start()


def eta_text(task: Task) -> str:
    """``12 s``, ``4 min``, ``2.5 h``: the time left at the task's mean rate so far."""
    rate = task.rate()
    if task.total is None or rate <= 0:
        return "?"
    left = max(0.0, (task.total - task.completed) / rate)
    return duration_text(left)


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def rate_text(rate: float, unit: str) -> str:
    return f"{rate:,.0f} {unit}/s" if rate >= 10 else f"{rate:.2g} {unit}/s"


def line_text(task: Task) -> str:
    """One plain line: description, count, share, rate, ETA and info."""
    count = f"{task.completed:,}" + (f"/{task.total:,}" if task.total is not None else "")
    share = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
    info = f"; {task.info}" if task.info else ""
    return (f"{task.description}: {count} {task.unit}{share}, "
            f"{rate_text(task.rate(), task.unit)}, ETA {eta_text(task)}{info}")


def done_text(task: Task) -> str:
    """The closing line of a task: what it did, how long it took, its info."""
    count = f"{task.completed:,}" + (f"/{task.total:,}" if task.total is not None else "")
    took = time.monotonic() - task.started
    info = f"; {task.info}" if task.info else ""
    return (f"{task.description}: {count} {task.unit} in {duration_text(took)}, "
            f"{rate_text(task.rate(), task.unit)}{info}")


class _Quiet(_Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console

    def announce(self, text: str) -> None:
        _print_later(Console(stderr=True, highlight=False), text)

    def close(self) -> None:
        pass


class _Lines(_Reporter):
    """Plain lines for output that is not a terminal: a task's line every `interval`
    seconds, and a closing line for a task that printed or asks for one."""

    def __init__(self, console: Console, interval: float) -> None:
        self.console = console
        self.interval = interval
        self.last: dict[int, float] = {}
        self.printed: set[int] = set()

    def start(self, task: Task) -> None:
        self.last[id(task)] = time.monotonic()

    def changed(self, task: Task) -> None:
        now = time.monotonic()
        if now - self.last.get(id(task), now) >= self.interval:
            self.last[id(task)] = now
            self.printed.add(id(task))
            self._print(line_text(task))

    def finish(self, task: Task) -> None:
        if task.closing_line or id(task) in self.printed:
            self._print(done_text(task))
        self.last.pop(id(task), None)
        self.printed.discard(id(task))

    def _print(self, text: str) -> None:
        self.console.print(escape(text), soft_wrap=True, highlight=False)

    def announce(self, text: str) -> None:
        _print_later(self.console, text)

    def close(self) -> None:
        pass


class _CountColumn(ProgressColumn):
    """``1,200/50,000 steps``."""

    def render(self, task: RichTask) -> Text:
        total = "" if task.total is None else f"/{int(task.total):,}"
        return Text(f"{int(task.completed):,}{total} {task.fields.get('unit', '')}",
                    style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: RichTask) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "")
        return Text("" if speed is None else rate_text(speed, unit), style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """``ETA 0:12``, from rich's estimate over the last few updates."""

    def render(self, task: RichTask) -> Text:
        left = task.time_remaining
        if task.finished:
            return Text("done", style="progress.remaining")
        if left is None:
            return Text("ETA ?", style="progress.remaining")
        minutes, seconds = divmod(int(left), 60)
        hours, minutes = divmod(minutes, 60)
        clock = f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
        return Text(f"ETA {clock}", style="progress.remaining")


class _LiveBars(Progress):
    """rich's Progress with each task's info on a line of its own under the table, and a
    notice (Ctrl-C's acknowledgement) under that."""

    notice: str = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for rich_task in self.tasks:
            info = rich_task.fields.get("info", "")
            if info:
                yield Text(f"  {info}", style="dim", overflow="fold")
        if self.notice:
            yield Text(self.notice, style="yellow")


class _Bars(_Reporter):
    """rich bars, started with the first task and stopped when the last one ends."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: _LiveBars | None = None
        self.open: dict[int, object] = {}

    def _bars(self) -> _LiveBars:
        if self.progress is None:
            self.progress = _LiveBars(
                TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=6)),
                _CountColumn(table_column=Column(no_wrap=True)),
                _RateColumn(table_column=Column(no_wrap=True)),
                _EtaColumn(table_column=Column(no_wrap=True)),
                console=self.console, transient=False, expand=True,
            )
            self.progress.start()
        return self.progress

    def start(self, task: Task) -> None:
        bars = self._bars()
        task._handle = bars.add_task(escape(task.description), total=task.total,
                                     completed=task.completed, unit=task.unit,
                                     info=escape(task.info))
        self.open[id(task)] = task._handle

    def changed(self, task: Task) -> None:
        if self.progress is not None and task._handle is not None:
            self.progress.update(task._handle, completed=task.completed,  # type: ignore[arg-type]
                                 info=escape(task.info))

    def finish(self, task: Task) -> None:
        self.open.pop(id(task), None)
        if self.progress is None or task._handle is None:
            return
        if self.open:  # an inner task: its bar goes, the outer ones stay
            self.progress.remove_task(task._handle)  # type: ignore[arg-type]
            return
        self.progress.update(task._handle, completed=task.completed,  # type: ignore[arg-type]
                             info=escape(task.info))
        self.progress.stop()
        self.progress = None

    def announce(self, text: str) -> None:
        if self.progress is not None:
            self.progress.notice = text  # drawn by rich's refresh thread
        else:
            _print_later(self.console, text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
