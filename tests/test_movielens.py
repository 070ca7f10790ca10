"""The MovieLens loader (`toolkit.data.movielens`), on small files in its format that the
tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.data import DATASETS, DatasetError
from toolkit.data.movielens import find_ratings, read_ratings


def write_ratings(folder: Path, rows: list[tuple[int, int, int]], titles: bool = True) -> Path:
    """ratings.dat (and movies.dat) in MovieLens 1M's format."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ratings.dat"
    path.write_text("".join(f"{u}::{m}::{r}::97830{n:04d}\n"
                            for n, (u, m, r) in enumerate(rows)), encoding="latin-1")
    if titles:
        movies = sorted({m for _, m, _ in rows})
        (folder / "movies.dat").write_text(
            "".join(f"{m}::Movie {m} (2000)::Drama\n" for m in movies), encoding="latin-1")
    return path


def test_ratings_become_a_user_by_movie_matrix_with_nan_where_unrated(tmp_path: Path) -> None:
    path = write_ratings(tmp_path, [(7, 30, 5), (2, 10, 3), (7, 10, 1), (2, 20, 4)])
    ratings = read_ratings(path)
    assert ratings.user_ids.tolist() == [2, 7]
    assert ratings.item_ids.tolist() == [10, 20, 30]
    assert np.array_equal(ratings.matrix, np.array([[3, 4, np.nan], [1, np.nan, 5]],
                                                   dtype=np.float32), equal_nan=True)
    assert ratings.user_row(7) == 1
    assert ratings.title(20) == "Movie 20 (2000)"
    with pytest.raises(DatasetError, match="no user 5; user IDs run from 2 to 7"):
        ratings.user_row(5)


def test_the_dataset_splits_users_and_scales_ratings(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(u, m, int(rng.integers(1, 6))) for u in range(1, 41) for m in range(1, 13)
            if rng.random() < 0.5]
    write_ratings(tmp_path / "ml-1m", rows)
    dataset = DATASETS.get("movielens").load(tmp_path)
    assert dataset.sizes() == {"train": 32, "validation": 4, "test": 4}
    x = np.concatenate([dataset.split(s).x for s in ("train", "validation", "test")])
    rated = ~np.isnan(x)
    assert rated.sum() == len(rows)
    assert set(np.unique(x[rated] * 5).round().astype(int)) <= {1, 2, 3, 4, 5}
    assert not dataset.labelled


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="reads --data-dir DIR holding MovieLens"):
        find_ratings(None)
    with pytest.raises(DatasetError, match=r"no ratings.dat in .* download ml-1m.zip"):
        find_ratings(tmp_path)
    bad = tmp_path / "ratings.dat"
    bad.write_text("1::10::5::978300760\n1,20,4,978300761\n")
    with pytest.raises(DatasetError, match=r"not in MovieLens' ratings format .* line 2"):
        read_ratings(bad)
    bad.write_text("1::10::6::978300760\n")
    with pytest.raises(DatasetError, match="ratings from 6 to 6"):
        read_ratings(bad)
    write_ratings(tmp_path / "few", [(1, 1, 3), (2, 1, 4)])
    with pytest.raises(DatasetError, match=r"2 users; .* at least 10"):
        DATASETS.get("movielens").load(tmp_path / "few")
