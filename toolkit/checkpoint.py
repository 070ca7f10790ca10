"""Checkpoints: plain dicts of tensors, numbers and strings, written atomically.

A payload with tensors is written with ``torch.save`` and loaded with
``torch.load(weights_only=True)``, which refuses to unpickle arbitrary
objects: a checkpoint from a stranger cannot run code. A payload of plain data
only (numbers, strings, lists, dicts with string keys: what tabular agents
hold) is written as JSON, which is just as safe and needs no torch, so that
those runs start fast. `load_checkpoint` reads both.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from toolkit.atomic import atomic_write
from toolkit.errors import CheckpointError, type_name

FORMAT = "gymkit-checkpoint"
FORMAT_VERSION = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SCALARS = (bool, int, float, str)
#: How every file that torch.save writes begins: it is a zip archive.
ZIP_MAGIC = b"PK\x03\x04"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temporary file and a rename, never half-written."""
    check_state(payload, "checkpoint")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    if _is_plain(body):
        with atomic_write(path) as f:
            json.dump(body, f, allow_nan=True)
    else:
        import torch

        with atomic_write(path, "wb") as f:
            torch.save(body, f)
    return path


def load_checkpoint(path: str | Path, *, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load and check a checkpoint written by `save_checkpoint`; tensors land on the CPU.

    `require` names top-level keys that must be present (a run's checkpoint needs
    ``trainer``, ``loop`` and ``rng``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    body = _read(path)
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gymkit checkpoint (no '{FORMAT}' header)")
    if body.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer gymkit (format {body['format_version']}); "
            "upgrade gymkit"
        )
    missing = [key for key in require if key not in body]
    if missing:
        raise CheckpointError(f"{path} is incomplete (no {', '.join(repr(k) for k in missing)}); "
                              "use another checkpoint or start a new run")
    return dict(body)


def check_state_version(state: dict[str, Any], plugin: str, version: int) -> None:
    """Raise CheckpointError unless `state` holds `plugin`'s state version `version`."""
    found = state.get("version")
    if found != version:
        raise CheckpointError(f"this checkpoint holds {plugin} state version {found}, and this "
                              f"gymkit reads version {version}; use it with the gymkit that "
                              "wrote it")


def check_state(value: Any, where: str) -> None:
    """Raise CheckpointError naming the first entry of `value` that a checkpoint cannot hold.

    Allowed: tensors, numbers, strings, booleans, None, and lists, tuples and dicts of
    them (dict keys: strings or integers). Subclasses (numpy.float64, an IntEnum) are not:
    ``torch.load(weights_only=True)`` refuses them."""
    if value is None or type(value) in _SCALARS:
        return
    if type(value) is dict or type(value).__name__ == "OrderedDict":
        for key, item in value.items():
            if type(key) not in (str, int):
                raise CheckpointError(f"{where} has a key {key!r} of type "
                                      f"{type_name(key)}; use strings or integers as keys")
            check_state(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            check_state(item, f"{where}[{index}]")
        return
    if _is_torch_value(value):
        return
    raise CheckpointError(f"{where} holds a {type_name(value)}, which a checkpoint cannot "
                          f"hold; {_fix_for(value)}")


def _read(path: Path) -> Any:
    with path.open("rb") as f:
        head = f.read(4)
    if head[:1] == b"{":
        try:
            return json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is corrupted ({_reason(exc)}); use another "
                                  "checkpoint or start a new run") from exc
    if head != ZIP_MAGIC:
        raise CheckpointError(f"{path} is not a gymkit checkpoint: it is neither JSON nor a "
                              "torch archive; use another checkpoint or start a new run")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc) or "weights_only" in str(exc):
            raise CheckpointError(
                f"{path} holds Python objects that are not plain data, so it cannot be "
                "loaded safely; the plugin that wrote it must keep its state_dict to tensors, "
                "numbers, strings, lists and dicts") from exc
        raise CheckpointError(f"{path} is corrupted or not a gymkit checkpoint "
                              f"({_reason(exc)}); use another checkpoint or start a new run"
                              ) from exc


def _is_plain(value: Any) -> bool:
    """True when JSON holds `value` exactly: no tensors, tuples, bytes or integer keys."""
    if value is None or type(value) in _SCALARS:
        return True
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _is_torch_value(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, (torch.Tensor, torch.Size, torch.dtype))



def _fix_for(value: Any) -> str:
    module = type(value).__module__.split(".")[0]
    if module == "numpy":
        if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
            return "convert it with torch.from_numpy(array) or array.tolist()"
        return "convert it with float(x) or int(x)"
    return "store its state as tensors, numbers, strings, lists or dicts instead"


def _reason(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes."""
    text = _ANSI.sub("", str(exc)).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(first) > 100:
        first = first[:100].rsplit(" ", 1)[0] + " …"
    return first
