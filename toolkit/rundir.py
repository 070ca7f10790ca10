"""Run directories: ``runs/<date>-<time>-<name>-<target>-s<seed>/``, never overwritten.

Each holds config.json (everything needed to rebuild the run), TensorBoard
events, metrics.jsonl, checkpoints/{last,best}.pt and summary.json, whose
``status`` is running, completed, interrupted or failed; a reader tells a running run
from one whose process died by the lock that a live run holds (`RunDir.status`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from toolkit.atomic import atomic_write
from toolkit.errors import GymkitError

CONFIG = "config.json"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, root: str | Path, name: str, target: str, seed: int) -> RunDir:
        """A fresh directory; a clash (two runs in the same second) gets a numeric suffix."""
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GymkitError(f"cannot use {root} as the runs directory: {exc.strerror}; "
                              "pass another --runs-dir") from exc
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = f"{stamp}-{_slug(name)}-{_slug(target)}-s{seed}"
        for attempt in range(1000):
            path = root / (base if attempt == 0 else f"{base}-{attempt}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise GymkitError(f"cannot create a run directory in {root}: {exc.strerror}; "
                                  "pass another --runs-dir") from exc
            return cls(path)
        raise GymkitError(f"cannot create a run directory under {root}")

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not (run.path / CONFIG).is_file():
            raise GymkitError(f"{path} is not a gymkit run directory (no {CONFIG})")
        return run

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def checkpoint(self, which: str = "last") -> Path:
        return self.checkpoints / f"{which}.pt"

    def write_config(self, config: dict[str, Any]) -> None:
        write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.summary_path) if self.summary_path.is_file() else {}

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive use by one process; the OS releases it when that process dies."""
        try:
            import fcntl
        except ImportError:  # Windows has no advisory locks: no protection there
            yield
            return
        with (self.path / LOCK).open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise GymkitError(f"{self.path} is in use by another gymkit process; "
                                  "wait for it to finish or stop it first") from None
            yield

    def in_use(self) -> bool:
        """Whether a live process holds the run (the lock of `lock`); a process that died,
        even by ``kill -9``, holds nothing."""
        try:
            import fcntl
        except ImportError:  # no advisory locks: assume nobody
            return False
        lock = self.path / LOCK
        if not lock.is_file():
            return False
        try:
            with lock.open("r") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return False
        return False

    def status(self) -> str:
        """summary.json's status, with ``running`` told apart: ``running`` while a process
        holds the run, ``died`` when none does (killed, crashed, the machine lost power)."""
        status = str(self.read_summary().get("status", "unknown"))
        if status == "running" and not self.in_use():
            return "died"
        return status

    def __str__(self) -> str:
        return str(self.path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GymkitError(f"cannot read {path}: it is not UTF-8 text (byte {exc.start}), so "
                          "gymkit did not write it; restore the file or pass another run "
                          "directory") from exc
    except OSError as exc:
        raise GymkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise GymkitError(f"cannot read {path}: it is not valid JSON ({exc.msg} at line "
                          f"{exc.lineno}); restore the file or pass another run "
                          "directory") from exc
    if not isinstance(data, dict):
        raise GymkitError(f"{path} does not hold a JSON object")
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"
