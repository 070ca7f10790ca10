"""The IDX format of MNIST and Fashion-MNIST: read (plain or gzipped) and written.

torchvision downloads these files but cannot be imported beside a CPU-only torch build from
another index (its wheels link the CUDA build's libraries), and its reader asserts where a
user needs a sentence; the format is a 4-byte magic number, the dimensions as big-endian
int32, then the values, so it is read here.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from toolkit.data.dataset import DatasetError

#: IDX type codes and the numpy dtypes they hold (all big-endian).
_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES: dict[np.dtype, int] = {dtype: code for code, dtype in _TYPES.items()}


def read_idx(path: str | Path) -> np.ndarray:
    """The array in the IDX file `path` (``.gz`` is decompressed)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}; replace the file") \
            from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _TYPES:
        raise DatasetError(f"{path} is not an IDX file (it does not start with an IDX magic "
                           "number); replace it with the original file")
    dtype, ndim = _TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(f"{path} is a truncated IDX file; download it again")
    shape = tuple(int(n) for n in np.frombuffer(data, ">i4", ndim, 4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"{path} holds {len(data) - header} bytes of values where its "
                           f"header promises {expected} (shape {shape}); download it again")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` as an IDX file (gzipped if `path` ends in ``.gz``), e.g. for tests."""
    path = Path(path)
    dtype = np.dtype(array.dtype).newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in _CODES:
        raise ValueError(f"IDX cannot hold {array.dtype}")
    header = bytes([0, 0, _CODES[dtype], array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=dtype).tobytes())
    return path
