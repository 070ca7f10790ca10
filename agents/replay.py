"""A replay buffer for off-policy agents (DQN) that step a vector of environments.

One transition is ``(obs, action, reward, next_obs, terminated, discount)``. The buffer stores
them in preallocated torch tensors on the agent's device, in a ring: when it is full,
the oldest transitions are overwritten first.

- ``obs`` and ``next_obs`` keep the env's dtype (uint8 Atari frames stay uint8, a quarter
  of float32; bool MinAtar frames stay bool): the network converts a sampled batch.
  ``next_obs`` is the true next observation of the step, which for a step that ended an
  episode is its final observation, not the first one of the next episode.
- ``actions`` keep the action space's dtype and shape (``()`` for a Discrete space).
- ``rewards``, ``terminated`` and ``discounts`` are float32. ``discount`` is what the
  target multiplies the next state's value by: gamma for a one-step transition, gamma^k
  for one that sums k rewards (`agents.offpolicy.NStep`).

On the CPU the storage is also reached through numpy views of the same memory: `add`
writes rows and `sample` gathers them with numpy, whose per-call cost is a fraction of
torch's (they run once per env step and once per gradient step). On other devices each
array goes to the device in one transfer and is gathered there.

Only ``terminated`` stops bootstrapping: the target is ``r + discount * (1 - terminated) *
Q(next_obs)``. A truncated step (time limit) is stored with ``terminated = 0``, so its
target still bootstraps from the final observation. Steps that are not real transitions
(the reset step of a vector env in ``NEXT_STEP`` autoreset mode) must not be added.

Persistence: ``state_dict()`` holds only counters and the layout (small, for the
checkpoint dict); ``save(directory)`` writes the filled part of each storage array as a
``.npy`` side file, and ``load(directory, state)`` reads them back. Give ``save`` a fresh
directory per checkpoint and delete the previous one only after the checkpoint that
names the new one is written: then a crash at any moment leaves a checkpoint whose side
files are complete. ``save`` also writes a manifest last, so side files that do not
belong to the checkpoint's ``state`` (an interrupted save, another save's files) are
detected by ``load`` instead of being loaded silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from toolkit.atomic import atomic_write, fsync_dir
from toolkit.errors import CheckpointError

#: The storage arrays, in the order of their side files.
FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "discounts")
#: Written last by `save`: the state its side files belong to.
MANIFEST = "replay.json"
#: Rows are copied from the memory-mapped side files in chunks of about this many bytes.
_LOAD_CHUNK_BYTES = 64 * 2**20


class ReplayBatch(NamedTuple):
    """A sampled batch of transitions; every tensor has a leading dimension batch_size."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    discounts: torch.Tensor


def _torch_dtype(dtype: np.dtype[Any], what: str) -> torch.dtype:
    try:
        return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    except TypeError as exc:
        raise ValueError(f"replay buffer: {what} dtype {dtype} has no torch equivalent") from exc


def _shape(shape: Sequence[int], what: str) -> tuple[int, ...]:
    result = tuple(int(d) for d in shape)
    if any(d < 0 for d in result):
        raise ValueError(f"replay buffer: {what} shape {result} has a negative dimension")
    return result


class ReplayBuffer:
    """A ring buffer of transitions from `n_envs` envs, stored as tensors on `device`.

    `capacity` counts transitions (not env steps of the vector env). `obs_dtype` and
    `action_dtype` are numpy dtypes, normally ``space.dtype``. Sampling is uniform over
    the filled part, with replacement, drawn with the caller's numpy Generator so that an
    agent that checkpoints its Generator resamples the same batches after a resume.

    The storage tensors are public attributes for reading (``obs``, ``next_obs``,
    ``actions``, ``rewards``, ``terminated``); rows ``[:len(self)]`` are filled, and the
    next transition goes to row ``position``.
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], obs_dtype: Any,
                 action_shape: Sequence[int] = (), action_dtype: Any = np.int64,
                 device: str | torch.device = "cpu", discount: float = 0.99) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) \
                or capacity <= 0:
            raise ValueError(f"replay buffer capacity must be a positive integer, "
                             f"got {capacity!r}")
        self._capacity = int(capacity)
        self.obs_shape = _shape(obs_shape, "observation")
        self.action_shape = _shape(action_shape, "action")
        self.obs_dtype: np.dtype[Any] = np.dtype(obs_dtype)
        self.action_dtype: np.dtype[Any] = np.dtype(action_dtype)
        self.device = torch.device(device)
        self._np_dtypes: dict[str, np.dtype[Any]] = {
            "obs": self.obs_dtype, "next_obs": self.obs_dtype, "actions": self.action_dtype,
            "rewards": np.dtype(np.float32), "terminated": np.dtype(np.float32),
            "discounts": np.dtype(np.float32)}
        self._row_shapes: dict[str, tuple[int, ...]] = {
            "obs": self.obs_shape, "next_obs": self.obs_shape, "actions": self.action_shape,
            "rewards": (), "terminated": (), "discounts": ()}
        #: The discount of a one-step transition: what `add` stores where it is given none,
        #: and `load` where a checkpoint from before discounts were stored has none.
        self.discount = float(discount)
        obs_torch = _torch_dtype(self.obs_dtype, "observation")
        action_torch = _torch_dtype(self.action_dtype, "action")
        n = self._capacity
        self.obs = torch.zeros((n, *self.obs_shape), dtype=obs_torch, device=self.device)
        self.next_obs = torch.zeros((n, *self.obs_shape), dtype=obs_torch, device=self.device)
        self.actions = torch.zeros((n, *self.action_shape), dtype=action_torch,
                                   device=self.device)
        self.rewards = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.terminated = torch.zeros(n, dtype=torch.float32, device=self.device)
        self.discounts = torch.full((n,), self.discount, dtype=torch.float32,
                                    device=self.device)
        self.position = 0
        self.size = 0
        self.added = 0
        # On the CPU, numpy views of the storage tensors (the same memory; the tensors are
        # only ever written in place, so the views stay valid).
        self._host: dict[str, np.ndarray] | None = None
        if self.device.type == "cpu":
            self._host = {name: self._storage(name).numpy() for name in FIELDS}

    @property
    def capacity(self) -> int:
        """How many transitions the buffer holds when full."""
        return self._capacity

    def __len__(self) -> int:
        return self.size

    def _storage(self, name: str) -> torch.Tensor:
        tensor: torch.Tensor = getattr(self, name)
        return tensor

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """One host-to-device transfer of a whole batch."""
        return torch.from_numpy(array).to(self.device)

    def add(self, obs: np.ndarray, next_obs: np.ndarray, actions: np.ndarray,
            rewards: np.ndarray, terminated: np.ndarray,
            discounts: np.ndarray | None = None) -> None:
        """Store one vector-env step: arrays with a leading dimension `n_envs` (or any number
        of transitions, one per row); `discounts` default to the buffer's `discount`.

        `next_obs` is the true next observation (the final one where an episode ended);
        `terminated` (bool or 0/1) is the env's terminated flag, never truncated. Each
        array is cast on the host (same-kind casts only: float64 rewards become float32,
        but float observations are refused by a uint8 buffer) and moved to the device in
        one transfer (on the CPU: copied into the storage, no transfer). A batch larger than
        the capacity keeps its last `capacity` rows.
        """
        if discounts is None:
            discounts = np.full(len(np.asarray(rewards)), self.discount, dtype=np.float32)
        given = {"obs": obs, "next_obs": next_obs, "actions": actions, "rewards": rewards,
                 "terminated": terminated, "discounts": discounts}
        arrays: dict[str, np.ndarray] = {}
        n_envs: int | None = None
        for name in FIELDS:
            array = np.asarray(given[name])
            expected = self._row_shapes[name]
            if array.ndim != len(expected) + 1 or array.shape[1:] != expected:
                want = "".join(f", {d}" for d in expected)
                raise ValueError(f"replay buffer add: {name} has shape {array.shape}, "
                                 f"expected (n_envs{want})")
            if n_envs is None:
                n_envs = array.shape[0]
            elif array.shape[0] != n_envs:
                raise ValueError(f"replay buffer add: {name} has {array.shape[0]} rows but "
                                 f"obs has {n_envs}; pass one row per env")
            try:
                array = array.astype(self._np_dtypes[name], casting="same_kind", copy=False)
            except TypeError as exc:
                raise ValueError(f"replay buffer add: {name} of dtype {array.dtype} cannot be "
                                 f"stored as {self._np_dtypes[name]}") from exc
            arrays[name] = array
        assert n_envs is not None
        if n_envs == 0:
            return
        skip = max(0, n_envs - self._capacity)
        count = n_envs - skip
        start = (self.position + skip) % self._capacity
        first = min(count, self._capacity - start)
        for name in FIELDS:
            rows = arrays[name][skip:]
            if self._host is not None:
                host = self._host[name]
                host[start:start + first] = rows[:first]
                if count > first:
                    host[:count - first] = rows[first:]
                continue
            batch = self._to_device(np.ascontiguousarray(rows))
            storage = self._storage(name)
            storage[start:start + first] = batch[:first]
            if count > first:
                storage[:count - first] = batch[first:]
        self.position = (self.position + n_envs) % self._capacity
        self.size = min(self.size + n_envs, self._capacity)
        self.added += n_envs

    def sample(self, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        """`batch_size` transitions drawn uniformly, with replacement, with `rng`."""
        self._check_sample(batch_size)
        return self._gather(rng.integers(0, self.size, size=batch_size))

    def sample_many(self, n: int, batch_size: int, rng: np.random.Generator) -> ReplayBatch:
        """The `n` batches that `n` calls of ``sample(batch_size, rng)`` would draw, in one
        gather: tensors with leading dimensions ``(n, batch_size)``, and `rng` left in the
        same state. (numpy's Generator fills an array of integers draw by draw, in order.)

        For a round of gradient steps on an unchanging buffer, ``batches.obs[i]`` is then
        a view and the round pays for one gather instead of `n`."""
        self._check_sample(batch_size)
        if n <= 0:
            raise ValueError(f"replay buffer sample_many: n must be positive, got {n}")
        indices = rng.integers(0, self.size, size=n * batch_size)
        batch = self._gather(indices)
        return ReplayBatch(*(t.view(n, batch_size, *t.shape[1:]) for t in batch))

    def _check_sample(self, batch_size: int) -> None:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer; add transitions "
                             "first")
        if batch_size <= 0:
            raise ValueError(f"replay buffer sample: batch_size must be positive, "
                             f"got {batch_size}")

    def _gather(self, indices: np.ndarray) -> ReplayBatch:
        """The rows `indices` of every storage array."""
        if self._host is not None:
            host = self._host
            return ReplayBatch(*(torch.from_numpy(host[name].take(indices, axis=0))
                                 for name in ReplayBatch._fields))
        index = torch.from_numpy(indices).to(self.device)
        return ReplayBatch(obs=self.obs[index], actions=self.actions[index],
                           rewards=self.rewards[index], next_obs=self.next_obs[index],
                           terminated=self.terminated[index],
                           discounts=self.discounts[index])

    def state_dict(self) -> dict[str, Any]:
        """Counters and layout only (the data goes to side files through `save`).

        ``added`` counts every transition ever added: it tells one save from another."""
        return {"position": self.position, "size": self.size, "capacity": self._capacity,
                "added": self.added, **self._layout()}

    def _layout(self) -> dict[str, Any]:
        return {"obs_shape": str(self.obs_shape), "obs_dtype": self.obs_dtype.name,
                "action_shape": str(self.action_shape), "action_dtype": self.action_dtype.name}

    def save(self, directory: Path) -> None:
        """Write the filled rows of each storage array to ``directory/<name>.npy``.

        Each file is written to a temporary file in `directory`, fsynced and renamed, so
        no file is ever half-written. The manifest is removed first and written last:
        side files whose save was interrupted have no manifest, and `load` refuses them.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = directory / MANIFEST
        if manifest.exists():
            manifest.unlink()
            fsync_dir(directory)
        for name in FIELDS:
            array = self._storage(name)[:self.size].cpu().numpy()
            with atomic_write(directory / f"{name}.npy", "wb") as f:
                np.save(f, array, allow_pickle=False)
        with atomic_write(manifest) as f:
            json.dump(self.state_dict(), f, sort_keys=True)

    def load(self, directory: Path, state: dict[str, Any]) -> None:
        """Restore what `save` wrote to `directory`, given the `state_dict()` of that moment.

        Raises CheckpointError when this buffer's layout differs from `state` (capacity,
        shapes, dtypes), when a side file or the manifest is missing, or when the files do
        not belong to `state` or do not have the shapes and dtypes it implies.
        """
        directory = Path(directory)
        missing = [k for k in ("position", "size", "capacity", "added", *self._layout())
                   if k not in state]
        if missing:
            raise CheckpointError(f"replay buffer state lacks {', '.join(missing)}; "
                                  "it was not written by ReplayBuffer.state_dict()")
        mine = {"capacity": self._capacity, **self._layout()}
        differ = [f"{k} {state[k]} (saved) vs {v} (this buffer)" for k, v in mine.items()
                  if state[k] != v]
        if differ:
            raise CheckpointError("the saved replay buffer does not fit this one: "
                                  + "; ".join(differ))
        size, position = int(state["size"]), int(state["position"])
        if not (0 <= size <= self._capacity and 0 <= position < self._capacity
                and (size == self._capacity or position == size)):
            raise CheckpointError(f"replay buffer state is inconsistent: size {size}, "
                                  f"position {position}, capacity {self._capacity}")
        # Side files of checkpoints written before discounts were stored have none: those
        # transitions were all one-step ones, whose discount the buffer holds.
        expected_files = [name for name in FIELDS if name != "discounts"
                          or (directory / "discounts.npy").is_file()]
        absent = [f"{name}.npy" for name in expected_files
                  if not (directory / f"{name}.npy").is_file()]
        if absent:
            raise CheckpointError(f"replay buffer files missing in {directory}: "
                                  f"{', '.join(absent)}")
        manifest = directory / MANIFEST
        if not manifest.is_file():
            raise CheckpointError(f"replay buffer in {directory} has no {MANIFEST}: its save "
                                  "was interrupted; use another checkpoint")
        try:
            written = json.loads(manifest.read_bytes().decode("utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or not JSON
            raise CheckpointError(f"replay buffer manifest {manifest} is unreadable: "
                                  f"{exc}") from exc
        if written != dict(state):
            raise CheckpointError(f"replay buffer files in {directory} are from another save "
                                  f"({written.get('added')} transitions added, the checkpoint "
                                  f"says {state['added']}); use the checkpoint that wrote them")
        arrays: dict[str, np.ndarray] = {}
        for name in expected_files:
            path = directory / f"{name}.npy"
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"replay buffer file {path} is unreadable: {exc}") from exc
            expected = (size, *self._row_shapes[name])
            if array.shape != expected or array.dtype != self._np_dtypes[name]:
                raise CheckpointError(f"replay buffer file {path} holds {array.dtype} "
                                      f"{array.shape}, expected {self._np_dtypes[name]} "
                                      f"{expected}")
            arrays[name] = array
        for name, array in arrays.items():
            storage = self._storage(name)
            row_bytes = max(1, math.prod(array.shape[1:]) * array.itemsize)
            step = max(1, _LOAD_CHUNK_BYTES // row_bytes)
            for begin in range(0, size, step):
                chunk = np.array(array[begin:begin + step])
                storage[begin:begin + len(chunk)] = self._to_device(chunk)
        self.position, self.size, self.added = position, size, int(state["added"])


__all__ = ["FIELDS", "MANIFEST", "ReplayBatch", "ReplayBuffer"]
