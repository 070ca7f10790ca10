"""Datasets for generative trainers, by name (``--dataset digits``).

A dataset is registered as a zero-argument factory returning the data object
its trainers consume; the generative plugins add ``digits``, ``mnist`` and
``synthetic``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from toolkit.registry import Registry

DATASETS: Registry[Callable[[], Any]] = Registry("dataset")
