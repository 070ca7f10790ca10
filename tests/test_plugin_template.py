"""`gymkit new plugin`: the package it writes installs, registers and passes its own tests;
examples/plugin-template is exactly what it writes; bad names and existing folders are refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit import scaffold
from toolkit.cli import app

BIN = Path(sys.executable).parent


def new(name: str, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["new", "plugin", *options, "--", name])
    return result.exit_code, result.output


def files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_example_is_what_the_scaffold_writes() -> None:
    problems = scaffold.example_differences()
    assert not problems, ("examples/plugin-template is out of date with toolkit/scaffold.py "
                          f"({'; '.join(problems)}); edit the templates in toolkit/scaffold.py, "
                          "then run: python -m toolkit.scaffold --regenerate-example")


@pytest.mark.parametrize(("kind", "modules"), [
    (None, {"agent", "envs", "data", "generative"}),
    ("agent", {"agent", "envs"}),
    ("generative", {"data", "generative"}),
])
def test_a_new_package_is_renamed_throughout(tmp_path: Path, kind: str | None,
                                             modules: set[str]) -> None:
    code, output = new("acme-rl", "--dir", str(tmp_path / "pkg"),
                       *(["--kind", kind] if kind else []))
    assert code == 0, output
    written = files(tmp_path / "pkg")
    assert {Path(p).stem for p in written if p.startswith("src/acme_rl/")} == {"__init__", *modules}
    for path, text in written.items():
        assert "template" not in (path + text).lower(), f"{path} still says 'template'"
        assert "{{" not in text, f"{path} has a placeholder left"
    pyproject = written["pyproject.toml"]
    assert 'name = "acme-rl"' in pyproject
    assert {m for m in modules if f'= "acme_rl.{m}"' in pyproject} == modules
    assert pyproject.count('= "acme_rl.') == len(modules)  # entry points of this kind only
    for what, name in scaffold.registered("acme-rl", scaffold.KINDS if kind is None else [kind]):
        assert name in output and f"`{name}`" in written["README.md"], what


def test_a_new_package_is_lint_clean_under_the_longest_name(tmp_path: Path) -> None:
    name = "a" * (scaffold.MAX_NAME_LENGTH - 3) + "-b2"
    assert new(name, "--dir", str(tmp_path / "pkg"))[0] == 0
    lint = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", str(tmp_path / "pkg")],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("name", ["", "Acme", "acme_rl", "1acme", "acme--rl", "acme-", "-acme",
                                  "acme rl", "a" * (scaffold.MAX_NAME_LENGTH + 1), "class",
                                  "json", "toolkit", "gymkit"])
def test_an_unusable_name_is_refused_in_one_line(tmp_path: Path, name: str) -> None:
    code, output = new(name, "--dir", str(tmp_path / "pkg"))
    assert code == 2
    assert output.startswith("error: ") and output.count("\n") == 1, output
    assert not (tmp_path / "pkg").exists()


def test_an_existing_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "acme-rl").mkdir()
    (tmp_path / "acme-rl" / "mine.txt").write_text("keep me")
    code, output = new("acme-rl", "--dir", str(tmp_path / "acme-rl"))
    assert code == 2 and "already exists" in output and output.count("\n") == 1, output
    assert files(tmp_path / "acme-rl") == {"mine.txt": "keep me"}


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    code, _ = new("acme-rl", "--kind", "robot", "--dir", str(tmp_path / "pkg"))
    assert code == 2
    assert not (tmp_path / "pkg").exists()


@pytest.mark.slow
def test_a_new_package_installs_and_passes_its_own_tests(tmp_path: Path) -> None:
    """Built and installed as pip would for a user, into a folder of its own rather than the
    shared venv: an installed plugin would change what every other gymkit process sees."""
    package, site = tmp_path / "acme-rl", tmp_path / "site"
    assert new("acme-rl", "--dir", str(package))[0] == 0
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(site), str(package)],
        capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=package, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "10 passed" in tests.stdout, tests.stdout[-2000:]
