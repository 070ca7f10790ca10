"""Sweeps: every combination of grid values and seeds, each an ordinary run directory.

``gymkit sweep agent frozenlake --seeds 0-4 --grid alpha=0.1,0.2`` makes one sweep
directory, ``<runs-dir>/sweeps/<plugin>-<target>-<hash>/``, named by a hash of the
sweep's definition, so that rerunning the same command finds it again::

    sweep.json                      definition, every trial's status and error, aggregates
    sweep.csv                       the aggregates, one row per configuration and metric
    trials/alpha=0.1/seed-3/<run>/  the trial's run directory, as `gymkit run` writes it

A trial's slot (``trials/<config>/seed-<n>/``) holds its run directory, created by
`launch.start` like any other, so run directories are never overwritten. Rerunning a
sweep skips the trials whose run completed, resumes those interrupted from
checkpoints/last.pt (as `gymkit resume` does) and starts the rest in a new run
directory in their slot. The local backend runs trials in a pool of processes, the ray
backend as Ray Tune trials (toolkit/sweep_ray.py).
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toolkit import progress
from toolkit.config import MAX_SEED, parse_assignments
from toolkit.errors import ConfigError, GymkitError
from toolkit.rundir import RunDir, read_json, write_json
from toolkit.trial import Trial, config_name, init_worker, run_trial, safe_name
from toolkit.trust import vouched_by

SWEEP_JSON = "sweep.json"
#: Seconds between two writes of sweep.json while trials finish.
SAVE_EVERY_S = 1.0
SWEEP_CSV = "sweep.csv"
TRIALS = "trials"
BACKENDS = ("local", "ray")


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` (both ends included), ``"0,3,5"``, ``"7"`` or a mix, ``"0-2,5"``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        try:
            if dash:
                first, last = int(low), int(high)
                if first > last:
                    raise ConfigError(f"--seeds: the range {part} runs backwards; write "
                                      f"{last}-{first}")
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds expects seeds and ranges such as 0-9 or 0,3,5, got "
                              f"'{text}'") from None
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"--seeds: seed {seed} is outside 0..{MAX_SEED}")
    duplicates = sorted(s for s, n in collections.Counter(seeds).items() if n > 1)
    if duplicates:
        raise ConfigError(f"--seeds names seed {duplicates[0]} twice")
    return seeds


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["lr=1e-3,3e-4"]`` -> ``{"lr": ["1e-3", "3e-4"]}``: the values as typed, each
    later parsed like a ``--set`` value (see `trial_assignments`)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        values = [v.strip() for v in raw.split(",")]
        if not sep or not key or not all(values):
            raise ConfigError(f"--grid expects key=value1,value2,..., got '{item}' "
                              "(e.g. --grid alpha=0.1,0.2)")
        if key == "seed":
            raise ConfigError("--grid seed=...: give the seeds with --seeds")
        if key in grid:
            raise ConfigError(f"--grid names {key} twice; list all its values in one --grid")
        if len(set(values)) != len(values):
            raise ConfigError(f"--grid {key} lists a value twice")
        parse_assignments(f"{key}={v}" for v in values)  # the same errors as --set
        grid[key] = values
    return grid


def configurations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """The cartesian product of the grid's values, in the order given; ``[{}]`` for none."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in
            itertools.product(*(grid[k] for k in keys))]


def trial_assignments(config: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in config.items()]


@dataclass
class SweepDefinition:
    """Everything that decides the trials: what `gymkit sweep` was given."""

    kind: str
    target: str | None
    plugin: str | None
    seeds: list[int]
    grid: dict[str, list[str]]
    assignments: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)
    hyperparams: str | None = None
    config_file: str | None = None
    data_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        config_file = Path(self.config_file) if self.config_file else None
        config_text = config_file.read_text() if config_file and config_file.is_file() else None
        return {"kind": self.kind, "target": self.target, "plugin": self.plugin,
                "seeds": self.seeds, "grid": self.grid, "set": self.assignments,
                "flags": {k: v for k, v in self.flags.items() if v is not None},
                "preset": self.hyperparams, "config_file": self.config_file,
                "config_file_text": config_text, "data_dir": self.data_dir}

    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class SweepResult:
    path: Path
    trials: list[Trial]
    aggregates: list[dict[str, Any]]
    interrupted: bool = False

    @property
    def failed(self) -> list[Trial]:
        return [t for t in self.trials if t.status == "failed"]

    @property
    def ran(self) -> int:
        return sum(t.ran for t in self.trials)


def make_trials(grid: dict[str, list[str]], seeds: list[int]) -> list[Trial]:
    return [Trial(config, seed, f"{TRIALS}/{config_name(config)}/seed-{seed}")
            for config in configurations(grid) for seed in seeds]


def sweep_dir(runs_dir: Path, plugin: str, target: str, definition: SweepDefinition) -> Path:
    name = f"{safe_name(plugin)}-{safe_name(target)}-{definition.digest()}"
    return Path(runs_dir) / "sweeps" / name


def run_sweep(definition: SweepDefinition, runs_dir: str | Path = "runs", *,
              backend: str = "local", workers: int | None = None,
              address: str | None = None, console: Console | None = None,
              on_trial: Callable[[Trial], None] | None = None) -> SweepResult:
    """Run (or finish) the sweep; `workers` 1 runs the trials in this process. The ray
    backend runs them on the Ray cluster at `address` (toolkit/sweep_ray.py)."""
    from toolkit import launch

    if backend not in BACKENDS:
        raise GymkitError(f"--backend must be local or ray, got '{backend}'")
    if address is not None and backend != "ray":
        raise GymkitError("--address is the Ray cluster's; add --backend ray or drop --address")
    if backend == "ray":
        from toolkit import sweep_ray

        sweep_ray.check(address)
    if workers is not None and workers < 1:
        raise GymkitError(f"--workers must be positive, got {workers}")
    out = console or Console(file=io.StringIO())
    trials = make_trials(definition.grid, definition.seeds)
    # Validate every configuration before anything is written or launched: a bad value in
    # the grid is bad input, found now rather than trial by trial.
    vouched: set[str] = set()
    names: tuple[str, str] | None = None
    configs = configurations(definition.grid)
    for index, config in enumerate(configs):
        if console is not None and len(configs) > 1:
            console.print(f"checking configuration {index + 1}/{len(configs)}: "
                          f"{escape(config_name(config))}", highlight=False)
        try:
            prepared = launch.prepare(
                definition.kind, definition.target, definition.plugin,
                config_file=definition.config_file,
                assignments=[*definition.assignments, *trial_assignments(config)],
                flags={**definition.flags, "seed": definition.seeds[0]},
                hyperparams=definition.hyperparams, data_dir=definition.data_dir)
        except GymkitError as exc:
            if not config:
                raise
            raise type(exc)(f"--grid {config_name(config)}: {exc}; no trial was started (fix "
                            "or drop that value)") from exc
        prepared.trainer.close()
        names = names or (prepared.spec["plugin"], prepared.spec["target"])
        if "env" in prepared.spec:
            vouched |= vouched_by(prepared.spec["env"])
    assert names is not None
    path = sweep_dir(Path(runs_dir), *names, definition)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GymkitError(f"cannot create the sweep directory {path}: {exc.strerror}; "
                          "pass another --runs-dir") from exc
    with RunDir(path).lock(), progress.reporting(out, quiet=console is None):
        return _run_locked(definition, path, trials, workers, out, on_trial, backend,
                           address, sorted(vouched))


def _run_locked(definition: SweepDefinition, path: Path, trials: list[Trial],
                workers: int | None, out: Console,
                on_trial: Callable[[Trial], None] | None, backend: str = "local",
                address: str | None = None, vouched: list[str] | None = None) -> SweepResult:
    result = SweepResult(path, trials, [])
    todo = list(trials)
    _save(definition, result)
    with progress.task("trials", len(trials), "trials") as bar:
        total, done = len(trials), 0
        saved = time.monotonic()

        def finished(trial: Trial, outcome: dict[str, Any]) -> None:
            nonlocal done, saved
            done += 1
            trial.status, trial.error = outcome["status"], outcome.get("error")
            trial.run_dir, trial.ran = outcome.get("run_dir"), outcome.get("ran", False)
            trial.final_eval = outcome.get("final_eval", {})
            # sweep.json at most once a second (and at the end): rewriting it after each of
            # thousands of short trials would cost more than the trials. A rerun reads each
            # trial's status from its run directory, not from here.
            if time.monotonic() - saved >= SAVE_EVERY_S:
                _save(definition, result)
                saved = time.monotonic()
            _print_trial(out, trial, done, total)
            bar.advance()
            if on_trial is not None:
                on_trial(trial)

        tasks = {id(t): {**_task(definition, path, t), "vouched": vouched or []} for t in todo}
        count = min(workers or multiprocessing.cpu_count(), len(todo)) if todo else 0
        if backend == "ray" and todo:
            from toolkit import sweep_ray

            result.interrupted = sweep_ray.run_trials(todo, tasks, path, address=address,
                                                      workers=workers, finished=finished, out=out)
        elif count <= 1:
            for trial in todo:
                outcome = run_trial(tasks[id(trial)])
                finished(trial, outcome)
                if outcome["status"] in ("interrupted", "pending"):
                    result.interrupted = True
                    break
        else:
            result.interrupted = _run_pool(todo, tasks, count, finished, out)
    result.aggregates = aggregate_trials(trials)
    _save(definition, result)
    write_csv(path / SWEEP_CSV, result.aggregates)
    return result


def _run_pool(todo: list[Trial], tasks: dict[int, dict[str, Any]], count: int,
              finished: Callable[[Trial, dict[str, Any]], None], out: Console) -> bool:
    """The trials in `count` worker processes; True when Ctrl-C stopped them."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    stop = context.Event()
    interrupted = False
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=init_worker,
                               initargs=(stop,))
    try:
        pending: dict[Future[dict[str, Any]], Trial] = {
            pool.submit(run_trial, tasks[id(t)]): t for t in todo}
        while pending:
            try:
                ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                if interrupted:
                    raise  # a second Ctrl-C: leave at once
                interrupted = True
                stop.set()
                out.print("[yellow]stopping[/]: the running trials checkpoint and stop; "
                          "Ctrl-C again to leave at once", soft_wrap=True)
                for future in pending:
                    future.cancel()
                continue
            for future in ready:
                trial = pending.pop(future)
                if future.cancelled():
                    continue
                try:
                    outcome = future.result()
                except Exception as exc:  # the worker died (killed, out of memory)
                    outcome = {"status": "failed", "error": f"the worker process failed: "
                               f"{type(exc).__name__}: {exc}", "ran": True}
                finished(trial, outcome)
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
    return interrupted or any(t.status in ("interrupted", "pending") for t in todo)


def _task(definition: SweepDefinition, path: Path, trial: Trial) -> dict[str, Any]:
    return {"kind": definition.kind, "target": definition.target, "plugin": definition.plugin,
            "config_file": definition.config_file, "hyperparams": definition.hyperparams,
            "data_dir": definition.data_dir,
            "assignments": [*definition.assignments, *trial_assignments(trial.config)],
            "flags": {**definition.flags, "seed": trial.seed},
            "slot": str(path / trial.slot)}


def _print_trial(out: Console, trial: Trial, done: int, total: int) -> None:
    what = {"completed": "[green]completed[/]" if trial.ran else "already completed",
            "failed": f"[red]failed[/]: {escape(trial.error or '')}",
            "interrupted": "[yellow]interrupted[/]; rerun the sweep to resume it",
            "pending": "not started"}.get(trial.status, escape(trial.status))
    out.print(f"[{done}/{total}] {escape(config_name(trial.config))} seed {trial.seed}: {what}",
              soft_wrap=True)


def _save(definition: SweepDefinition, result: SweepResult) -> None:
    write_json(result.path / SWEEP_JSON, {
        "definition": definition.to_dict(), "hash": definition.digest(),
        "trials": [t.record() for t in result.trials], "aggregates": result.aggregates})


def read_sweep(path: str | Path) -> dict[str, Any]:
    return read_json(Path(path) / SWEEP_JSON)


# -- aggregates --------------------------------------------------------------------------


#: The fewest seeds whose mean gets an interval: with two, the t-interval spans 12.7 standard
#: errors and says nothing (a success rate of 0.055 +- 0.70).
MIN_SEEDS_FOR_INTERVAL = 3


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """Mean with a 95% t-interval over seeds (from `MIN_SEEDS_FOR_INTERVAL` seeds on; None
    below), and the interquartile mean (rliable's IQM: the mean of the middle 50%, as
    `scipy.stats.trim_mean(x, 0.25)`)."""
    from scipy.special import stdtrit  # the t quantile; scipy.stats takes 3x as long to import

    n = len(values)
    mean = sum(values) / n
    low = high = None
    if n >= MIN_SEEDS_FOR_INTERVAL:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = float(stdtrit(n - 1, 0.975)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"n": n, "mean": mean, "ci95_low": low, "ci95_high": high,
            "iqm": interquartile_mean(values)}


def interquartile_mean(values: list[float]) -> float:
    """`scipy.stats.trim_mean(values, 0.25)`: int(n / 4) values cut from each end."""
    cut = int(0.25 * len(values))
    middle = sorted(values)[cut:len(values) - cut]
    return sum(middle) / len(middle)


def _aggregated(metric: str) -> bool:
    """A run's final eval/* metrics, less its own per-run interval ends and episode count."""
    return metric.startswith("eval/") and "_ci" not in metric and metric != "eval/episodes"


def aggregate_trials(trials: list[Trial]) -> list[dict[str, Any]]:
    """Per configuration and final metric, across the seeds whose trial completed."""
    rows: list[dict[str, Any]] = []
    by_config: dict[str, list[Trial]] = {}
    for trial in trials:
        by_config.setdefault(config_name(trial.config), []).append(trial)
    for name, group in by_config.items():
        completed = [t for t in group if t.status == "completed"]
        metrics = sorted({m for t in completed for m in t.final_eval if _aggregated(m)})
        for metric in metrics:
            values = [float(t.final_eval[metric]) for t in completed if metric in t.final_eval]
            rows.append({"config": group[0].config, "config_name": name, "metric": metric,
                         "seeds": [t.seed for t in completed if metric in t.final_eval],
                         **summarize(values)})
    return rows


CSV_COLUMNS = ("config", "metric", "n", "mean", "ci95_low", "ci95_high", "iqm")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([row["config_name"], *(("" if row[c] is None else row[c])
                                                   for c in CSV_COLUMNS[1:])])


def render(console: Console, result: SweepResult) -> None:
    """A table per configuration: each final metric's mean ± 95% CI and IQM over seeds."""
    by_config: dict[str, list[Trial]] = {}
    for trial in result.trials:
        by_config.setdefault(config_name(trial.config), []).append(trial)
    for name, group in by_config.items():
        completed = sum(t.status == "completed" for t in group)
        table = Table(title=f"{escape(name)}: {completed}/{len(group)} seeds completed")
        table.add_column("metric", style="cyan", no_wrap=True)
        table.add_column("mean ± 95% CI", justify="right")
        table.add_column("IQM", justify="right")
        table.add_column("seeds", justify="right")
        for row in result.aggregates:
            if row["config_name"] != name:
                continue
            ci = (f" ± {row['mean'] - row['ci95_low']:.4g}" if row["ci95_low"] is not None
                  else f" (n too small: {MIN_SEEDS_FOR_INTERVAL}+ seeds for a CI)")
            table.add_row(row["metric"], f"{row['mean']:.4g}{ci}", f"{row['iqm']:.4g}",
                          str(row["n"]))
        for trial in group:
            if trial.status == "failed":
                table.add_row(f"seed {trial.seed}", f"[red]failed[/]: {escape(trial.error or '')}",
                              "", "")
        console.print(table)
