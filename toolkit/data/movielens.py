"""MovieLens ratings as a user x movie matrix, for recommender RBMs (``--dataset movielens``).

Reads ``ratings.dat`` in the format of MovieLens 1M (one rating per line,
``UserID::MovieID::Rating::Timestamp``, whole-star ratings 1 to 5) from ``--data-dir DIR``
or ``DIR/ml-1m``; ``movies.dat`` beside it (``MovieID::Title::Genres``) gives titles. The
files are GroupLens', https://grouplens.org/datasets/movielens/ (their licence does not allow
redistribution, so gymkit ships none: download ml-1m.zip and unzip it).

Each user is a sample: a vector over every movie that anyone rated, ``rating / 5`` where
the user rated it and NaN where not (a trainer masks those). Users are split 80/10/10 by a
fixed permutation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.data.dataset import Dataset, DatasetError, DatasetSource, Split, fixed_split

RATINGS_FILE = "ratings.dat"
MOVIES_FILE = "movies.dat"
#: The highest rating: ratings are scaled to [0, 1] by it.
MAX_STARS = 5
FORMAT = "UserID::MovieID::Rating::Timestamp"


@dataclass(frozen=True)
class Ratings:
    """A ratings file as a matrix: ``matrix[u, i]`` is user ``user_ids[u]``'s rating of
    movie ``item_ids[i]`` (1 to 5), NaN where there is none."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: np.ndarray
    titles: dict[int, str] = field(default_factory=dict)

    def user_row(self, user_id: int) -> int:
        """The row of `user_id`; DatasetError if the file has no such user."""
        row = int(np.searchsorted(self.user_ids, user_id))
        if row == len(self.user_ids) or self.user_ids[row] != user_id:
            raise DatasetError(f"the ratings have no user {user_id}; user IDs run from "
                               f"{self.user_ids[0]} to {self.user_ids[-1]}")
        return row

    def title(self, item_id: int) -> str:
        return self.titles.get(int(item_id), f"movie {item_id}")


def find_ratings(data_dir: Path | None) -> Path:
    """``ratings.dat`` in `data_dir` or ``data_dir/ml-1m``; DatasetError saying where to
    put it otherwise."""
    where = "--data-dir DIR holding MovieLens' ratings.dat (e.g. the unzipped ml-1m folder)"
    if data_dir is None:
        raise DatasetError(f"--dataset movielens reads {where}; pass it")
    for folder in (data_dir, data_dir / "ml-1m"):
        if (folder / RATINGS_FILE).is_file():
            return folder / RATINGS_FILE
    raise DatasetError(f"no {RATINGS_FILE} in {data_dir} or {data_dir / 'ml-1m'}; download "
                       "ml-1m.zip from https://grouplens.org/datasets/movielens/ and pass "
                       "the unzipped folder as --data-dir")


def read_ratings(path: Path) -> Ratings:
    """The ratings in `path` (and the titles in ``movies.dat`` beside it, if present)."""
    text = path.read_text(encoding="latin-1")
    fields = text.replace("::", " ").split()
    try:
        table = np.array(fields, dtype=np.int64).reshape(-1, 4)
    except ValueError:
        line = next((n for n, row in enumerate(text.splitlines(), 1)
                     if len(row.split("::")) != 4
                     or not all(part.strip().isdigit() for part in row.split("::"))), "?")
        raise DatasetError(f"{path} is not in MovieLens' ratings format ({FORMAT}, whole "
                           f"numbers): see line {line}") from None
    if len(table) == 0:
        raise DatasetError(f"{path} holds no ratings; it needs lines {FORMAT}")
    stars = table[:, 2]
    if stars.min() < 1 or stars.max() > MAX_STARS:
        raise DatasetError(f"{path} has ratings from {stars.min()} to {stars.max()}; "
                           f"MovieLens' are whole stars 1 to {MAX_STARS}")
    user_ids, users = np.unique(table[:, 0], return_inverse=True)
    item_ids, items = np.unique(table[:, 1], return_inverse=True)
    matrix = np.full((len(user_ids), len(item_ids)), np.nan, dtype=np.float32)
    matrix[users, items] = stars
    return Ratings(user_ids, item_ids, matrix, read_titles(path.with_name(MOVIES_FILE)))


def read_titles(path: Path) -> dict[int, str]:
    """MovieID -> title from ``movies.dat`` (empty without the file)."""
    if not path.is_file():
        return {}
    titles = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split("::")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            titles[int(parts[0])] = parts[1]
    return titles


def load_movielens(data_dir: Path | None) -> Dataset:
    """MovieLens users' ratings of movies, scaled to [0, 1]; NaN where unrated.

    Reads ratings.dat (MovieLens 1M format) from --data-dir."""
    path = find_ratings(data_dir)
    ratings = read_ratings(path)
    x = ratings.matrix / MAX_STARS
    if len(x) < 10:
        raise DatasetError(f"{path} has ratings of {len(x)} users; the dataset needs at "
                           "least 10 to split into train, validation and test")
    train, validation, test = fixed_split(len(x), validation=0.1, test=0.1, salt=1_000_209)
    return Dataset("movielens", {"train": Split(x[train]), "validation": Split(x[validation]),
                                 "test": Split(x[test])},
                   origin=f"MovieLens ratings ({path})")


MOVIELENS = DatasetSource(load_movielens, shape=None, size="users x movies",
                          origin="MovieLens ratings.dat from --data-dir")
