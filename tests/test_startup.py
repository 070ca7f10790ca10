"""What starts fast stays fast: commands that need no tensors never import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SNIPPET = """
import sys
from typer.testing import CliRunner
from toolkit.cli import app
result = CliRunner().invoke(app, {args})
assert result.exit_code == {code}, result.output
print("torch" in sys.modules)
"""


def _imports_torch(args: list[str], code: int = 0) -> bool:
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(args=args, code=code)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1] == "True"


def test_a_tabular_run_and_its_eval_never_import_torch(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not _imports_torch(["run", "agent", "frozenlake", "--steps", "500", "-q",
                               "--runs-dir", str(runs)])
    (run,) = runs.iterdir()
    assert not _imports_torch(["eval", str(run), "--episodes", "5"])


def test_list_and_errors_never_import_torch() -> None:
    assert not _imports_torch(["list"])
    assert not _imports_torch(["run", "agent", "nosuchenv"], code=2)
    assert not _imports_torch(["run", "agent", "frozenlake", "--set", "gama=1"], code=2)
