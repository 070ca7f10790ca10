"""The GPU claims of docs/reproducibility.md and `--device cuda` for every torch plugin.

These run only where CUDA is available (a GPU machine; CI has none), and skip elsewhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_reproduce import RUNS, invoke, read_metrics, reproduce, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: run on a GPU machine (CI has none)")

#: Every plugin that runs on torch (the tabular agents have no device).
TORCH_PLUGINS = [name for name in RUNS if name not in ("qlearning", "expected-sarsa")]
#: How far a GPU rerun may drift: relative and absolute, per logged float.
RTOL, ATOL = 1e-4, 1e-6


def close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL)
    return a == b


@pytest.mark.parametrize("name", TORCH_PLUGINS)
def test_a_gpu_run_reruns_within_a_tolerance(name: str, tmp_path: Path) -> None:
    original = train(tmp_path, name, "--device", "cuda")
    assert json.loads((original / "config.json").read_text())["run"]["device"] == "cuda"
    code, out, rerun = reproduce(original)
    assert rerun is not None and code in (0, 1), out
    first, second = read_metrics(original / "metrics.jsonl"), read_metrics(rerun / "metrics.jsonl")
    assert len(first) == len(second) >= 2
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        differ = {k: (a[k], b[k]) for k in a if not close(a[k], b[k])}
        assert not differ, f"step {a.get('step')}: {differ}"
    # Which plugins rerun bit for bit on this GPU is reported, not promised.
    print(f"{name}: {'identical' if code == 0 else 'close, not identical'}")


@pytest.mark.parametrize("name", ["dqn", "ppo", "vae"])
def test_a_gpu_run_evaluates_on_the_cpu(name: str, tmp_path: Path) -> None:
    run = train(tmp_path, name, "--device", "cuda")
    code, out = invoke("eval", str(run), "--device", "cpu", "--episodes", "2")
    assert code == 0, out


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_pixel_agent_trains_on_the_gpu(device: str) -> None:
    # --device auto sends an agent on image observations to the GPU (launch.auto_agent_device).
    from toolkit import launch

    prepared = launch.prepare("agent", "minatar-breakout", "dqn",
                              assignments=["learning_starts=32", "steps_per_call=64"],
                              flags={"seed": 0, "steps": 128, "device": device})
    agent = prepared.trainer
    try:
        agent.train_step()
        devices = {p.device.type for module, _ in agent.networks().values()
                   for p in module.parameters()}
    finally:
        agent.close()
    assert agent.ctx.device.startswith("cuda") and devices == {"cuda"}
    assert "device_note" not in prepared.spec
