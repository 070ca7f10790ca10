"""`make run` installs what running needs and `make test` the test extras besides: a
newcomer's FrozenLake demo does not pull in Ray, SB3 or the Atari envs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installs(target: str, folder: Path) -> list[str]:
    """The pip installs that `make TARGET` would run in a clean clone (`make -n`)."""
    out = subprocess.run(["make", "-n", target], cwd=folder, capture_output=True, text=True,
                         check=True).stdout
    return [line for line in out.splitlines() if "pip install" in line]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_installs_no_extra_and_make_test_the_dev_one(tmp_path: Path) -> None:
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    run = _installs("run", tmp_path)
    assert any(line.endswith("-e .") for line in run), run
    assert not any("[" in line for line in run), run
    test = _installs("test", tmp_path)
    assert any(line.endswith('-e ".[dev]"') for line in test), test
