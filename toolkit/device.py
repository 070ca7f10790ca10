"""`--device auto|cpu|cuda[:N]` -> torch.device, with a clear error when CUDA is missing."""

from __future__ import annotations

import torch

from toolkit.errors import GymkitError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GymkitError(
                f"--device {name} requested but CUDA is not available; use --device cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise GymkitError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise GymkitError(f"unknown device '{name}'; use auto, cpu or cuda") from exc
