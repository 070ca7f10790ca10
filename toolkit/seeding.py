"""Seeding and RNG state capture, so that a run is reproducible and resumable.

torch is seeded and captured only when something has imported it: a plugin
that uses torch imports it when its module is loaded, before any seeding, and
a plugin that does not (tabular Q-learning) never pays for the import.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy's legacy global RNG and (when imported) torch; switch torch to
    deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is None:
        return
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@contextmanager
def memory_left_unfilled() -> Iterator[None]:
    """Within the block, memory that torch allocates is left as it is, where deterministic
    algorithms (`seed_everything` turns them on) have torch fill it with NaN first. That
    fill only shows a kernel that reads numbers it has not written; a trainer whose kernels
    write all they read runs its training in this block (the fill cost ppo-lstm 5%: oneDNN's
    LSTM allocates its workspaces on every call). PyTorch's documentation: a program that
    does not read uninitialized memory stays deterministic with the fill off. The setting
    is restored after."""
    import torch

    deterministic: Any = torch.utils.deterministic  # a module with a property
    fill = deterministic.fill_uninitialized_memory
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = fill


@contextmanager
def global_rng_from(generator: Any, device: Any = "cpu") -> Iterator[None]:
    """Within the block, torch's global RNG of `device` (what dropout draws from) is seeded
    from `generator`, and restored after: a trainer or estimator owns its randomness, and
    two in one process do not draw from each other's."""
    import torch

    device = torch.device(device)
    cuda = device.type == "cuda"
    devices = [device.index if device.index is not None
               else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=devices):
        seed = int(torch.randint(2**62, (), generator=generator))
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        yield


def python_rng_state(rng: random.Random | None = None) -> list[Any]:
    """The state of `rng` (or of the module-level RNG) as plain lists, checkpoint-safe."""
    version, internal, gauss = (rng or random).getstate()
    return [version, list(internal), gauss]


def set_python_rng_state(state: list[Any], rng: random.Random | None = None) -> None:
    version, internal, gauss = state
    (rng or random).setstate((version, tuple(internal), gauss))


def numpy_rng_state(generator: np.random.Generator) -> dict[str, Any]:
    return dict(generator.bit_generator.state)


def set_numpy_rng_state(generator: np.random.Generator, state: dict[str, Any]) -> None:
    generator.bit_generator.state = state


def global_rng_state() -> dict[str, Any]:
    """Python, numpy-global and torch RNG states (torch and CUDA when imported), as plain
    data and tensors."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": python_rng_state(),
        "numpy": [np_name, [int(k) for k in np_keys], int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_initialized():  # only a run that used CUDA has CUDA RNG state
            state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    set_python_rng_state(state["python"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np.asarray(np_keys, dtype=np.uint32), int(np_pos),
                         int(np_has_gauss), float(np_gauss)))
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)
