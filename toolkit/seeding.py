"""Seeding and RNG state capture, so that a run is reproducible and resumable."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed python, numpy's legacy global RNG and torch; switch torch to deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


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
    """Python, numpy-global and torch RNG states (CUDA too when present)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": python_rng_state(),
        "numpy": [np_name, torch.from_numpy(np.asarray(np_keys).copy()), np_pos,
                  np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    set_python_rng_state(state["python"])
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy(), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
