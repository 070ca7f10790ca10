"""The training loop: budget, progress bar, logging, evaluation, checkpoints, signals.

A plugin never runs its own loop; the runner calls `train_step` until the
budget is spent, evaluates every `eval_every` units, writes ``last.pt`` every
`checkpoint_every` units and ``best.pt`` whenever the evaluation metric
improves. SIGINT or SIGTERM finishes the current step, writes a checkpoint,
marks the run interrupted and returns, so that `gymkit resume` continues it
exactly where it stopped.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from toolkit.checkpoint import save_checkpoint
from toolkit.config import RunSettings
from toolkit.logger import RunLogger
from toolkit.rundir import RunDir
from toolkit.seeding import global_rng_state, set_global_rng_state
from toolkit.trainer import Trainer

INTERRUPTED_EXIT_CODE = 130


@dataclass
class LoopState:
    """The runner's own counters; saved in every checkpoint next to the trainer's state."""

    next_eval: int
    next_checkpoint: int
    best: float | None = None
    metric_lines: int = 0
    elapsed: float = 0.0


@dataclass
class RunResult:
    status: str
    summary: dict[str, Any]
    rundir: RunDir

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class Runner:
    def __init__(
        self,
        trainer: Trainer,
        settings: RunSettings,
        rundir: RunDir,
        spec: dict[str, Any],
        *,
        console: Console | None = None,
        quiet: bool = False,
        on_step: Callable[[Runner], None] | None = None,
    ) -> None:
        self.trainer = trainer
        self.settings = settings
        self.rundir = rundir
        self.spec = spec
        self.console = console or Console()
        self.quiet = quiet
        self.on_step = on_step
        self.budget_unit, self.budget = settings.budget()
        self._stop_signal: int | None = None

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step, as if the process had received `signum`."""
        self._stop_signal = signum

    # -- the loop -----------------------------------------------------------------

    def run(self, checkpoint: dict[str, Any] | None = None) -> RunResult:
        """Train until the budget is spent or a stop is requested; `checkpoint` resumes."""
        with self.rundir.lock():
            return self._run(checkpoint)

    def _run(self, checkpoint: dict[str, Any] | None) -> RunResult:
        unit = self.trainer.progress_unit
        if checkpoint is None:
            state = LoopState(next_eval=self.settings.eval_every,
                              next_checkpoint=self.settings.checkpoint_every)
            resume_step = None
        else:
            self.trainer.load_state_dict(checkpoint["trainer"])
            set_global_rng_state(checkpoint["rng"])
            state = LoopState(**checkpoint["loop"])
            resume_step = self.trainer.progress()[unit]
        logger = RunLogger(self.rundir.path, self.rundir.metrics_path, resume_step=resume_step,
                           keep_metric_lines=state.metric_lines if checkpoint else None)
        if checkpoint is None:
            logger.hparams({"run": self.settings.to_dict(),
                            self.spec["plugin"]: self.spec["config"]})
        started = time.perf_counter() - state.elapsed
        self._write_summary("running", state, started)
        try:
            with self._signals():
                self._loop(state, logger, started)
                final = None
                if self._stop_signal is None:
                    final = self._evaluate(logger, state, self.settings.final_eval_episodes)
                status = "completed" if final is not None else "interrupted"
                self._save("last", state, logger, started)
            summary = self._write_summary(status, state, started, final=final)
            return RunResult(status, summary, self.rundir)
        except KeyboardInterrupt:
            # A second Ctrl-C stopped a step half-way: that state cannot be saved, but
            # checkpoints/last.pt from before it still resumes the run.
            self._write_summary("interrupted", state, started,
                                error="stopped at once; resume continues from the last checkpoint")
            raise
        except BaseException as exc:
            self._write_summary("failed", state, started, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            logger.close()

    def _loop(self, state: LoopState, logger: RunLogger, started: float) -> None:
        unit = self.trainer.progress_unit
        with self._progress() as bar:
            task = bar.add_task(self.spec["plugin"], total=self.budget, completed=self._spent(),
                                info="")
            last_time, last_count = time.perf_counter(), self.trainer.progress()[unit]
            while self._spent() < self.budget and self._stop_signal is None:
                metrics = self.trainer.train_step()
                counters = self.trainer.progress()
                now = time.perf_counter()
                metrics["time/SPS"] = (counters[unit] - last_count) / max(now - last_time, 1e-9)
                last_time, last_count = now, counters[unit]
                logger.scalars(counters[unit], metrics, extra=_other_counters(counters, unit))
                # The final evaluation replaces a periodic one due on the last step.
                if counters[unit] >= state.next_eval and self._spent() < self.budget:
                    self._evaluate(logger, state, self.settings.eval_episodes)
                    state.next_eval = _next_multiple(counters[unit], self.settings.eval_every)
                if counters[unit] >= state.next_checkpoint:
                    state.next_checkpoint = _next_multiple(counters[unit],
                                                           self.settings.checkpoint_every)
                    self._save("last", state, logger, started)
                bar.update(task, completed=self._spent(), info=_brief(metrics, state))
                if self.on_step is not None:
                    self.on_step(self)

    def _spent(self) -> int:
        return self.trainer.progress()[self.budget_unit]

    def _evaluate(self, logger: RunLogger, state: LoopState, episodes: int) -> dict[str, float]:
        result = self.trainer.evaluate(episodes)
        step = self.trainer.progress()[self.trainer.progress_unit]
        logger.scalars(step, result)
        logger.images(step, self.trainer.images())
        score = result.get(self.trainer.eval_metric)
        if score is not None and math.isfinite(score):
            sign = 1 if self.trainer.eval_higher_is_better else -1
            if state.best is None or sign * score > sign * state.best:
                state.best = score
                self._save("best", state, logger, None)
        return result

    def _save(self, which: str, state: LoopState, logger: RunLogger, started: float | None) -> None:
        if started is not None:
            state.elapsed = time.perf_counter() - started
        logger.flush()
        state.metric_lines = logger.metric_lines
        save_checkpoint(self.rundir.checkpoint(which), {
            "spec": self.spec,
            "trainer": self.trainer.state_dict(),
            "loop": asdict(state),
            "rng": global_rng_state(),
        })

    def _write_summary(self, status: str, state: LoopState, started: float,
                       final: dict[str, float] | None = None, error: str | None = None
                       ) -> dict[str, Any]:
        previous = self.rundir.read_summary()
        wall = time.perf_counter() - started
        counters = self.trainer.progress()
        summary: dict[str, Any] = {
            "status": status,
            "kind": self.spec["kind"],
            "plugin": self.spec["plugin"],
            "target": self.spec["target"],
            "seed": self.settings.seed,
            "progress": counters,
            "budget": {self.budget_unit: self.budget},
            "wall_time_s": wall,
            "per_second": counters[self.trainer.progress_unit] / wall if wall > 0 else 0.0,
            "best": {self.trainer.eval_metric: state.best},
            "started_at": previous.get("started_at", _now()),
            "updated_at": _now(),
            "run_dir": str(self.rundir),
        }
        if final is not None:
            summary["final_eval"] = final
            summary.update(self.trainer.summary())
        if error is not None:
            summary["error"] = error
        self.rundir.write_summary(summary)
        return summary

    @contextmanager
    def _progress(self) -> Iterator[Progress]:
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(self.budget_unit), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
            console=self.console, disable=self.quiet, transient=False,
        )
        with progress:
            yield progress

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            self._stop_signal = signum
            # A second Ctrl-C stops at once, without waiting for the step to finish.
            signal.signal(signal.SIGINT, signal.default_int_handler)

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


def _other_counters(counters: dict[str, int], unit: str) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k != unit}


def _brief(metrics: dict[str, float], state: LoopState) -> str:
    shown = [f"{k.split('/')[-1]} {v:.3g}" for k, v in metrics.items()
             if k in ("charts/episodic_return", "charts/epsilon", "losses/loss")]
    if state.best is not None:
        shown.append(f"best eval {state.best:.3g}")
    return "  ".join(shown)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
