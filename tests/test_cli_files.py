"""Files the CLI leaves behind: permissions and durability of atomic writes; fixed seeds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from toolkit import runner, watch
from toolkit.atomic import atomic_write


def test_atomic_write_gives_the_permissions_of_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    with plain.open("w") as f:
        f.write("{}")
    if stat.S_IMODE(plain.stat().st_mode) == 0o600:
        pytest.skip("the umask makes open() give 0600 too: nothing to tell apart")
    atomic = tmp_path / "atomic.json"
    with atomic_write(atomic) as f:
        f.write("{}")
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert atomic.read_text() == "{}"


def test_atomic_write_fsyncs_the_directory_after_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[bool, bool]] = []  # (a directory?, the file already renamed?)
    target = tmp_path / "summary.json"
    fsync = os.fsync

    def record(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), target.exists()))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    with atomic_write(target) as f:
        f.write("{}")
    assert synced == [(False, False), (True, True)]


def test_atomic_write_leaves_nothing_behind_on_error(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_watched_episodes_are_not_evaluation_episodes() -> None:
    offsets = {runner.PERIODIC_EVAL_SEED, runner.FINAL_EVAL_SEED}
    assert watch.WATCH_SEED == 3_000_017 and watch.WATCH_SEED not in offsets


def test_stable_baselines3_is_not_a_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.lower().startswith("stable-baselines3")]
