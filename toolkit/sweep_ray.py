"""The ``ray`` backend of `gymkit sweep`: each trial a Ray Tune trial running `run_trial`.

Every trial is the same `toolkit.trial.run_trial` as on the local backend (skip, resume or
start the run in its slot), so a trial's run directory, checkpoints and TensorBoard events
are those of a single run. Ray only places the trials: one CPU each (and one GPU with
``--device cuda``), at most ``--workers`` at once. The trials write to their slots, so on a
cluster the runs directory must be a path that every node and this machine see (a shared
mount). Tune's own experiment files go to ``<sweep dir>/ray/<date>-<time>/``.

Ray is imported here only, and only when a sweep runs on it: ``import toolkit.sweep`` does
not import it.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from rich.console import Console

from toolkit import trial as trials
from toolkit.errors import GymkitError
from toolkit.rundir import RunDir
from toolkit.trial import Trial, latest_run, run_trial

INSTALL = "pip install 'gymkit[ray]'"
#: How long to wait for a TCP connection to --address before calling it unreachable.
PROBE_TIMEOUT_S = 5.0
#: Ray's default ports: the GCS of `ray start --head`, and the Ray Client server.
GCS_PORT, CLIENT_PORT = 6379, 10001


def import_ray() -> tuple[ModuleType, ModuleType]:
    """``ray`` and ``ray.tune``, or a GymkitError that says how to install them."""
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise GymkitError(f"--backend ray needs Ray Tune, which is not installed ({exc}); "
                          f"install it with `{INSTALL}`") from None
    return ray, tune


def check(address: str | None) -> None:
    """Fail fast, before anything is written: Ray Tune installed, `address` reachable."""
    import_ray()
    if address is not None and not address.strip():
        raise GymkitError("--address is empty; pass auto, HOST:PORT or ray://HOST:PORT")
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        probe(target)


def probe(address: str) -> None:
    """Open a TCP connection to a HOST:PORT or ray://HOST[:PORT] address: ray.init itself
    retries an unreachable one for minutes. `auto`, `local` and other schemes are left to
    Ray."""
    scheme, sep, rest = address.strip().rpartition("://")
    if address.strip() in ("auto", "local") or (sep and scheme != "ray"):
        return
    rest = rest.split("/", 1)[0]
    host, colon, port_text = rest.rpartition(":")
    if not colon or host.endswith(":"):  # no port, or a bare IPv6 address
        host, port_text = rest, str(CLIENT_PORT if sep else GCS_PORT)
    host = host.strip("[]")
    example = "--address auto on a cluster node, or --address ray://HEAD:10001"
    try:
        port = int(port_text)
    except ValueError:
        raise GymkitError(f"--address {address}: '{port_text}' is not a port; pass "
                          f"{example}") from None
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise GymkitError(f"cannot reach the Ray cluster at {address} ({reason}); start it "
                          f"with `ray start --head` or pass {example}") from None


@contextmanager
def connected(address: str | None) -> Iterator[ModuleType]:
    """Ray, connected: to the caller's Ray when this process already is, else to `address`,
    else to a local instance started here (and shut down after)."""
    ray, _tune = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "configure_logging": True, "logging_level": logging.ERROR}
    if address:
        options["address"] = address
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise GymkitError(f"cannot connect to {where}: {message}; check --address (auto, "
                          "HOST:PORT or ray://HOST:10001)") from None
    # gymkit reports each trial's outcome itself, so Tune stays quiet too, except to say
    # that no node has the resources a trial asks for (a GPU, say) while it waits.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.execution.insufficient_resources_manager").setLevel(
        logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def run_trials(todo: list[Trial], tasks: dict[int, dict[str, Any]], path: Path, *,
               address: str | None, workers: int | None,
               finished: Callable[[Trial, dict[str, Any]], None], out: Console) -> bool:
    """The trials as Ray Tune trials; True when Ctrl-C stopped them."""
    _ray, tune = import_ray()
    by_slot: dict[str, Trial] = {}
    ray_tasks: list[dict[str, Any]] = []
    for trial in todo:
        if _completed(Path(tasks[id(trial)]["slot"])):  # a rerun needs no Ray for these
            finished(trial, run_trial(tasks[id(trial)]))
        else:
            ray_tasks.append(_portable(tasks[id(trial)]))
            by_slot[ray_tasks[-1]["slot"]] = trial
    if not ray_tasks:
        return False
    storage = (path / "ray").resolve()
    name = stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in itertools.count(2):  # a rerun within the same second
        if not (storage / name).exists():
            break
        name = f"{stamp}-{n}"
    stop_file = storage / f"{name}.stop"
    storage.mkdir(parents=True, exist_ok=True)
    reported: set[str] = set()

    def report(slot: str, outcome: dict[str, Any]) -> None:
        if slot in by_slot and slot not in reported:
            reported.add(slot)
            finished(by_slot[slot], outcome)

    with connected(address) as ray:
        client = bool(ray.util.client.ray.is_connected())
        # Under Ray Client, Tune runs on the head node: callbacks there cannot report
        # here, so the outcomes come from the results once all trials are done.
        monitor = None if client else _monitor(tune, report, stop_file)
        resources = {"cpu": 1, "gpu": 1 if _wants_gpu(ray_tasks) else 0}
        # Ray 2.10 to 2.40 have them in ray.train only; later ones in ray.tune.
        configs = tune if hasattr(tune, "RunConfig") else importlib.import_module("ray.train")
        tuner = tune.Tuner(
            tune.with_resources(_trainable, resources),
            param_space={"task": tune.grid_search(ray_tasks), "stop_file": str(stop_file),
                         "cwd": os.getcwd()},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=False,
                                        trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=configs.RunConfig(
                name=name, storage_path=str(storage), verbose=0,
                failure_config=configs.FailureConfig(max_failures=0),
                stop=monitor.stopper() if monitor else None,
                callbacks=[*([monitor] if monitor else []), _no_tensorboard(tune)]))
        # Tune's newer console output prints its experiment's header even with verbose=0,
        # and Tune warns when short trials end in quick succession.
        quiet = _environ(RAY_AIR_NEW_OUTPUT="0",
                         TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0")
        with _sigint_stops(stop_file, out) as stopped, quiet:
            results = tuner.fit()
    for result in results:
        slot = result.config["task"]["slot"] if result.config else None
        if slot is None:
            continue
        if result.metrics and "outcome" in result.metrics:
            report(slot, json.loads(result.metrics["outcome"]))
        elif result.error is not None:
            report(slot, _error_outcome(result.error))
    stop_file.unlink(missing_ok=True)
    for slot in [s for s in by_slot if s not in reported]:  # not started: Ctrl-C came first
        report(slot, {"status": "pending", "error": None, "run_dir": None, "ran": False})
    return stopped.is_set() or any(t.status in ("interrupted", "pending") for t in todo)


def _completed(slot: Path) -> bool:
    latest = latest_run(slot)
    return latest is not None and RunDir(latest).read_summary().get("status") == "completed"


def _trainable(config: dict[str, Any]) -> dict[str, Any]:
    """One Tune trial, in a Ray worker: the sweep's `run_trial`, and its outcome as JSON
    (Tune would flatten a nested dict into its own keys)."""
    cwd = config.get("cwd")
    if cwd and os.path.isdir(cwd):  # Tune moved it to its trial folder; relative paths
        os.chdir(cwd)               # (a --config, GYMKIT_DATA) mean what they did here
    trials._stop_event = _StopFile(Path(config["stop_file"]))
    return {"outcome": json.dumps(run_trial(config["task"]))}


class _StopFile:
    """The sweep's stop event across machines: Ctrl-C in the driver creates the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def is_set(self) -> bool:
        return self.path.exists()


@contextmanager
def _sigint_stops(stop_file: Path, out: Console) -> Iterator[threading.Event]:
    """The first Ctrl-C asks the running trials to checkpoint and stop, as the local
    backend does; a second one leaves at once (last.pt still resumes those trials)."""
    stopped = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        stop_file.touch()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        out.print("[yellow]stopping[/]: the running trials checkpoint and stop; "
                  "Ctrl-C again to leave at once", soft_wrap=True)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        # Tune's own handler would end the trials without their final checkpoint.
        with _environ(TUNE_DISABLE_SIGINT_HANDLER="1"):
            yield stopped
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Environment variables that Tune reads while it runs, set for that time only."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _monitor(tune: ModuleType, report: Callable[[str, dict[str, Any]], None],
             stop_file: Path) -> Any:
    """A Tune callback that reports each trial as it ends, and whose stopper ends the
    experiment after Ctrl-C once the running trials have stopped, so that no new one
    starts."""

    class Monitor(tune.Callback):  # type: ignore[name-defined]
        def __init__(self, report: Callable[[str, dict[str, Any]], None]) -> None:
            self.report: Callable[[str, dict[str, Any]], None] | None = report
            self.started: set[str] = set()
            self.ended: set[str] = set()

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its run config into the experiment folder; `report` holds the
            # console. An unpickled monitor reports nothing.
            return {**self.__dict__, "report": None}

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            self.started.add(trial.trial_id)

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:
            if "outcome" in result and self.report is not None:
                self.ended.add(trial.trial_id)
                self.report(trial.config["task"]["slot"], json.loads(result["outcome"]))

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:
            if self.report is not None:
                self.ended.add(trial.trial_id)
                self.report(trial.config["task"]["slot"], _error_outcome(_trial_error(trial)))

        def stopper(self) -> Any:
            return Stopper(self)

    class Stopper(tune.Stopper):  # type: ignore[name-defined]
        def __init__(self, monitor: Monitor) -> None:
            self.monitor = monitor

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return stop_file.exists() and self.monitor.started <= self.monitor.ended

    return Monitor(report)


def _no_tensorboard(tune: ModuleType) -> Any:
    """Tune's TensorBoard logger, switched off (Tune adds it unless one is given): its
    events would show up as extra runs in `gymkit tensorboard SWEEP_DIR`."""
    from ray.tune.logger import TBXLoggerCallback

    class NoTensorBoard(TBXLoggerCallback):
        def log_trial_start(self, trial: Any) -> None:
            pass

        def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
            pass

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            pass

    return NoTensorBoard()


def _trial_error(trial: Any) -> BaseException | None:
    """The error Tune recorded for a failed trial, from the driver's copy of its file
    (`Trial.get_error` reads the storage copy, not yet written when callbacks run)."""
    from ray import cloudpickle

    path = getattr(trial, "pickled_error_file", None)
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            error = cloudpickle.load(f)
    except Exception:  # an error that does not unpickle here: say so without it
        return None
    return error if isinstance(error, BaseException) else None


def _error_outcome(error: BaseException | None) -> dict[str, Any]:
    """A trial whose Ray worker failed (killed, out of memory, a node lost, or gymkit
    missing there): the error's first line, that of its cause for an error raised in
    the worker."""
    cause = getattr(error, "cause", None)
    error = cause if isinstance(cause, BaseException) else error
    lines = str(error).strip().splitlines() if error is not None else []
    detail = f"{type(error).__name__}: {lines[0] if lines else ''}" if error else "unknown"
    return {"status": "failed", "error": f"the Ray trial failed: {detail}", "ran": True}


def _trial_name(trial: Any) -> str:
    """``alpha=0.1,seed-3``: the trial's slot, as Tune's trial name and folder."""
    slot = Path(trial.config["task"]["slot"])
    return f"{slot.parent.name},{slot.name}"


def _portable(task: dict[str, Any]) -> dict[str, Any]:
    """The task with absolute paths: Tune runs a trial in a folder of its own."""
    absolute = {k: str(Path(task[k]).resolve()) for k in ("slot", "config_file", "data_dir")
                if task.get(k)}
    return {**task, **absolute}


def _wants_gpu(tasks: list[dict[str, Any]]) -> bool:
    """``--device cuda``: each trial asks Ray for a GPU, so Ray puts it on a node with a
    free one (``auto`` asks for none: Ray does not count what it uses)."""
    return any(str(t["flags"].get("device") or "").startswith("cuda") for t in tasks)
