"""What a dataset is to gymkit: named splits of samples in a known range, with optional labels.

A `DatasetSource` is what ``--dataset NAME`` names: its facts that are known without loading
(for `gymkit list`) and a loader. `load` returns a `Dataset`: the arrays of each split, kept
in memory as float32 (images ``(N, C, H, W)`` in [0, 1]), and int64 labels where there are
any. Splits are fixed by rules that do not depend on the run's seed, so every run of every
model sees the same train, validation and test samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import GymkitError

SPLITS = ("train", "validation", "test")


class DatasetError(GymkitError):
    """A dataset cannot be loaded: missing files, files of the wrong shape, an empty folder."""


@dataclass(frozen=True)
class Split:
    """The samples of one split: `x` ``(N, *shape)`` float32, `y` ``(N,)`` int64 or None."""

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise DatasetError(f"a split has {len(self.x)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its splits (``train``, ``validation``, ``test``) and what they hold."""

    name: str
    splits: dict[str, Split]
    #: Where the values of `x` lie: images are scaled to [0, 1] when they are loaded.
    value_range: tuple[float, float] = (0.0, 1.0)
    #: The number of label classes, or None for unlabelled data.
    classes: int | None = None
    #: Where the data came from, for config.json and `gymkit list`.
    origin: str = ""
    #: True when every value is 0 or 1 already (no binarization needed).
    binary: bool = False

    def __post_init__(self) -> None:
        missing = [name for name in SPLITS if name not in self.splits]
        if missing:
            raise DatasetError(f"dataset {self.name} has no {', '.join(missing)} split; a "
                               f"dataset needs all of {', '.join(SPLITS)}")
        shapes = {tuple(split.x.shape[1:]) for split in self.splits.values()}
        if len(shapes) != 1:
            raise DatasetError(f"dataset {self.name}'s splits hold samples of different shapes "
                               f"{sorted(shapes)}")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.splits["train"].x.shape[1:])

    @property
    def is_image(self) -> bool:
        """Samples are ``(C, H, W)`` images."""
        return len(self.shape) == 3

    @property
    def labelled(self) -> bool:
        return all(split.y is not None for split in self.splits.values())

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(f"dataset {self.name} has no split {name!r}; it has "
                               f"{', '.join(self.splits)}")
        return self.splits[name]

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}


Loader = Callable[[Path | None], Dataset]


class DatasetSource:
    """What ``--dataset NAME`` names: `load(data_dir)` returns the `Dataset`, and `shape`,
    `size` and `origin` describe it without loading it (for `gymkit list`). Register one with
    ``DATASETS.add(name, DatasetSource(...))`` or the `dataset_source` decorator."""

    def __init__(self, load: Loader, *, shape: tuple[int, ...] | None, size: str,
                 origin: str) -> None:
        self.load = load
        #: The shape of a sample, or None where only loading tells (a folder of images).
        self.shape = shape
        #: The number of samples in words, e.g. ``"1,797"``.
        self.size = size
        #: Where the data comes from, e.g. ``"scikit-learn, bundled"``.
        self.origin = origin
        self.__doc__ = load.__doc__

    def shape_text(self) -> str:
        return "x".join(str(n) for n in self.shape) if self.shape is not None else "any"


def dataset_source(*, shape: tuple[int, ...] | None, size: str,
                   origin: str) -> Callable[[Loader], DatasetSource]:
    """Decorator: a loader ``(data_dir) -> Dataset`` as a `DatasetSource`, e.g.

        @DATASETS.register("blobs")
        @dataset_source(shape=(2,), size="3,000", origin="generated")
        def blobs(data_dir: Path | None) -> Dataset: ...
    """

    def wrap(load: Loader) -> DatasetSource:
        return DatasetSource(load, shape=shape, size=size, origin=origin)

    return wrap


def fixed_split(n: int, validation: float, test: float,
                salt: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test for `n` samples: a permutation that depends on
    `n` and `salt` only (never on a run's seed), cut into the given fractions."""
    order = np.random.default_rng([salt, n]).permutation(n)
    n_test, n_validation = round(n * test), round(n * validation)
    return (np.sort(order[n_test + n_validation:]), np.sort(order[n_test:n_test + n_validation]),
            np.sort(order[:n_test]))
