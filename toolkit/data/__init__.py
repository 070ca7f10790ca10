"""Datasets for generative trainers, by name (``--dataset digits``).

A dataset is registered as a `DatasetSource`: what `gymkit list` shows without loading it,
and a loader ``(data_dir) -> Dataset``. gymkit's own (``digits``, ``mnist``,
``fashion-mnist``, ``bars-and-stripes``, ``folder``, ``movielens``) are registered here;
plugins add theirs with ``DATASETS.add(name, source)`` or ``@DATASETS.register(name)`` above a
``@dataset_source(...)`` loader.
"""

from __future__ import annotations

from toolkit.data.builtin import BUILTIN
from toolkit.data.dataset import (
    Dataset,
    DatasetError,
    DatasetSource,
    Split,
    dataset_source,
    fixed_split,
)
from toolkit.errors import GymkitError
from toolkit.registry import Registry


def _check_source(name: str, obj: DatasetSource) -> None:
    if not isinstance(obj, DatasetSource):
        raise GymkitError(f"it is a {type(obj).__name__}, not a DatasetSource; wrap its loader "
                          "with @dataset_source(shape=..., size=..., origin=...)")


DATASETS: Registry[DatasetSource] = Registry("dataset", _check_source)

for _name, _source in BUILTIN.items():
    DATASETS.add(_name, _source, source="gymkit")

__all__ = ["DATASETS", "Dataset", "DatasetError", "DatasetSource", "Split", "dataset_source",
           "fixed_split"]
