"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from toolkit.errors import GymkitError


def _read_umask() -> int:
    # os.umask is the only way to read it: set it and put it back at once (at import,
    # before any thread of ours could create a file in between).
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: What a plain ``open(path, "w")`` gives a new file; mkstemp would give 0600.
FILE_MODE = 0o666 & ~_read_umask()


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`.

    The new file gets the permissions a plain ``open()`` would give it, and the
    directory is fsynced after the rename so that the rename itself survives a crash.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(folder: Path, what: str, noun: str = "path") -> None:
    """Refuse, before any work, a `folder` to write into that cannot be created or written
    (a read-only filesystem, an ancestor that is a file); `what` names it in the message
    (``"--out samples/a.png"``) and `noun` what to pass instead."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise GymkitError(f"cannot write {what}: {existing} is a file; pass another {noun}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise GymkitError(f"cannot write {what}: {existing} is not writable; pass another "
                          f"{noun}")
