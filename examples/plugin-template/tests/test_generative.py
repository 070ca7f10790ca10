"""The generative trainer and the dataset: gymkit's contract, learning, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from toolkit import launch
from toolkit.data import DATASETS
from toolkit.errors import ConfigError
from toolkit.registry import GENERATIVE
from toolkit.testing import check_plugin

TRAINER = "template-mixture"
DATASET = "template-blobs"
DISTRIBUTION = "gymkit-plugin-template"


def test_the_generative_trainer_keeps_the_contract() -> None:
    check_plugin(GENERATIVE.get(TRAINER), DATASET)


def test_the_plugins_come_from_this_package() -> None:
    assert GENERATIVE.entry(TRAINER).source == DISTRIBUTION
    assert DATASETS.entry(DATASET).source == DISTRIBUTION


def test_the_dataset_is_generated_the_same_every_time() -> None:
    first, second = DATASETS.get(DATASET).load(None), DATASETS.get(DATASET).load(None)
    assert first.sizes() == {"train": 2400, "validation": 300, "test": 300}
    assert first.shape == (2,)
    assert np.array_equal(first.split("train").x, second.split("train").x)


def test_the_mixture_learns_the_blobs(tmp_path: Path) -> None:
    prepared = launch.prepare("generative", DATASET, TRAINER,
                              flags={"epochs": 20, "seed": 0})
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.status == "completed"
    # The blobs' own density scores 2.86 nats per point on the validation split; one
    # Gaussian fitted to it, 4.38.
    assert result.summary["final_eval"]["eval/loss"] < 3.0
    assert (result.rundir.path / "checkpoints" / "best.pt").is_file()


def test_bad_input_is_refused_before_training() -> None:
    with pytest.raises(ConfigError, match="components must be in"):
        launch.prepare("generative", None, TRAINER, assignments=["components=0"])
