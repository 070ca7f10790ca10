"""gymkit's own datasets: digits, mnist, fashion-mnist, bars-and-stripes, folder and
movielens (`toolkit.data.movielens`).

Each loader imports what it needs when it runs, so that listing them costs nothing.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np

from toolkit.data.dataset import Dataset, DatasetError, DatasetSource, Split, fixed_split
from toolkit.data.idx import read_idx
from toolkit.data.movielens import MOVIELENS

# -- digits ---------------------------------------------------------------------------


def load_digits(data_dir: Path | None) -> Dataset:
    """8x8 handwritten digits, 10 classes.

    scikit-learn's bundled copy of the UCI digits: offline. Split 80/10/10 by a fixed
    permutation."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]  # values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    train, validation, test = fixed_split(len(x), validation=0.1, test=0.1, salt=8)
    return Dataset("digits", {"train": Split(x[train], y[train]),
                              "validation": Split(x[validation], y[validation]),
                              "test": Split(x[test], y[test])},
                   classes=10, origin="scikit-learn's load_digits")


DIGITS = DatasetSource(load_digits, shape=(1, 8, 8), size="1,797",
                       origin="scikit-learn (bundled)")

# -- mnist and fashion-mnist --------------------------------------------------------------

#: The four IDX files of MNIST and Fashion-MNIST (both use these names).
IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
#: Of the 60,000 training images, the last twelfth (5,000) is the validation split.
VALIDATION_FRACTION = 1 / 12


def default_data_dir() -> Path:
    """Where downloaded data goes without ``--data-dir``: ``$GYMKIT_DATA`` or
    ``~/.cache/gymkit/data``."""
    return Path(os.environ.get("GYMKIT_DATA", Path.home() / ".cache" / "gymkit" / "data"))


def find_idx(folder: Path, name: str, torchvision_class: str) -> Path | None:
    """`name` (or ``name.gz``) in `folder` itself or in torchvision's ``CLASS/raw`` under it."""
    for directory in (folder, folder / torchvision_class / "raw"):
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download(folder: Path, torchvision_class: str) -> str | None:
    """Download with torchvision into `folder`; None on success, else why not."""
    try:
        import torchvision.datasets as tv_datasets
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        return f"torchvision cannot be imported ({type(exc).__name__}: {exc})"
    try:
        for train in (True, False):
            getattr(tv_datasets, torchvision_class)(str(folder), train=train, download=True)
    except Exception as exc:  # no network, a mirror down
        return f"the download failed ({type(exc).__name__}: {exc})"
    return None


def load_idx_dataset(name: str, torchvision_class: str, data_dir: Path | None,
                     classes: int = 10) -> Dataset:
    folder = data_dir if data_dir is not None else default_data_dir()
    paths = {key: find_idx(folder, file, torchvision_class) for key, file in IDX_FILES.items()}
    if any(path is None for path in paths.values()):
        why = _download(folder, torchvision_class)
        paths = {key: find_idx(folder, file, torchvision_class) for key, file in IDX_FILES.items()}
        missing = [IDX_FILES[key] for key, path in paths.items() if path is None]
        if missing:
            raise DatasetError(f"{name}: {folder} lacks {', '.join(missing)} (or .gz) and "
                               f"{why or 'the download left them out'}; put the four IDX files "
                               "in that folder, or name the folder that holds them with "
                               "--data-dir DIR")
    arrays = {key: read_idx(path) for key, path in paths.items() if path is not None}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_x"], arrays[f"{part}_y"]
        image_file, label_file = paths[f"{part}_x"], paths[f"{part}_y"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DatasetError(f"{name}: {image_file} holds {images.dtype} values of shape "
                               f"{images.shape}, not 28x28 uint8 images; replace it with "
                               f"the original {IDX_FILES[f'{part}_x']}")
        if labels.shape != (len(images),):
            raise DatasetError(f"{name}: {label_file} holds labels of shape {labels.shape} "
                               f"for {len(images)} images in {image_file}; use the label "
                               "file that belongs to those images")
    train_x = arrays["train_x"].astype(np.float32)[:, None] / 255.0
    train_y = arrays["train_y"].astype(np.int64)
    cut = len(train_x) - round(len(train_x) * VALIDATION_FRACTION)
    test = Split(arrays["test_x"].astype(np.float32)[:, None] / 255.0,
                 arrays["test_y"].astype(np.int64))
    return Dataset(name, {"train": Split(train_x[:cut], train_y[:cut]),
                          "validation": Split(train_x[cut:], train_y[cut:]), "test": test},
                   classes=classes, origin=f"IDX files in {folder}")


def load_mnist(data_dir: Path | None) -> Dataset:
    """28x28 handwritten digits, 10 classes.

    MNIST's IDX files (torchvision downloads them); the last 5,000 training images are the
    validation split."""
    return load_idx_dataset("mnist", "MNIST", data_dir)


def load_fashion_mnist(data_dir: Path | None) -> Dataset:
    """28x28 clothing images, 10 classes.

    Zalando's Fashion-MNIST, in MNIST's format and splits."""
    return load_idx_dataset("fashion-mnist", "FashionMNIST", data_dir)


IDX_ORIGIN = "IDX files (--data-dir) or download"
MNIST = DatasetSource(load_mnist, shape=(1, 28, 28), size="70,000", origin=IDX_ORIGIN)
FASHION_MNIST = DatasetSource(load_fashion_mnist, shape=(1, 28, 28), size="70,000",
                              origin=IDX_ORIGIN)

# -- bars and stripes -------------------------------------------------------------------

BARS_SIDE = 4


def bars_and_stripes(side: int = BARS_SIDE) -> np.ndarray:
    """Every distinct side x side image whose rows are all equal (vertical bars) or whose
    columns are (horizontal stripes): 2 * 2**side - 2 of them (blank and full count once)."""
    patterns = {}
    for bits in itertools.product((0.0, 1.0), repeat=side):
        line = np.array(bits, dtype=np.float32)
        for image in (np.tile(line, (side, 1)), np.tile(line[:, None], (1, side))):
            patterns[image.tobytes()] = image
    return np.stack([patterns[key] for key in sorted(patterns)])[:, None]


def load_bars_and_stripes(data_dir: Path | None) -> Dataset:
    """4x4 binary bars and stripes, the toy for energy models.

    The 30 distinct images of vertical bars or horizontal stripes (generated); every split
    holds all 30."""
    x = bars_and_stripes()
    return Dataset("bars-and-stripes", {name: Split(x) for name in ("train", "validation",
                                                                    "test")},
                   origin="generated", binary=True)


BARS_AND_STRIPES = DatasetSource(load_bars_and_stripes, shape=(1, BARS_SIDE, BARS_SIDE),
                                 size="30", origin="generated")

# -- a folder of images -------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_folder(data_dir: Path | None) -> Dataset:
    """Your own images, labelled by subfolder.

    Every image file under --data-dir, of one size; grey unless any has colour."""
    from PIL import Image

    if data_dir is None:
        raise DatasetError("--dataset folder reads the images in --data-dir DIR; pass it")
    if not data_dir.is_dir():
        raise DatasetError(f"--data-dir {data_dir} is not a folder; pass a folder of images")
    files = sorted(p for p in data_dir.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 10:
        found = "no images" if not files else f"only {len(files)} images"
        raise DatasetError(f"{data_dir} holds {found} ({', '.join(IMAGE_SUFFIXES)}); a "
                           "dataset needs at least 10 to split into train, validation and "
                           "test")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except OSError as exc:
            raise DatasetError(f"cannot read the image {path}: {exc}; remove or replace it") \
                from exc
    sizes = {image.size for image in images}
    if len(sizes) > 1:
        raise DatasetError(f"the images in {data_dir} have {len(sizes)} sizes "
                           f"({', '.join(f'{w}x{h}' for w, h in sorted(sizes)[:3])}, ...); "
                           "resize them to one size")
    x = np.stack([np.asarray(image, dtype=np.float32) / 255.0 for image in images])
    x = x.transpose(0, 3, 1, 2)  # (N, 3, H, W)
    if np.array_equal(x[:, 0], x[:, 1]) and np.array_equal(x[:, 0], x[:, 2]):
        x = x[:, :1]  # grey images: one channel
    folders = [path.parent.relative_to(data_dir).as_posix() for path in files]
    names = sorted(set(folders))
    y = np.array([names.index(f) for f in folders], dtype=np.int64) if len(names) > 1 else None
    # Seed-independent and never empty: of the files in name order, every tenth from the
    # ninth is validation, every tenth from the tenth is test.
    position = np.arange(len(x)) % 10
    parts = {"train": position < 8, "validation": position == 8, "test": position == 9}
    return Dataset("folder", {name: Split(x[mask], None if y is None else y[mask])
                              for name, mask in parts.items()},
                   classes=len(names) if y is not None else None, origin=f"images in {data_dir}")


FOLDER = DatasetSource(load_folder, shape=None, size="any", origin="--data-dir DIR")

BUILTIN = {"digits": DIGITS, "mnist": MNIST, "fashion-mnist": FASHION_MNIST,
           "bars-and-stripes": BARS_AND_STRIPES, "folder": FOLDER, "movielens": MOVIELENS}
