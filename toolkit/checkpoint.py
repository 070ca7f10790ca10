"""Checkpoints: plain dicts of tensors, numbers and strings, written atomically.

They are loaded with ``torch.load(weights_only=True)``, which refuses to
unpickle arbitrary objects: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from toolkit.atomic import atomic_write
from toolkit.errors import CheckpointError

FORMAT = "gymkit-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temporary file and a rename, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_write(path, "wb") as f:
        torch.save(body, f)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint written by `save_checkpoint`; tensors land on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is corrupted or not a gymkit checkpoint ({reason[:120]}); "
            "use another checkpoint or start a new run"
        ) from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gymkit checkpoint (no '{FORMAT}' header)")
    if body.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gymkit (format {body['format_version']}); "
            "upgrade gymkit"
        )
    return dict(body)
