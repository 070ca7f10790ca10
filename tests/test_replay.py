"""Unit tests of agents/replay.py: ring storage, sampling, dtypes, side-file persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agents.replay import FIELDS, MANIFEST, ReplayBatch, ReplayBuffer
from toolkit.checkpoint import check_state, load_checkpoint, save_checkpoint
from toolkit.errors import CheckpointError

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def make(capacity: int = 5, device: str = "cpu", obs_dtype: type = np.float32,
         obs_shape: tuple[int, ...] = (2,)) -> ReplayBuffer:
    return ReplayBuffer(capacity, obs_shape, obs_dtype, (), np.int64, device)


def step(ids: list[int], obs_dtype: type = np.float32,
         obs_shape: tuple[int, ...] = (2,)) -> dict[str, np.ndarray]:
    """One vector-env step whose transitions are tagged by `ids` in every array."""
    tags = np.asarray(ids)
    shape = (len(ids), *obs_shape)
    obs = np.broadcast_to(tags.reshape(-1, *[1] * len(obs_shape)), shape)
    return {"obs": obs.astype(obs_dtype), "next_obs": (obs + 100).astype(obs_dtype),
            "actions": tags + 1000, "rewards": tags * 0.5, "terminated": tags % 3 == 0}


def stored_ids(buffer: ReplayBuffer) -> list[int]:
    """The tag of each filled storage row, after checking that all five arrays agree on it."""
    n = len(buffer)
    ids = buffer.obs[:n, 0].cpu().numpy().astype(np.int64)
    np.testing.assert_array_equal(buffer.next_obs[:n, 0].cpu().numpy(), ids + 100)
    np.testing.assert_array_equal(buffer.actions[:n].cpu().numpy(), ids + 1000)
    np.testing.assert_array_equal(buffer.rewards[:n].cpu().numpy(), ids * 0.5)
    np.testing.assert_array_equal(buffer.terminated[:n].cpu().numpy(), (ids % 3 == 0) * 1.0)
    return [int(i) for i in ids]


def filled(ids: list[int], capacity: int = 5, n_envs: int = 3,
           obs_dtype: type = np.float32) -> ReplayBuffer:
    """A buffer of `capacity` after adding `ids` in steps of `n_envs` transitions."""
    buffer = make(capacity, obs_dtype=obs_dtype)
    for begin in range(0, len(ids), n_envs):
        buffer.add(**step(ids[begin:begin + n_envs], obs_dtype))
    return buffer


def test_a_batch_that_straddles_the_end_wraps_around() -> None:
    buffer = make(5)
    buffer.add(**step([0, 1, 2]))
    assert (len(buffer), buffer.position) == (3, 3)
    assert stored_ids(buffer) == [0, 1, 2]
    buffer.add(**step([3, 4, 5]))  # rows 3, 4, then 0
    assert (len(buffer), buffer.position) == (5, 1)
    assert stored_ids(buffer) == [5, 1, 2, 3, 4]
    buffer.add(**step([6, 7, 8]))  # rows 1, 2, 3: the oldest (1, 2, 3) go first
    assert (len(buffer), buffer.position, buffer.capacity) == (5, 4, 5)
    assert stored_ids(buffer) == [5, 6, 7, 8, 4]
    buffer.add(**step([9, 10]))  # rows 4 and 0
    assert (len(buffer), buffer.position) == (5, 1)
    assert stored_ids(buffer) == [10, 6, 7, 8, 9]


def test_a_batch_exactly_filling_the_rest_and_one_larger_than_the_capacity() -> None:
    buffer = make(4)
    buffer.add(**step([1]))
    buffer.add(**step([2, 3, 4]))  # fills rows 1..3 exactly
    assert (len(buffer), buffer.position) == (4, 0)
    assert stored_ids(buffer) == [1, 2, 3, 4]
    buffer.add(**step([5]))
    # 10 transitions from row 1, more than twice the capacity: only the last 4 (12..15)
    # survive, where a ring would have put them: rows 3, 0, 1, 2.
    buffer.add(**step(list(range(6, 16))))
    assert (len(buffer), buffer.position) == (4, 3)
    assert stored_ids(buffer) == [13, 14, 15, 12]
    assert buffer.added == 15


def test_sampling_is_reproducible_with_equal_seeds_and_draws_from_the_callers_rng() -> None:
    buffer = filled(list(range(1, 9)), capacity=10)
    first = buffer.sample(64, np.random.default_rng(7))
    second = buffer.sample(64, np.random.default_rng(7))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)
    rng = np.random.default_rng(7)
    buffer.sample(64, rng)
    other = buffer.sample(64, rng)  # the Generator advanced: another batch
    assert not torch.equal(first.obs, other.obs)
    assert not torch.equal(first.obs, buffer.sample(64, np.random.default_rng(8)).obs)


def test_only_filled_rows_are_sampled_uniformly_and_rows_stay_aligned() -> None:
    buffer = filled(list(range(1, 11)), capacity=100)
    batch = buffer.sample(5000, np.random.default_rng(0))
    assert isinstance(batch, ReplayBatch)
    ids = batch.obs[:, 0].numpy().astype(np.int64)
    counts = np.bincount(ids, minlength=12)
    assert counts[0] == counts[11] == 0  # rows never written (zeros) are never drawn
    assert counts[1:11].min() > 400 and counts[1:11].max() < 600  # 500 expected each
    np.testing.assert_array_equal(batch.next_obs[:, 1].numpy(), ids + 100)
    np.testing.assert_array_equal(batch.actions.numpy(), ids + 1000)
    np.testing.assert_array_equal(batch.rewards.numpy(), ids * 0.5)
    np.testing.assert_array_equal(batch.terminated.numpy(), (ids % 3 == 0) * 1.0)
    assert batch.obs.shape == batch.next_obs.shape == (5000, 2)
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (5000,)


def test_every_row_of_a_full_buffer_can_be_sampled() -> None:
    buffer = filled(list(range(1, 8)), capacity=5)  # wrapped: holds 3..7
    ids = buffer.sample(2000, np.random.default_rng(1)).obs[:, 0].numpy().astype(np.int64)
    assert set(ids.tolist()) == {3, 4, 5, 6, 7}


def test_sampling_an_empty_buffer_or_a_bad_batch_size_is_an_error() -> None:
    buffer = make(5)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buffer.sample(1, np.random.default_rng(0))
    buffer.add(**step([1]))
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        buffer.sample(0, np.random.default_rng(0))


@pytest.mark.parametrize("capacity", [0, -3])
def test_a_non_positive_capacity_is_a_one_line_value_error(capacity: int) -> None:
    with pytest.raises(ValueError, match=f"capacity must be a positive integer, got {capacity}"
                       ) as info:
        make(capacity)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("obs_dtype", "torch_dtype"), [
    (np.uint8, torch.uint8), (np.bool_, torch.bool), (np.float32, torch.float32)])
def test_observation_dtypes_are_kept_in_storage_and_batches(obs_dtype: type,
                                                            torch_dtype: torch.dtype) -> None:
    buffer = ReplayBuffer(8, (4, 3, 3), obs_dtype, (2,), np.float32)
    obs: np.ndarray = np.random.default_rng(0).integers(0, 2, size=(2, 4, 3, 3)).astype(obs_dtype)
    buffer.add(obs, obs, np.ones((2, 2)), np.array([1.0, 2.0]), np.array([False, True]))
    assert buffer.obs.dtype == buffer.next_obs.dtype == torch_dtype
    batch = buffer.sample(3, np.random.default_rng(0))
    assert batch.obs.dtype == batch.next_obs.dtype == torch_dtype
    assert batch.actions.dtype == batch.rewards.dtype == batch.terminated.dtype == torch.float32
    assert batch.obs.shape == (3, 4, 3, 3) and batch.actions.shape == (3, 2)
    np.testing.assert_array_equal(buffer.obs[:2].numpy(), obs)


def test_uint8_frames_and_integer_actions_keep_their_values() -> None:
    buffer = ReplayBuffer(4, (2,), np.uint8, (), np.int64)
    frames = np.array([[0, 255], [17, 200]], dtype=np.uint8)
    buffer.add(frames, frames[::-1], np.array([3, 1]), np.array([1, -1]), np.array([0, 1]))
    assert buffer.obs.dtype == torch.uint8 and buffer.actions.dtype == torch.int64
    np.testing.assert_array_equal(buffer.obs[:2].numpy(), frames)
    np.testing.assert_array_equal(buffer.next_obs[:2].numpy(), frames[::-1])
    assert buffer.actions[:2].tolist() == [3, 1]
    assert buffer.rewards[:2].tolist() == [1.0, -1.0]
    assert buffer.terminated[:2].tolist() == [0.0, 1.0]


def test_add_refuses_wrong_shapes_row_counts_and_unsafe_casts() -> None:
    buffer = ReplayBuffer(4, (2,), np.uint8)
    good = step([1, 2], np.uint8)
    with pytest.raises(ValueError, match=r"obs has shape \(2, 3\), expected \(n_envs, 2\)"):
        buffer.add(**{**good, "obs": np.zeros((2, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"rewards has 3 rows but obs has 2"):
        buffer.add(**{**good, "rewards": np.zeros(3)})
    with pytest.raises(ValueError, match=r"actions has shape \(2, 1\), expected \(n_envs\)"):
        buffer.add(**{**good, "actions": np.zeros((2, 1), np.int64)})
    with pytest.raises(ValueError, match=r"next_obs of dtype float64 cannot be stored as uint8"):
        buffer.add(**{**good, "next_obs": np.zeros((2, 2))})
    assert len(buffer) == 0 and buffer.position == 0


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
def test_storage_and_batches_live_on_the_configured_device(device: str) -> None:
    # "meta" tensors have no data: it shows that the device is honoured without a GPU.
    buffer = make(5, device)
    buffer.add(**step([0, 1, 2]))
    buffer.add(**step([3, 4, 5]))
    for name in FIELDS:
        assert getattr(buffer, name).device.type == device
    batch = buffer.sample(4, np.random.default_rng(0))
    assert all(t.device.type == device for t in batch)


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
def test_add_moves_each_array_to_the_device_in_one_transfer(device: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    # On the CPU the rows are copied into the storage through numpy views: no transfer.
    buffer = make(5, device)
    buffer.add(**step([0, 1, 2]))
    moved: list[tuple[int, ...]] = []
    original = buffer._to_device

    def counting(array: np.ndarray) -> torch.Tensor:
        moved.append(array.shape)
        return original(array)

    monkeypatch.setattr(buffer, "_to_device", counting)
    buffer.add(**step([3, 4, 5, 6]))  # straddles the end: still one transfer per array
    assert moved == ([] if device == "cpu" else [(4, 2), (4, 2), (4,), (4,), (4,), (4,)])
    if device != "meta":  # meta tensors hold no values
        assert stored_ids(buffer) == [5, 6, 2, 3, 4]


@pytest.mark.parametrize("device", DEVICES)
def test_sample_many_draws_what_as_many_samples_would(device: str) -> None:
    buffer = make(10, device)
    buffer.add(**step(list(range(1, 9))))
    one_by_one, at_once = np.random.default_rng(4), np.random.default_rng(4)
    expected = [buffer.sample(6, one_by_one) for _ in range(5)]
    batches = buffer.sample_many(5, 6, at_once)
    assert batches.obs.shape == (5, 6, 2) and batches.actions.shape == (5, 6)
    for i, batch in enumerate(expected):
        for a, b in zip(batch, batches, strict=True):
            assert torch.equal(a, b[i])
    # The Generator is left where the single draws leave it.
    assert one_by_one.bit_generator.state == at_once.bit_generator.state
    with pytest.raises(ValueError, match="n must be positive"):
        buffer.sample_many(0, 6, at_once)
    with pytest.raises(ValueError, match="empty replay buffer"):
        make(5).sample_many(2, 6, at_once)


def test_state_dict_is_small_and_fits_in_a_checkpoint(tmp_path: Path) -> None:
    buffer = filled(list(range(7)), capacity=5)
    state = buffer.state_dict()
    assert state == {"position": 2, "size": 5, "capacity": 5, "added": 7,
                     "obs_shape": "(2,)", "obs_dtype": "float32",
                     "action_shape": "()", "action_dtype": "int64"}
    check_state(state, "replay")
    save_checkpoint(tmp_path / "last.pt", {"replay": state})
    assert load_checkpoint(tmp_path / "last.pt")["replay"] == state


@pytest.mark.parametrize("ids", [list(range(3)), list(range(13))], ids=["partial", "wrapped"])
def test_save_then_load_into_a_fresh_buffer_restores_storage_and_counters(
        tmp_path: Path, ids: list[int]) -> None:
    buffer = filled(ids, capacity=5, obs_dtype=np.uint8)
    buffer.save(tmp_path / "replay")
    files = sorted(p.name for p in (tmp_path / "replay").iterdir())
    assert files == sorted([*(f"{n}.npy" for n in FIELDS), MANIFEST])  # no temp files left
    assert np.load(tmp_path / "replay" / "obs.npy").shape == (len(buffer), 2)  # filled rows
    fresh = make(5, obs_dtype=np.uint8)
    fresh.load(tmp_path / "replay", buffer.state_dict())
    assert fresh.state_dict() == buffer.state_dict()
    for name in FIELDS:
        assert torch.equal(getattr(fresh, name), getattr(buffer, name))
    for each in (buffer, fresh):  # and they go on identically
        each.add(**step([20, 21, 22], np.uint8))
    for name in FIELDS:
        assert torch.equal(getattr(fresh, name), getattr(buffer, name))
    for a, b in zip(buffer.sample(16, np.random.default_rng(3)),
                    fresh.sample(16, np.random.default_rng(3)), strict=True):
        assert torch.equal(a, b)


def test_load_copies_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agents.replay._LOAD_CHUNK_BYTES", 16)  # two float32 obs rows
    buffer = filled(list(range(9)), capacity=7)
    buffer.save(tmp_path)
    fresh = make(7)
    fresh.load(tmp_path, buffer.state_dict())
    assert stored_ids(fresh) == stored_ids(buffer) == [7, 8, 2, 3, 4, 5, 6]


def test_load_names_missing_files(tmp_path: Path) -> None:
    buffer = filled([1, 2, 3])
    buffer.save(tmp_path)
    (tmp_path / "rewards.npy").unlink()
    (tmp_path / "actions.npy").unlink()
    with pytest.raises(CheckpointError, match=r"files missing in .*: actions.npy, rewards.npy"):
        make().load(tmp_path, buffer.state_dict())
    with pytest.raises(CheckpointError, match=r"missing .*obs.npy"):
        make().load(tmp_path / "nowhere", buffer.state_dict())


def test_load_into_a_buffer_of_another_layout_says_what_differs(tmp_path: Path) -> None:
    buffer = filled([1, 2, 3])
    buffer.save(tmp_path)
    state = buffer.state_dict()
    with pytest.raises(CheckpointError, match=r"obs_shape \(2,\) \(saved\) vs \(3,\) \(this"):
        make(obs_shape=(3,)).load(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"obs_dtype float32 \(saved\) vs uint8"):
        make(obs_dtype=np.uint8).load(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"capacity 5 \(saved\) vs 6"):
        make(6).load(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"lacks added"):
        make().load(tmp_path, {k: v for k, v in state.items() if k != "added"})


def test_load_refuses_files_whose_shape_or_dtype_does_not_match(tmp_path: Path) -> None:
    buffer = filled([1, 2, 3])
    buffer.save(tmp_path)
    np.save(tmp_path / "next_obs.npy", np.zeros((3, 4), np.float32))
    with pytest.raises(CheckpointError, match=r"next_obs.npy holds float32 \(3, 4\), "
                                              r"expected float32 \(3, 2\)"):
        make().load(tmp_path, buffer.state_dict())
    np.save(tmp_path / "next_obs.npy", np.zeros((3, 2), np.float64))
    with pytest.raises(CheckpointError, match=r"holds float64 \(3, 2\), expected float32"):
        make().load(tmp_path, buffer.state_dict())


def test_load_refuses_files_of_another_save_or_an_interrupted_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = filled([1, 2, 3])
    buffer.save(tmp_path)
    old_state = buffer.state_dict()
    buffer.add(**step([4]))
    buffer.save(tmp_path)
    with pytest.raises(CheckpointError, match=r"from another save \(4 transitions added, "
                                              r"the checkpoint says 3\)"):
        make().load(tmp_path, old_state)
    buffer.add(**step([5]))
    calls: list[str] = []
    original_save = np.save

    def failing_save(file: object, array: np.ndarray, **kwargs: object) -> None:
        calls.append("save")
        if len(calls) == 2:
            raise OSError("disk full")
        original_save(file, array, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        buffer.save(tmp_path)
    monkeypatch.undo()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(CheckpointError, match=r"no replay.json: its save was interrupted"):
        make().load(tmp_path, buffer.state_dict())
    with pytest.raises(CheckpointError, match=r"interrupted"):
        make().load(tmp_path, old_state)


def test_load_refuses_an_inconsistent_state(tmp_path: Path) -> None:
    buffer = filled([1, 2, 3])
    buffer.save(tmp_path)
    with pytest.raises(CheckpointError, match=r"inconsistent: size 3, position 1"):
        make().load(tmp_path, {**buffer.state_dict(), "position": 1})


def test_discounts_are_stored_sampled_and_default_to_the_buffers(tmp_path: Path) -> None:
    buffer = ReplayBuffer(4, (2,), np.float32, (), np.int64, "cpu", discount=0.9)
    buffer.add(**step([1, 2]))  # one-step transitions: the buffer's discount
    buffer.add(**step([3]), discounts=np.array([0.25]))  # an n-step one
    np.testing.assert_allclose(buffer.discounts[:3].numpy(), [0.9, 0.9, 0.25])
    batch = buffer.sample(8, np.random.default_rng(0))
    tags = batch.obs[:, 0].numpy().astype(int)
    np.testing.assert_allclose(batch.discounts.numpy(), np.where(tags == 3, 0.25, 0.9))
    # The side files of a checkpoint from before discounts were stored have none: their
    # transitions were one-step ones, and load keeps the buffer's own discount.
    buffer.save(tmp_path)
    (tmp_path / "discounts.npy").unlink()
    fresh = ReplayBuffer(4, (2,), np.float32, (), np.int64, "cpu", discount=0.9)
    fresh.load(tmp_path, buffer.state_dict())
    np.testing.assert_allclose(fresh.discounts[:3].numpy(), [0.9, 0.9, 0.9])
    assert torch.equal(fresh.rewards, buffer.rewards)
