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


def physical_cores() -> int:
    """The physical cores this process may run on: the CPUs of its affinity mask, less
    their hyperthread siblings (Linux's /proc/cpuinfo); elsewhere ``os.cpu_count()``."""
    import os

    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            blocks = f.read().split("\n\n")
    except OSError:
        return max(1, len(allowed))
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" in fields and int(fields["processor"]) in allowed:
            cores.add((fields.get("physical id", "0"), fields.get("core id",
                                                                  fields["processor"])))
    return max(1, len(cores) or len(allowed))
