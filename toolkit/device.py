"""`--device auto|cpu|cuda[:N]` -> the device a run uses, with a clear error when CUDA is
missing."""

from __future__ import annotations

from toolkit.errors import GymkitError


def resolve_device(name: str, *, uses_torch: bool = True) -> str:
    """The device as torch spells it (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    For a plugin without tensors ``auto`` is the CPU, and torch is not imported."""
    if name == "auto" and not uses_torch:
        return "cpu"
    if name == "cpu":
        return name
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise GymkitError(f"--device {name} requested but CUDA is not available; use --device cpu")
    try:
        index = torch.device(name).index
    except RuntimeError as exc:
        raise GymkitError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from exc
    if index is not None and index >= torch.cuda.device_count():
        raise GymkitError(
            f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return name
