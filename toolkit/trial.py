"""One trial of a sweep: what it is, and how a worker process (or this one, or a Ray
worker) runs it: skip it when its run completed, resume it from last.pt when interrupted,
start it otherwise. `toolkit.sweep` plans the trials and `toolkit.sweep_ray` hands them to
Ray; both build on this module, which imports neither."""

from __future__ import annotations

import io
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit.errors import GymkitError
from toolkit.rundir import RunDir


def config_name(config: dict[str, str]) -> str:
    """``alpha=0.1,gamma=0.9``: a configuration's name and its folder under trials/."""
    if not config:
        return "default"
    return ",".join(f"{k}={safe_name(v)}" for k, v in config.items())


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._+-=" else "_" for c in text) or "_"


@dataclass
class Trial:
    config: dict[str, str]
    seed: int
    #: The slot, relative to the sweep directory, that holds the trial's run directory.
    slot: str
    status: str = "pending"
    error: str | None = None
    run_dir: str | None = None
    #: Whether this invocation trained it (False: it had completed before, or was not reached).
    ran: bool = False
    final_eval: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"config": self.config, "config_name": config_name(self.config),
                "seed": self.seed, "slot": self.slot, "status": self.status,
                "error": self.error, "run_dir": self.run_dir, "final_eval": self.final_eval}


#: Set in a worker process (`init_worker`) or by the Ray backend: a stop requested by the
#: sweep's driver.
_stop_event: Any = None


def init_worker(stop_event: Any) -> None:
    """Ctrl-C reaches the whole process group: a worker leaves it to the runner, whose
    handler stops the run after its step and checkpoints it; between runs it is ignored,
    and the sweep's stop event tells a run that had not started its loop yet."""
    global _stop_event
    _stop_event = stop_event
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_check(runner: Any) -> None:
    now = time.monotonic()
    if now - getattr(runner, "_sweep_checked", 0.0) >= 0.1:
        runner._sweep_checked = now
        if _stop_event is not None and _stop_event.is_set():
            runner.request_stop()


def latest_run(slot: Path) -> Path | None:
    """The newest run directory in a trial's slot (names start with the date and time)."""
    if not slot.is_dir():
        return None
    runs = sorted(p for p in slot.iterdir() if (p / "config.json").is_file())
    return runs[-1] if runs else None


def run_trial(task: dict[str, Any]) -> dict[str, Any]:
    """Skip, resume or start one trial; never raises for the trial's own failure."""
    from toolkit import launch

    slot = Path(task["slot"])
    console = Console(file=io.StringIO())
    run_dir: Path | None = None
    try:
        latest = latest_run(slot)
        if latest is not None:
            status = RunDir(latest).read_summary().get("status")
            if status == "completed":
                return _outcome(latest, ran=False)
        if latest is not None and status != "failed" and RunDir(latest).checkpoint().is_file():
            run_dir = latest
            # The sweep's own command names the env: its entries are the user's choice.
            runner, checkpoint = launch.resume(latest, console=console, quiet=True,
                                               on_step=stop_check,
                                               vouched=task.get("vouched", ()))
        else:
            checkpoint = None
            prepared = launch.prepare(task["kind"], task["target"], task["plugin"],
                                      config_file=task["config_file"],
                                      assignments=task["assignments"], flags=task["flags"],
                                      hyperparams=task["hyperparams"],
                                      data_dir=task["data_dir"])
            if _stop_event is not None and _stop_event.is_set():
                prepared.trainer.close()
                return {"status": "pending", "error": None, "run_dir": None, "ran": False}
            runner = launch.start(prepared, slot, console=console, quiet=True,
                                  on_step=stop_check)
            run_dir = runner.rundir.path
        try:
            result = runner.run(checkpoint)
        finally:
            runner.trainer.close()
        return _outcome(result.rundir.path, ran=True)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, last.pt still resumes it
        return {"status": "interrupted", "error": None, "ran": True,
                "run_dir": str(run_dir) if run_dir else None}
    except Exception as exc:  # a trial's failure is reported, not raised
        message = str(exc) if isinstance(exc, GymkitError) else f"{type(exc).__name__}: {exc}"
        return {"status": "failed", "error": " ".join(message.split()) or type(exc).__name__,
                "run_dir": str(run_dir) if run_dir else None, "ran": run_dir is not None}


def _outcome(path: Path, *, ran: bool) -> dict[str, Any]:
    summary = RunDir(path).read_summary()
    return {"status": summary.get("status", "failed"), "error": summary.get("error"),
            "run_dir": str(path), "ran": ran, "final_eval": summary.get("final_eval", {})}


# -- the sweep ---------------------------------------------------------------------------
