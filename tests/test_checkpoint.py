from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from toolkit.checkpoint import load_checkpoint, save_checkpoint
from toolkit.errors import CheckpointError
from toolkit.seeding import global_rng_state, numpy_rng_state, set_global_rng_state


def test_round_trip_keeps_tensors_numbers_rng_states(tmp_path: Path) -> None:
    payload = {"q": torch.arange(6.0).reshape(2, 3), "steps": 7, "name": "x", "none": None,
               "rng": numpy_rng_state(np.random.default_rng(3)), "global": global_rng_state()}
    path = save_checkpoint(tmp_path / "c.pt", payload)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["q"], payload["q"])
    assert loaded["steps"] == 7 and loaded["name"] == "x" and loaded["none"] is None
    assert loaded["rng"] == payload["rng"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"], "temporary file left behind"


def test_global_rng_state_restores_every_generator() -> None:
    state = global_rng_state()
    first = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    set_global_rng_state(state)
    second = (np.random.rand(), torch.rand(1).item(), __import__("random").random())
    assert first == second


def test_truncated_checkpoint_gives_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"q": torch.zeros(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupted or not a gymkit checkpoint"):
        load_checkpoint(path)


class Exploit:
    def __reduce__(self) -> tuple:
        return (Path("/tmp/gymkit-pwned").touch, ())


def test_foreign_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    target = Path("/tmp/gymkit-pwned")
    target.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"format": "gymkit-checkpoint", "payload": Exploit()}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not target.exists()
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)


def test_checkpoint_without_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a gymkit checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")


def test_plain_data_is_written_as_json_and_read_back_exactly(tmp_path: Path) -> None:
    payload = {"q": [[0.1, -0.0, 1e-300], [float("inf"), 2.5, 3.0]], "n": 2**70, "ok": True,
               "rng": global_rng_state()["python"], "none": None}
    if "torch" in __import__("sys").modules:
        payload.pop("rng")
    path = save_checkpoint(tmp_path / "plain.pt", payload)
    assert path.read_bytes().startswith(b"{")
    loaded = load_checkpoint(path)
    assert {k: loaded[k] for k in payload} == payload


def test_a_tensor_makes_it_a_torch_checkpoint(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "t.pt", {"w": torch.ones(2), "pair": (1, 2), "d": {3: 4}})
    assert path.read_bytes().startswith(b"PK")
    loaded = load_checkpoint(path)
    assert loaded["pair"] == (1, 2) and loaded["d"] == {3: 4}


@pytest.mark.parametrize(("value", "where", "fix"), [
    (np.zeros(3), "checkpoint['trainer']['q']", "torch.from_numpy(array) or array.tolist()"),
    (np.float32(1.0), "checkpoint['trainer']['q']", "float(x) or int(x)"),
    (np.float64(1.0), "checkpoint['trainer']['q']", "float(x) or int(x)"),  # a float subclass
    ({1.5: 2}, "checkpoint['trainer']['q']", "use strings or integers as keys"),
    (object(), "checkpoint['trainer']['q']", "store its state as tensors"),
])
def test_a_state_that_a_checkpoint_cannot_hold_is_named(tmp_path: Path, value: object,
                                                        where: str, fix: str) -> None:
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path / "c.pt", {"trainer": {"steps": 1, "q": value}})
    assert where in str(info.value) and fix in str(info.value)
    assert not (tmp_path / "c.pt").exists()


def test_a_checkpoint_missing_its_parts_is_named(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "header.pt", {})
    with pytest.raises(CheckpointError, match=r"incomplete \(no 'trainer', 'loop'\)"):
        load_checkpoint(path, require=("trainer", "loop"))


def test_a_pickled_object_gives_one_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"format": "gymkit-checkpoint", "q": np.zeros(3)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "not plain data" in message and "\x1b" not in message and "\n" not in message


def test_a_checkpoint_written_on_a_gpu_loads_on_the_cpu(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.save tags each storage with its device; a GPU run's last.pt says "cuda:0". The
    # tag is forged here, so that a CPU-only machine checks what it does with one: tensors
    # land on the CPU (`gymkit eval --device cpu` of a GPU run), not "Attempting to
    # deserialize object on a CUDA device".
    import torch.serialization

    with monkeypatch.context() as patch:
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_checkpoint(tmp_path / "last.pt", {"trainer": {"w": torch.arange(3.0)}})
    with zipfile.ZipFile(tmp_path / "last.pt") as archive:
        (pickled,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        assert b"cuda:0" in archive.read(pickled)
    weights = load_checkpoint(tmp_path / "last.pt")["trainer"]["w"]
    assert weights.device.type == "cpu" and weights.tolist() == [0.0, 1.0, 2.0]
