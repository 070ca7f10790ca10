"""`gymkit reproduce RUN_DIR`: rerun a run from its config.json and compare the metrics.

The rerun is an ordinary new run directory (next to the original unless told otherwise),
built from the original's config.json exactly as `gymkit resume` and `gymkit eval` rebuild
a run: same plugin, resolved config, seed and budget. Its metrics.jsonl is then compared
with the original's record by record, values compared exactly (floats bit for bit): on
the CPU a run is reproducible bit for bit, and anything less is a difference
(docs/reproducibility.md says what is and is not reproducible).

Fields that measure wall-clock time are ignored: the logger already leaves ``time/`` tags
out of metrics.jsonl, and a file from elsewhere that has them is read the same way. No
field of metrics.jsonl holds a path.

An original that did not complete (interrupted, failed, or killed while running) is
rerun with its whole recorded budget, not cut short where it stopped: a schedule that
anneals over the budget (epsilon, learning rate, clip range) would otherwise take other
values at every step. Only the lines the original recorded are compared, and the report
says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from toolkit.errors import GymkitError
from toolkit.logger import WALL_CLOCK_PREFIX
from toolkit.rundir import CONFIG, METRICS, RunDir

#: Tag prefixes of metrics.jsonl fields that are not compared: wall-clock measurements.
IGNORED_PREFIXES: tuple[str, ...] = (WALL_CLOCK_PREFIX,)
#: Libraries whose versions config.json records; a different one now is worth a warning.
LIBRARIES = ("torch", "numpy", "gymnasium", "stable-baselines3", "python")
#: Exit codes of `gymkit reproduce`: identical, a difference, the rerun interrupted.
EXIT_IDENTICAL, EXIT_DIFFERENT, EXIT_INTERRUPTED = 0, 1, 130


@dataclass(frozen=True)
class Difference:
    """The first place where two metrics.jsonl files disagree.

    `key` is None when a whole line is in one file only; `original` and `rerun` then hold
    that line's record, or None where it is missing."""

    line: int
    step: int | None
    key: str | None
    original: Any
    rerun: Any

    def describe(self) -> str:
        """One line: where the files first differ and both values."""
        where = f"line {self.line} of {METRICS}" + (f" (step {self.step})"
                                                     if self.step is not None else "")
        if self.key is None:
            which = "original" if self.rerun is None else "rerun"
            return f"{where} is only in the {which}"
        return (f"{where}, key {self.key}: {_show(self.original)} in the original, "
                f"{_show(self.rerun)} in the rerun")


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing two metrics.jsonl files."""

    compared: int
    original_lines: int
    rerun_lines: int
    difference: Difference | None

    @property
    def identical(self) -> bool:
        return self.difference is None


@dataclass(frozen=True)
class Reproduction:
    """What `reproduce` did: both run directories, the original's status, the comparison
    (None when the rerun was interrupted) and the warnings printed."""

    original: Path
    rerun: Path
    original_status: str
    comparison: Comparison | None
    warnings: tuple[str, ...]
    signal: int | None = None
    #: The counts at which the original was resumed, and whether its plugin resumes bit
    #: for bit (summary.json): a resumed run of a plugin that does not differs from there.
    resumed_at: tuple[int, ...] = ()
    exact_resume: bool = True
    plugin: str = ""

    def resume_explains(self) -> bool:
        """Whether the first difference lies after a resume that does not promise bits."""
        difference = self.comparison.difference if self.comparison is not None else None
        if difference is None or self.exact_resume or not self.resumed_at:
            return False
        return difference.step is None or difference.step > min(self.resumed_at)

    @property
    def exit_code(self) -> int:
        if self.comparison is None:
            return 128 + self.signal if self.signal else EXIT_INTERRUPTED
        return EXIT_IDENTICAL if self.comparison.identical else EXIT_DIFFERENT


class _Missing:
    """The value of a key one record has and the other lacks."""

    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()


def _show(value: Any) -> str:
    """A value as it reads back exactly: repr is float's shortest round-trip form."""
    return repr(value)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file, in order; a clear error for a broken line."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GymkitError(f"cannot read {path}: it is not UTF-8 text (byte {exc.start}); the "
                          "file was damaged or edited") from exc
    except OSError as exc:
        raise GymkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GymkitError(f"line {number} of {path} is not JSON ({exc.msg}); the file was "
                              "cut short or edited by hand") from exc
        if not isinstance(record, dict):
            raise GymkitError(f"line {number} of {path} is not a JSON object")
        records.append(record)
    return records


def compared_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a record that must match: all but wall-clock measurements."""
    return {k: v for k, v in record.items() if not k.startswith(IGNORED_PREFIXES)}


def same_value(a: Any, b: Any) -> bool:
    """Exactly the same value: floats bit for bit (NaN equals NaN, -0.0 is not 0.0), and
    an int is not a float."""
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def compare_metrics(original: Sequence[dict[str, Any]], rerun: Sequence[dict[str, Any]], *,
                    prefix: bool = False) -> Comparison:
    """Compare two runs' records in order: same number of lines, same keys, same values.

    With `prefix` only the original's lines are compared, and a rerun with more lines
    still matches: the original stopped before the end of its budget."""
    counts = len(original), len(rerun)
    for index, (ours, theirs) in enumerate(zip(original, rerun, strict=False)):
        a, b = compared_fields(ours), compared_fields(theirs)
        step = ours.get("step", theirs.get("step"))
        for key in [*a, *(k for k in b if k not in a)]:
            left, right = a.get(key, MISSING), b.get(key, MISSING)
            if left is MISSING or right is MISSING or not same_value(left, right):
                return Comparison(index + 1, *counts, Difference(index + 1, step, key, left,
                                                                 right))
    common = min(counts)
    if len(rerun) < len(original):
        extra = original[common]
        return Comparison(common, *counts, Difference(common + 1, extra.get("step"), None,
                                                      extra, None))
    if len(rerun) > len(original) and not prefix:
        extra = rerun[common]
        return Comparison(common, *counts, Difference(common + 1, extra.get("step"), None,
                                                      None, extra))
    return Comparison(common, *counts, None)


def open_original(path: Path) -> RunDir:
    """The run directory at `path`, with a one-line error for each way it is not one."""
    if not path.exists():
        raise GymkitError(f"{path} does not exist; pass a run directory, e.g. one under runs/")
    if not path.is_dir():
        raise GymkitError(f"{path} is a file, not a run directory")
    if not (path / CONFIG).is_file():
        raise GymkitError(f"{path} has no {CONFIG}: it is not a gymkit run directory, or its "
                          f"{CONFIG} was deleted, and without it the run cannot be rerun")
    return RunDir(path)


def version_warnings(spec: dict[str, Any]) -> list[str]:
    """One line for a plugin package whose version differs from the recorded one, and one
    for the libraries (torch, numpy, ...) that differ: the rerun may not match then."""
    lines = []
    package = spec.get("plugin_package") or {}
    name, then = package.get("name"), package.get("version")
    if name and then is not None:
        now = _version_of(name)
        if now != then:
            lines.append(f"{spec.get('plugin', '?')} comes from {name} {now or '(not installed)'}"
                         f" now, but the original ran with {then}; the rerun may differ")
    recorded = spec.get("versions") or {}
    changed = []
    for library in LIBRARIES:
        then = recorded.get(library)
        now = _python_version() if library == "python" else _version_of(library)
        if then is not None and now != then:
            changed.append(f"{library} {then} -> {now or '(not installed)'}")
    if changed:
        lines.append(f"versions differ from the original's: {', '.join(changed)}; the rerun "
                     "may differ")
    return lines


def _version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _python_version() -> str:
    import platform

    return platform.python_version()


def reproduce(run_dir: str | Path, runs_dir: str | Path | None = None, *,
              console: Console | None = None, quiet: bool = False,
              trust: bool = False) -> Reproduction:
    """Rerun `run_dir` from its config.json into a new run directory under `runs_dir`
    (default: the original's parent) and compare the two metrics.jsonl files. `trust`:
    rebuild it even if its config.json names code no installed package declares.

    Prints the warnings on stderr; the caller reports the result (`print_report`)."""
    from toolkit import launch

    original = open_original(Path(run_dir))
    spec = original.read_config()
    status = original.status()
    summary = original.read_summary()
    resumed = summary.get("resumed_at")
    resumes: dict[str, Any] = {
        "resumed_at": tuple(int(x) for x in resumed if isinstance(x, int))
        if isinstance(resumed, list) else (),
        "exact_resume": bool(summary.get("exact_resume", True)),
        "plugin": str(spec.get("plugin", "?"))}
    if not original.metrics_path.is_file():
        raise GymkitError(f"{original} has no {METRICS}: nothing to compare a rerun with")
    records = read_metrics(original.metrics_path)
    if not records:
        raise GymkitError(f"{original}'s {METRICS} is empty: the run stopped before it logged "
                          "anything, so there is nothing to compare a rerun with")
    warnings = version_warnings(spec)
    err = Console(stderr=True, highlight=False)
    for line in warnings:
        err.print(f"[yellow]warning:[/] {escape(line)}", soft_wrap=True)
    _, prepared = launch.rebuild(original.path, trust=trust)
    prepared.spec["reproduces"] = str(original.path)
    root = Path(runs_dir) if runs_dir is not None else original.path.parent
    try:
        runner = launch.start(prepared, root, console=console, quiet=quiet)
        result = runner.run()
    finally:
        prepared.trainer.close()
    rerun = runner.rundir.path
    if result.interrupted:
        return Reproduction(original.path, rerun, status, None, tuple(warnings), result.signal,
                            **resumes)
    comparison = compare_metrics(records, read_metrics(runner.rundir.metrics_path),
                                 prefix=status != "completed")
    return Reproduction(original.path, rerun, status, comparison, tuple(warnings), **resumes)


def print_report(report: Reproduction, console: Console) -> None:
    """Both run directories, then `identical` or the first difference, one line each."""
    console.print(Text("original: ") + Text(str(report.original), style="bold"), soft_wrap=True)
    console.print(Text("rerun:    ") + Text(str(report.rerun), style="bold"), soft_wrap=True)
    comparison = report.comparison
    if comparison is None:
        Console(stderr=True, highlight=False).print(
            "[yellow]interrupted[/]: the rerun stopped before the end of its budget; nothing "
            "was compared", soft_wrap=True)
        return
    if report.original_status != "completed":
        what = {"interrupted": "was interrupted", "failed": "failed",
                "died": "died while training (its process was killed)",
                "running": "is still training"}.get(report.original_status,
                                                   f"is {report.original_status}")
        console.print(f"the original {what}, not completed: compared "
                      f"the {comparison.original_lines} lines it recorded with the first lines "
                      f"of the rerun's {comparison.rerun_lines}", soft_wrap=True)
    if comparison.difference is None:
        console.print(f"[bold green]identical[/]: {comparison.compared} lines of {METRICS}, "
                      "every value bit for bit", soft_wrap=True)
    else:
        console.print(f"[bold red]different[/]: {escape(comparison.difference.describe())}",
                      soft_wrap=True)
        if report.resume_explains():
            at = ", ".join(f"{count:,}" for count in report.resumed_at)
            console.print(f"the original was resumed (at {at}), and {report.plugin} resumes "
                          "with fresh episodes, not bit for bit (docs/reproducibility.md): a "
                          "difference after a resume is expected", soft_wrap=True)


def main(run_dir: Path, runs_dir: Path | None, quiet: bool, *, trust: bool = False) -> int:
    """`gymkit reproduce`: run, report, and return the exit code (0 identical, 1 not)."""
    console = Console(highlight=False)
    report = reproduce(run_dir, runs_dir, console=console, quiet=quiet, trust=trust)
    print_report(report, console)
    return report.exit_code
