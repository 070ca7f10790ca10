"""The training loop: budget, progress bar, logging, evaluation, checkpoints, signals.

A plugin never runs its own loop; the runner calls `train_step` until the
budget is spent, evaluates every `eval_every` units and at the end of the budget,
writes ``last.pt`` every `checkpoint_every` units (and every `checkpoint_every_s`
seconds) and ``best.pt`` whenever the periodic evaluation improves: the final model
competes for ``best.pt`` on the same episodes (or split) as every other. At the end
it writes ``last.pt``, then evaluates both ``last.pt`` and ``best.pt`` on the final
evaluation's fresh episodes (or the test split), logged under ``final/``.

SIGINT or SIGTERM is acknowledged at once and raises the trainer's stop flag: the
current train_step returns early (or finishes, if it is short), an evaluation under way
is abandoned, a checkpoint is written, the run is marked interrupted and the runner
returns, so that `gymkit resume` continues it where it stopped.

A loss, an evaluation metric or a model state that becomes NaN or infinite stops the
run as failed (unless ``stop_on_nonfinite`` is false), and no checkpoint is written from
that state: last.pt and best.pt keep the last finite one.
"""

from __future__ import annotations

import errno
import math
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from rich.console import Console

from toolkit import progress
from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.config import RunSettings
from toolkit.errors import CheckpointError, GymkitError, NonFiniteError
from toolkit.logger import RunLogger
from toolkit.plugin_checks import check_metrics
from toolkit.rundir import RunDir
from toolkit.seeding import global_rng_state, set_global_rng_state
from toolkit.trainer import FINAL_EVAL_SEED, PERIODIC_EVAL_SEED, Trainer

#: Tag prefix of the final evaluation of last.pt (fresh episodes, or the test split).
FINAL_PREFIX = "final/"

TRACEBACK_FILE = "traceback.txt"
#: Folders of a trainer's big state (`Trainer.save_extra`), one per last.pt, named in it.
EXTRA_PREFIX = "last-extra-"
#: Top-level keys of a run checkpoint, checked when one is loaded.
CHECKPOINT_KEYS = ("spec", "trainer", "loop", "rng")


@dataclass
class LoopState:
    """The runner's own counters; saved in every checkpoint next to the trainer's state."""

    next_eval: int
    next_checkpoint: int
    best: float | None = None
    metric_lines: int = 0
    elapsed: float = 0.0
    #: When training metrics are next logged (0: at the next call; checkpoints from before
    #: `log_every` existed lack it).
    next_log: int = 0
    #: Metrics of the train steps since the last log, per tag: a checkpoint keeps them, so
    #: that a resumed run logs the same averages at the same counts as an uninterrupted one.
    pending: dict[str, list[float]] = field(default_factory=dict)
    #: The count of the latest periodic evaluation (None: none yet, or a checkpoint from
    #: before this was kept): the end of the budget is evaluated once.
    last_eval: int | None = None


@dataclass
class RunResult:
    status: str
    summary: dict[str, Any]
    rundir: RunDir
    #: The signal that stopped the run (SIGINT, SIGTERM), or None.
    signal: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class _StopNow(BaseException):
    """Raised by the signal handler to abandon the final evaluation; a BaseException, so
    that no ``except Exception`` on the way (a plugin's, a loader's) can swallow it."""


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
        self._abandon_on_signal = False
        self._checkpoint_verified = False
        self._last_checkpoint_time = time.monotonic()
        #: The counts at which this run was resumed, this time included (summary.json).
        self._resumed_at: list[int] = []

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step, as if the process had received `signum`."""
        self._stop_signal = signum
        self.trainer.ctx.stop.requested = True

    # -- the loop -----------------------------------------------------------------

    def run(self, checkpoint: dict[str, Any] | None = None) -> RunResult:
        """Train until the budget is spent or a stop is requested; `checkpoint` resumes."""
        with self.rundir.lock(), progress.reporting(self.console, quiet=self.quiet):
            return self._run(checkpoint)

    def _run(self, checkpoint: dict[str, Any] | None) -> RunResult:
        unit = self.trainer.progress_unit
        if checkpoint is None:
            state = LoopState(next_eval=self.settings.eval_every,
                              next_checkpoint=self.settings.checkpoint_every,
                              next_log=self.settings.log_every)
            resume_step = None
        else:
            self.trainer.load_state_dict(checkpoint["trainer"])
            self._load_extra(checkpoint.get("extra"))
            set_global_rng_state(checkpoint["rng"])
            state = LoopState(**checkpoint["loop"])
            resume_step = self.trainer.progress()[unit]
            earlier = self.rundir.read_summary().get("resumed_at")
            self._resumed_at = [*(earlier if isinstance(earlier, list) else []), resume_step]
        logger = RunLogger(self.rundir.path, self.rundir.metrics_path, resume_step=resume_step,
                           keep_metric_lines=state.metric_lines if checkpoint else None)
        self.logger = logger
        started = time.perf_counter() - state.elapsed
        failed = True
        try:
            if checkpoint is None:
                logger.hparams({"run": self.settings.to_dict(),
                                self.spec["plugin"]: self.spec["config"]})
            self._write_summary("running", state, started)
            result = self._train_and_evaluate(state, logger, started)
            failed = False
            return result
        except KeyboardInterrupt:
            # A second Ctrl-C stopped a step half-way: that state cannot be saved, but
            # checkpoints/last.pt from before it still resumes the run.
            self._write_summary("interrupted", state, started,
                                error="stopped at once; resume continues from the last checkpoint")
            raise
        except GymkitError as exc:
            self._fail(state, started, str(exc))
            raise
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                self._fail(state, started, self._record_traceback(exc))
                raise
            message = (f"no space left on the device while writing {self.rundir}; free some "
                       f"space, then `gymkit resume {self.rundir}` continues from the last "
                       "checkpoint")
            self._fail(state, started, message)
            raise GymkitError(message) from exc
        except BaseException as exc:
            self._fail(state, started, self._record_traceback(exc))
            raise
        finally:
            if failed:  # the error on its way out matters more than one closing the files
                with suppress(OSError):
                    logger.close()
            else:
                logger.close()

    def _train_and_evaluate(self, state: LoopState, logger: RunLogger, started: float
                            ) -> RunResult:
        with self._signals(), progress.task(self.spec["plugin"], self.budget,
                                            self.budget_unit, closing_line=True) as bar:
            bar.update(min(self._spent(), self.budget))
            self._loop(state, logger, started, bar)
            self._save("last", state, logger, started)
            if self._stop_signal is not None:
                return self._stopped(state, started)
            finals = self._final_evaluations(logger)
            if finals is None:
                return self._stopped(state, started)
        summary = self._write_summary("completed", state, started, finals=finals)
        return RunResult("completed", summary, self.rundir)

    def _loop(self, state: LoopState, logger: RunLogger, started: float,
              bar: progress.Task) -> None:
        unit = self.trainer.progress_unit
        every_s = self.settings.checkpoint_every_s
        # A train_step may be short: metrics are averaged over the calls between two logs
        # (every `log_every` units, before each evaluation and at the end of the budget), so
        # that the runner's cost per call stays small. Where they are logged depends on the
        # counters alone, never on when a checkpoint or a signal came.
        pending = state.pending
        last_time, last_count = time.perf_counter(), self.trainer.progress()[unit]
        # A resumed run whose evaluation was abandoned by the stop does it first.
        if self._eval_due(state) and not self._periodic_evaluation(logger, state):
            return
        while self._spent() < self.budget and self._stop_signal is None:
            metrics = check_metrics(self.trainer.train_step(), self.spec["plugin"],
                                    "train_step")
            counters = self.trainer.progress()
            self._check_finite(metrics, "train_step", counters[unit])
            for tag, value in metrics.items():
                pending.setdefault(tag, []).append(value)
            eval_due = self._eval_due(state)
            since = time.monotonic() - self._last_checkpoint_time
            due_by_time = every_s > 0 and since >= every_s
            checkpoint_due = counters[unit] >= state.next_checkpoint or due_by_time
            if (counters[unit] >= state.next_log or eval_due
                    or self._spent() >= self.budget):
                now = time.perf_counter()
                logged = {tag: sum(values) / len(values) for tag, values in pending.items()}
                logged["time/SPS"] = (counters[unit] - last_count) / max(now - last_time, 1e-9)
                last_time, last_count = now, counters[unit]
                logger.scalars(counters[unit], logged, extra=_other_counters(counters, unit))
                pending.clear()
                state.next_log = _next_multiple(counters[unit], self.settings.log_every)
            bar.update(min(self._spent(), self.budget), info=_brief(metrics, state))
            if eval_due and not self._periodic_evaluation(logger, state):
                return  # abandoned by a stop: the checkpoint keeps it due
            if checkpoint_due:
                if counters[unit] >= state.next_checkpoint:
                    state.next_checkpoint = _next_multiple(counters[unit],
                                                           self.settings.checkpoint_every)
                self._save("last", state, logger, started)
            bar.update(info=_brief(metrics, state))
            if self.on_step is not None:
                self.on_step(self)

    def _eval_due(self, state: LoopState) -> bool:
        """An evaluation is due every `eval_every` units, and once at the end of the budget."""
        count = self.trainer.progress()[self.trainer.progress_unit]
        return count >= state.next_eval or (self._spent() >= self.budget
                                            and state.last_eval != count)

    def _spent(self) -> int:
        return self.trainer.progress()[self.budget_unit]

    def _evaluate(self, episodes: int, seed_offset: int) -> dict[str, float]:
        result = self.trainer.evaluate(episodes, self.settings.seed + seed_offset)
        return check_metrics(result, self.spec["plugin"], "evaluate", prefix="eval/")

    def _periodic_evaluation(self, logger: RunLogger, state: LoopState) -> bool:
        """Evaluate, log, and write best.pt if the score improved; False when a stop
        abandoned it (the global RNG is put back, so that the resumed run's evaluation
        draws what this one would have)."""
        rng = global_rng_state()
        with progress.label("evaluating"):
            result = self._abandonable(lambda: self._evaluate(self.settings.eval_episodes,
                                                              PERIODIC_EVAL_SEED))
        if result is None:
            set_global_rng_state(rng)
            return False
        step = self.trainer.progress()[self.trainer.progress_unit]
        self._check_finite(result, "evaluation", step)
        logger.scalars(step, result)
        logger.images(step, self.trainer.images())
        state.next_eval = _next_multiple(step, self.settings.eval_every)
        state.last_eval = step
        score = result.get(self.trainer.eval_metric)
        if score is not None and math.isfinite(score):
            sign = 1 if self.trainer.eval_higher_is_better else -1
            if state.best is None or sign * score > sign * state.best:
                state.best = score
                self._save("best", state, logger, None)
        return True

    def _check_finite(self, values: dict[str, float], where: str, step: int) -> None:
        """Stop the run when a value is NaN or infinite (see the module's docstring)."""
        if not self.settings.stop_on_nonfinite:
            return
        for tag, value in values.items():
            if not math.isfinite(value):
                raise NonFiniteError(
                    f"{tag} is {value} after the {where} at {self._count_text(step)}: "
                    f"training diverged; {self._finite_advice()}")

    def _count_text(self, count: int) -> str:
        """``step 12,000``, ``epoch 3``: a count of the progress unit, for messages."""
        return f"{self.trainer.progress_unit.removesuffix('s')} {count:,}"

    def _finite_advice(self) -> str:
        kept = ("checkpoints/last.pt holds the last finite state"
                if self.rundir.checkpoint("last").is_file() else "no checkpoint was written")
        return (f"{kept}. Lower the learning rate, or pass --set stop_on_nonfinite=false to "
                "train on")

    def _final_evaluations(self, logger: RunLogger) -> dict[str, dict[str, float]] | None:
        """The final evaluation of last.pt, and of best.pt on the same fresh episodes (from
        the same global RNG state); None when a signal abandoned them. last.pt's is logged
        under ``final/``: the ``eval/`` curve stays on the periodic evaluations' episodes."""
        episodes = self.settings.final_eval_episodes
        rng = global_rng_state()
        with progress.label("final eval"):
            last = self._abandonable(lambda: self._evaluate(episodes, FINAL_EVAL_SEED))
        if last is None:
            return None
        finals = {"last": last}
        step = self.trainer.progress()[self.trainer.progress_unit]
        logger.scalars(step, {FINAL_PREFIX + tag.removeprefix("eval/"): value
                              for tag, value in last.items()})
        best_path = self.rundir.checkpoint("best")
        if best_path.is_file():
            last_state = load_checkpoint(self.rundir.checkpoint("last"))["trainer"]
            self.trainer.load_policy_state_dict(load_checkpoint(best_path)["trainer"])
            set_global_rng_state(rng)
            with progress.label("final eval, best.pt"):
                best = self._abandonable(lambda: self._evaluate(episodes, FINAL_EVAL_SEED))
            # What the summary and panels describe: the last policy.
            self.trainer.load_policy_state_dict(last_state)
            if best is None:
                return None
            finals["best"] = best
        return finals

    def _abandonable(self, evaluate: Callable[[], dict[str, float]]) -> dict[str, float] | None:
        """`evaluate()`, or None if SIGINT/SIGTERM arrives before or during it: a long final
        evaluation is abandoned rather than waited for."""
        self._abandon_on_signal = True
        try:
            if self._stop_signal is not None:
                return None
            return evaluate()
        except _StopNow:
            return None
        finally:
            self._abandon_on_signal = False

    def _save(self, which: str, state: LoopState, logger: RunLogger, started: float | None) -> None:
        if started is not None:
            state.elapsed = time.perf_counter() - started
        logger.flush()
        state.metric_lines = logger.metric_lines
        payload: dict[str, Any] = {"spec": self.spec, "loop": asdict(state),
                                   "rng": global_rng_state()}
        if which == "last":
            payload["trainer"] = self.trainer.state_dict()
        else:  # best.pt: what acting needs, not the optimizer and buffers
            payload["trainer"] = self.trainer.policy_state_dict()
        if self.settings.stop_on_nonfinite:
            where = nonfinite_entry(payload["trainer"])
            if where is not None:
                count = self.trainer.progress()[self.trainer.progress_unit]
                raise NonFiniteError(
                    f"the model's state holds NaN or infinite values ({where}) at "
                    f"{self._count_text(count)}: training diverged, and "
                    f"checkpoints/{which}.pt was not overwritten; {self._finite_advice()}")
        if which == "last":
            payload["extra"] = self._save_extra()
        path = save_checkpoint(self.rundir.checkpoint(which), payload)
        if which == "last":
            self._drop_extras(keep=payload["extra"])
            self._last_checkpoint_time = time.monotonic()
        if not self._checkpoint_verified:
            # A state_dict that saves but cannot be loaded would lose the whole run: read the
            # first checkpoint back while the run can still stop with a clear error.
            load_checkpoint(path, require=CHECKPOINT_KEYS)
            self._checkpoint_verified = True

    def _save_extra(self) -> str | None:
        """Let the trainer write its big state into a fresh folder next to last.pt; the
        folder's name, or None when it wrote nothing."""
        folder = self.rundir.checkpoint("last").parent / f"{EXTRA_PREFIX}{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        self.trainer.save_extra(folder)
        if any(folder.iterdir()):
            return folder.name
        folder.rmdir()
        return None

    def _drop_extras(self, keep: str | None) -> None:
        """Delete the folders of earlier last.pt files, now that a new one is written."""
        for folder in self.rundir.checkpoint("last").parent.glob(f"{EXTRA_PREFIX}*"):
            if folder.name != keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _load_extra(self, name: str | None) -> None:
        if name is None:
            return
        # A checkpoint is data: the folder it names must be one of the run's own, never a
        # path elsewhere (``../../``).
        if not isinstance(name, str) or not re.fullmatch(f"{EXTRA_PREFIX}[0-9a-f]{{12}}", name):
            raise CheckpointError(f"checkpoints/last.pt names its side folder {name!r}, which "
                                  "is not a folder gymkit writes; the checkpoint was edited")
        folder = self.rundir.checkpoint("last").parent / name
        if not folder.is_dir():
            raise CheckpointError(f"checkpoints/last.pt refers to checkpoints/{name}, which is "
                                  "missing; the run cannot resume without it")
        self.trainer.load_extra(folder)

    def _stopped(self, state: LoopState, started: float) -> RunResult:
        summary = self._write_summary("interrupted", state, started)
        return RunResult("interrupted", summary, self.rundir, signal=self._stop_signal)

    def _fail(self, state: LoopState, started: float, error: str) -> None:
        with suppress(OSError):  # the disk may be full; the error is raised all the same
            self._write_summary("failed", state, started, error=error)

    def _record_traceback(self, exc: BaseException) -> str:
        """Write the traceback into the run directory; the one-line error points there."""
        path = self.rundir.path / TRACEBACK_FILE
        with suppress(OSError):
            path.write_text("".join(traceback.format_exception(exc)))
            with suppress(AttributeError, TypeError):
                exc.gymkit_traceback = str(path)  # type: ignore[attr-defined]
        return f"{type(exc).__name__}: {exc}"

    def _write_summary(self, status: str, state: LoopState, started: float,
                       finals: dict[str, dict[str, float]] | None = None,
                       error: str | None = None) -> dict[str, Any]:
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
            "threads": self.settings.threads,
            "best": {self.trainer.eval_metric: state.best},
            "started_at": previous.get("started_at", _now()),
            "updated_at": _now(),
            "run_dir": str(self.rundir),
        }
        if finals is not None:
            summary["final_eval"] = finals["last"]
            if "best" in finals:
                summary["final_eval_best"] = finals["best"]
                summary["better_checkpoint"] = self._better(finals["last"], finals["best"])
            summary.update(self.trainer.summary())
        if error is not None:
            summary["error"] = error
        if "device_note" in self.spec:
            summary["device_note"] = self.spec["device_note"]
        resumed = self._resumed_at or previous.get("resumed_at")
        if resumed:
            summary["resumed_at"] = resumed
            summary["exact_resume"] = self.trainer.exact_resume
        self.rundir.write_summary(summary)
        return summary

    def _better(self, last: dict[str, float], best: dict[str, float]) -> str:
        """Which checkpoint scored better on the final evaluation's fresh episodes."""
        metric = self.trainer.eval_metric
        a, b = last.get(metric), best.get(metric)
        if a is None or b is None or a == b:
            return "equal"
        sign = 1 if self.trainer.eval_higher_is_better else -1
        return "last" if sign * a > sign * b else "best"

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            first = self._stop_signal is None
            self.request_stop(signum)
            # A second Ctrl-C stops at once, without waiting for the step to finish.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if first:
                progress.announce(self._stopping_message(), self.console)
            if self._abandon_on_signal:
                raise _StopNow

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _stopping_message(self) -> str:
        where = ("the current batch" if self.trainer.kind == "generative"
                 else "the current step")
        return (f"stopping after {where}… a checkpoint is written, then `gymkit resume` "
                "continues the run (Ctrl-C again to stop at once)")


def nonfinite_entry(state: Any, where: str = "") -> str | None:
    """The key path of the first floating tensor in `state` holding NaN or inf, or None."""
    if isinstance(state, dict):
        for key, value in state.items():
            found = nonfinite_entry(value, f"{where}[{key!r}]")
            if found is not None:
                return found
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            found = nonfinite_entry(value, f"{where}[{index}]")
            if found is not None:
                return found
    elif isinstance(state, float):
        return None  # plain numbers (a best score of inf) are counters, not the model
    else:
        torch = sys.modules.get("torch")
        if (torch is not None and isinstance(state, torch.Tensor) and state.is_floating_point()
                and not bool(torch.isfinite(state).all())):
            return f"state{where}"
    return None


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
