from __future__ import annotations

import importlib.metadata as metadata
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit import registry as registry_module
from toolkit.errors import RegistryError
from toolkit.registry import AGENTS, Registry


def test_register_get_and_names() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("alpha", description="the first")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"]
    assert "alpha" in reg
    assert reg.entry("alpha").description == "the first"


def test_description_defaults_to_docstring_first_line() -> None:
    reg: Registry[type] = Registry("thing")

    @reg.register("beta")
    class Beta:
        """Does beta things.

        More text."""

    assert reg.entry("beta").description == "Does beta things."


def test_duplicate_name_raises() -> None:
    reg: Registry[type] = Registry("thing")
    reg.add("x", int)
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add("x", float)


def test_unknown_name_lists_close_matches() -> None:
    reg: Registry[type] = Registry("agent")
    for name in ("qlearning", "dqn", "ppo"):
        reg.add(name, int)
    with pytest.raises(RegistryError) as info:
        reg.get("qlearnin")
    message = str(info.value)
    assert "unknown agent 'qlearnin'" in message
    assert "did you mean: qlearning" in message
    assert "known: dqn, ppo, qlearning" in message


def test_builtin_plugins_come_from_entry_points() -> None:
    assert "qlearning" in AGENTS.names()
    assert AGENTS.entry("qlearning").source == "gymkit"


def _fake_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
                       ) -> list[metadata.EntryPoint]:
    module = tmp_path / "thirdparty_plugin.py"
    module.write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_plugin", raising=False)
    group = registry_module.ENTRY_POINT_GROUP
    eps = [metadata.EntryPoint("thirdparty", "thirdparty_plugin", group)]
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda group: eps)
    monkeypatch.setattr(registry_module, "_loaded", False)
    return eps


def test_third_party_plugin_loads_lazily_at_first_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, """
        from toolkit.registry import AGENTS
        @AGENTS.register("thirdparty-agent", description="from elsewhere")
        class ThirdParty:
            pass
    """)
    try:
        assert "thirdparty_plugin" not in sys.modules
        assert "thirdparty-agent" in AGENTS.names()
        assert "thirdparty_plugin" in sys.modules
        assert AGENTS.entry("thirdparty-agent").description == "from elsewhere"
    finally:
        AGENTS.remove("thirdparty-agent")


def test_broken_plugin_warns_instead_of_breaking_gymkit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, "raise ImportError('missing dependency xyz')\n")
    with pytest.warns(RuntimeWarning, match="missing dependency xyz"):
        names = AGENTS.names()
    assert "qlearning" in names
