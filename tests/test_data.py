"""Datasets: splits, scaling, IDX files, folders of images, the batch iterator, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data import DATASETS, DatasetError, DatasetSource
from toolkit.data import builtin as data_builtin
from toolkit.data.builtin import IDX_FILES, bars_and_stripes
from toolkit.data.idx import read_idx, write_idx
from toolkit.data.loader import ShuffledBatches, binarized, to_tensors
from toolkit.registry import Registry


def load(name: str, data_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return DATASETS.get(name).load(data_dir)


def test_digits_splits_are_fixed_disjoint_and_cover_the_data() -> None:
    first, second = load("digits"), load("digits")
    assert first.shape == (1, 8, 8) and first.classes == 10 and first.labelled
    assert first.sizes() == {"train": 1437, "validation": 180, "test": 180}
    for name in ("train", "validation", "test"):
        assert np.array_equal(first.split(name).x, second.split(name).x)
    everything = np.concatenate([first.split(n).x for n in ("train", "validation", "test")])
    # No image is in two splits: as many distinct rows as scikit-learn has distinct images.
    from sklearn.datasets import load_digits

    distinct = len(np.unique(load_digits().images.reshape(1797, -1), axis=0))
    assert len(np.unique(everything.reshape(1797, -1), axis=0)) == distinct
    x = first.split("train").x
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(first.split("test").y)) == set(range(10))


def test_an_unknown_split_names_the_ones_there_are() -> None:
    with pytest.raises(DatasetError, match="no split 'valid'; it has train, validation, test"):
        load("digits").split("valid")


def test_bars_and_stripes_are_the_30_patterns() -> None:
    x = bars_and_stripes(4)[:, 0]
    assert x.shape == (30, 4, 4) and len(np.unique(x.reshape(30, -1), axis=0)) == 30
    rows_equal = (x == x[:, :1, :]).all(axis=(1, 2))
    columns_equal = (x == x[:, :, :1]).all(axis=(1, 2))
    assert (rows_equal | columns_equal).all()
    assert len(bars_and_stripes(3)) == 2 * 2**3 - 2
    dataset = load("bars-and-stripes")
    assert dataset.binary and dataset.sizes() == {"train": 30, "validation": 30, "test": 30}


# -- IDX files: MNIST's format ------------------------------------------------------------


def write_mnist(folder: Path, n_train: int = 24, n_test: int = 6, gz: bool = False,
                image_shape: tuple[int, ...] = (28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Small MNIST-format files; returns the training images and labels written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    arrays = {"train_x": rng.integers(0, 256, (n_train, *image_shape), dtype=np.uint8),
              "train_y": rng.integers(0, 10, n_train).astype(np.uint8),
              "test_x": rng.integers(0, 256, (n_test, *image_shape), dtype=np.uint8),
              "test_y": rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, array in arrays.items():
        write_idx(folder / (IDX_FILES[key] + suffix), array)
    return arrays["train_x"], arrays["train_y"]


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_round_trip(tmp_path: Path, gz: bool) -> None:
    array = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    path = write_idx(tmp_path / ("a.idx.gz" if gz else "a.idx"), array)
    assert np.array_equal(read_idx(path), array)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files_from_data_dir(tmp_path: Path, name: str, gz: bool) -> None:
    images, labels = write_mnist(tmp_path, gz=gz)
    dataset = load(name, tmp_path)
    # The last twelfth of the training file is the validation split.
    assert dataset.sizes() == {"train": 22, "validation": 2, "test": 6}
    assert dataset.shape == (1, 28, 28) and dataset.classes == 10
    np.testing.assert_allclose(dataset.split("train").x[:, 0], images[:22] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(dataset.split("validation").y, labels[22:])


def test_mnist_reads_torchvisions_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw")
    assert load("mnist", tmp_path).sizes()["test"] == 6


def test_mnist_without_files_offline_says_which_files_and_where(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_builtin, "_download", lambda folder, cls: "there is no network")
    with pytest.raises(DatasetError) as info:
        load("mnist", tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "--data-dir" in message
    assert all(file in message for file in IDX_FILES.values())
    assert "there is no network" in message


def test_idx_files_of_the_wrong_shape_are_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_builtin, "_download", lambda folder, cls: "offline")
    write_mnist(tmp_path / "small", image_shape=(8, 8))
    with pytest.raises(DatasetError, match=r"shape \(24, 8, 8\), not 28x28 uint8 images"):
        load("mnist", tmp_path / "small")
    write_mnist(tmp_path / "labels")
    write_idx(tmp_path / "labels" / IDX_FILES["test_y"], np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match=r"labels of shape \(5,\) for 6 images"):
        load("mnist", tmp_path / "labels")


def test_a_file_that_is_not_idx_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    write_idx(tmp_path / "y", np.zeros((3, 4), np.uint8))
    (tmp_path / "y").write_bytes((tmp_path / "y").read_bytes()[:-2])
    with pytest.raises(DatasetError, match="header promises 12"):
        read_idx(tmp_path / "y")


# -- a folder of images -------------------------------------------------------------------


def write_images(folder: Path, n: int, size: tuple[int, int] = (6, 5),
                 colour: bool = False) -> None:
    rng = np.random.default_rng(1)
    for i in range(n):
        sub = folder / ("cats" if i % 2 else "dogs")
        sub.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3) if colour else (size[1], size[0]),
                              dtype=np.uint8)
        Image.fromarray(pixels).save(sub / f"{i:03d}.png")


def test_a_folder_of_images_is_split_and_labelled_by_subfolder(tmp_path: Path) -> None:
    write_images(tmp_path, 20)
    dataset = load("folder", tmp_path)
    assert dataset.shape == (1, 5, 6) and dataset.classes == 2
    assert dataset.sizes() == {"train": 16, "validation": 2, "test": 2}
    # Every image is in exactly one split.
    rows = np.concatenate([dataset.split(n).x for n in ("train", "validation", "test")])
    assert len(np.unique(rows.reshape(20, -1), axis=0)) == 20
    assert dataset.split("train").x.max() <= 1.0
    write_images(tmp_path / "colour", 10, colour=True)
    assert load("folder", tmp_path / "colour").shape == (3, 5, 6)


def test_bad_image_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="reads the images in --data-dir DIR"):
        load("folder")
    with pytest.raises(DatasetError, match="is not a folder"):
        load("folder", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="holds no images"):
        load("folder", tmp_path / "empty")
    write_images(tmp_path / "few", 3)
    with pytest.raises(DatasetError, match="only 3 images"):
        load("folder", tmp_path / "few")
    write_images(tmp_path / "mixed", 10)
    write_images(tmp_path / "mixed" / "big", 1, size=(7, 7))
    with pytest.raises(DatasetError, match="have 2 sizes"):
        load("folder", tmp_path / "mixed")


# -- tensors and batches ------------------------------------------------------------------


def test_scaling_and_binarization() -> None:
    split = load("digits").split("validation")
    x, y = to_tensors(split, "cpu", scale="symmetric")
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0 and y is not None
    unit, _ = to_tensors(split, "cpu")
    assert torch.equal(binarized(unit, "threshold"), (unit > 0.5).float())
    probabilities = torch.full((200_000,), 0.3)
    draws = binarized(probabilities, "dynamic", torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    assert abs(float(draws.mean()) - 0.3) < 0.005
    with pytest.raises(ValueError, match="binarize must be"):
        binarized(unit, "sometimes")


def test_each_epoch_is_a_permutation_in_batches() -> None:
    batches = ShuffledBatches(10, 4, torch.Generator().manual_seed(0))
    assert batches.batches_per_epoch == 3
    first = list(batches.batches())
    assert [len(b) for b in first] == [4, 4, 2] and batches.epochs == 1
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    second = torch.cat(list(batches.batches()))
    assert sorted(second.tolist()) == list(range(10)) and batches.epochs == 2
    assert not torch.equal(torch.cat(first), second)
    dropping = ShuffledBatches(10, 4, torch.Generator().manual_seed(0), drop_last=True)
    assert [len(b) for b in dropping.batches()] == [4, 4]


def test_batches_resume_mid_epoch_where_they_stopped() -> None:
    whole = ShuffledBatches(10, 3, torch.Generator().manual_seed(5))
    expected = [b.tolist() for _ in range(2) for b in whole.batches()]
    generator = torch.Generator().manual_seed(5)
    part = ShuffledBatches(10, 3, generator)
    got = [b.tolist() for b in part.batches(limit=2)]
    state, generator_state = part.state_dict(), generator.get_state()
    resumed_generator = torch.Generator()
    resumed_generator.set_state(generator_state)
    resumed = ShuffledBatches(10, 3, resumed_generator)
    resumed.load_state_dict(state)
    got += [b.tolist() for b in resumed.batches()]
    got += [b.tolist() for b in resumed.batches()]
    assert got == expected and resumed.epochs == 2


# -- the registry -------------------------------------------------------------------------


def test_a_dataset_that_is_not_a_source_is_unusable_with_the_fix() -> None:
    registry: Registry[DatasetSource] = Registry("dataset", DATASETS._check)
    registry.add("bare", lambda: None, source="someone")  # type: ignore[arg-type,return-value]
    error = registry.entries()[0].error
    assert error is not None and "@dataset_source(" in error


def test_image_grid_lays_out_a_batch_with_padding() -> None:
    from toolkit.images import image_grid

    batch = np.zeros((5, 1, 2, 3))
    batch[4] = 1.0  # the fifth image white
    grid = image_grid(batch, columns=2, padding=1)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:3, 1:4] == 0).all()  # the first image, after one pixel of padding
    assert (grid[7:9, 1:4] == 255).all() and (grid[7:9, 5:8] == 255).all()  # image 5, then pad
    assert image_grid(np.full((1, 3, 2, 2), 0.5), scale=3).shape == (2 * 3 + 4, 2 * 3 + 4, 3)
    with pytest.raises(ValueError, match="needs a batch"):
        image_grid(np.zeros((2, 2, 4, 4)))
