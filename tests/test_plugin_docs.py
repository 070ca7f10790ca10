"""docs/plugins.md cannot rot: its python blocks run, and what they register keeps the contract.

The blocks run in order in one module namespace, as a plugin module would; tracebacks point
at the doc's own lines. Whatever they register is removed again afterwards.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from toolkit import launch
from toolkit.config import RunSettings
from toolkit.data import DATASETS
from toolkit.environments import ENVS
from toolkit.registry import AGENTS, GENERATIVE, Registry
from toolkit.testing import check_plugin

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
MODULE = "gymkit_plugin_docs"
REGISTRIES: dict[str, Registry[Any]] = {"agent": AGENTS, "generative": GENERATIVE,
                                        "env": ENVS, "dataset": DATASETS}
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def code_blocks(text: str, language: str | None = None) -> list[tuple[int, str]]:
    """(first line number, code) of each fenced block, of one language or all."""
    return [(text.count("\n", 0, m.start(2)) + 1, m.group(2)) for m in _FENCE.finditer(text)
            if language is None or m.group(1) == language]


def _names() -> dict[str, set[tuple[str, str]]]:
    return {kind: {(e.name, e.source) for e in reg.entries()} for kind, reg in REGISTRIES.items()}


@pytest.fixture(scope="module")
def doc() -> Iterator[tuple[dict[str, Any], dict[str, list[str]]]]:
    """The namespace the doc's blocks ran in, and the names they registered, per registry."""
    before = _names()
    module = types.ModuleType(MODULE)
    sys.modules[MODULE] = module  # dataclasses and typing look classes' modules up there
    try:
        for line, code in code_blocks(DOC.read_text(encoding="utf-8"), "python"):
            exec(compile("\n" * (line - 1) + code, str(DOC), "exec"), module.__dict__)
        added = {kind: sorted(name for name, _ in _names()[kind] - before[kind])
                 for kind in REGISTRIES}
        yield module.__dict__, added
    finally:
        for kind, reg in REGISTRIES.items():
            for name, source in _names()[kind] - before[kind]:
                reg.remove(name, source)
        del sys.modules[MODULE]


def test_the_doc_registers_one_plugin_of_each_kind(doc: tuple[dict, dict]) -> None:
    _, added = doc
    assert {kind: len(names) for kind, names in added.items()} == \
        {"agent": 1, "generative": 1, "env": 1, "dataset": 1}, added
    for kind, names in added.items():
        sources = [e.source for e in REGISTRIES[kind].entries() if e.name == names[0]]
        assert len(sources) == 1, f"the doc's {kind} '{names[0]}' clashes: {sources}"


def test_the_example_agent_keeps_the_contract_on_taxi(doc: tuple[dict, dict]) -> None:
    _, added = doc
    check_plugin(AGENTS.get(added["agent"][0]), "taxi", overrides={"episodes_per_call": 3})


def test_the_example_generative_trainer_keeps_the_contract(doc: tuple[dict, dict]) -> None:
    _, added = doc
    check_plugin(GENERATIVE.get(added["generative"][0]), added["dataset"][0],
                 overrides={"batch_size": 400})


def test_the_docs_own_tests_pass(doc: tuple[dict, dict]) -> None:
    namespace, _ = doc
    tests: list[Callable[[], None]] = [f for name, f in namespace.items()
                                       if name.startswith("test_") and callable(f)]
    assert len(tests) == 2
    for test in tests:
        test()


def test_the_env_preset_trains_its_default_agent(doc: tuple[dict, dict],
                                                 tmp_path: Path) -> None:
    _, added = doc
    prepared = launch.prepare("agent", added["env"][0], assignments=["final_eval_episodes=20"])
    assert prepared.spec["plugin"] == added["agent"][0]
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    assert result.status == "completed"
    assert result.summary["final_eval"]["eval/success_rate"] == 1.0  # a corridor, 5,000 steps


def test_the_generative_trainer_reaches_the_stated_optimum(doc: tuple[dict, dict],
                                                            tmp_path: Path) -> None:
    _, added = doc
    prepared = launch.prepare("generative", None, added["generative"][0],
                              flags={"epochs": 5})
    assert prepared.spec["target"] == added["dataset"][0]  # the trainer's default dataset
    runner = launch.start(prepared, tmp_path, quiet=True)
    result = runner.run()
    runner.trainer.close()
    # The doc says: 28.3 nats per image at best (64 independent Bernoulli(0.1625) pixels).
    assert abs(result.summary["final_eval"]["eval/loss"] - 28.3) < 0.3  # one epoch: 28.66


def test_the_doc_has_no_elided_code_and_names_every_run_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "..." not in text, "write the code out in full"
    # Code in a block of another language would not run here.
    assert {m.group(1) for m in _FENCE.finditer(text)} <= {"python", "toml", "bash"}
    missing = [name for name in RunSettings.field_names() if f"`{name}`" not in text]
    assert not missing, f"the run settings a config must not reuse lack {missing}"


def test_the_entry_point_declaration_is_valid_toml() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    (_, block), = code_blocks(DOC.read_text(encoding="utf-8"), "toml")
    group = tomllib.loads(block)["project"]["entry-points"]["gymkit.plugins"]
    assert group and all(":" not in value for value in group.values())  # modules, not objects


def test_code_blocks_are_found_with_their_line_numbers() -> None:
    text = "intro\n```python\nx = 1\n```\n\n```toml\n[a]\n```\n"
    assert code_blocks(text) == [(3, "x = 1\n"), (7, "[a]\n")]
    assert code_blocks(text, "python") == [(3, "x = 1\n")]
