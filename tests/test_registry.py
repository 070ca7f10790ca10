from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import textwrap
from pathlib import Path

import pytest

from toolkit import registry as registry_module
from toolkit.errors import GymkitError, RegistryError
from toolkit.registry import AGENTS, GENERATIVE, Registry


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


def _fake_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       modules: dict[str, str]) -> None:
    """Entry points of fake distributions: {distribution name: module source}."""
    group = registry_module.ENTRY_POINT_GROUP
    eps = []
    for dist_name, body in modules.items():
        module = f"fake_{dist_name.replace('-', '_')}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(body))
        monkeypatch.delitem(sys.modules, module, raising=False)
        ep = metadata.EntryPoint("plugins", module, group)
        eps.append(_with_dist(ep, dist_name))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = list(metadata.entry_points(group=group))
    monkeypatch.setattr(registry_module.metadata, "entry_points",
                        lambda group: [*reversed(eps), *real])
    monkeypatch.setattr(registry_module, "_loaded", False)
    monkeypatch.setattr(registry_module, "load_problems", [])
    for reg in (AGENTS, GENERATIVE):
        monkeypatch.setattr(reg, "_entries", {})
    for name in [m for m in sys.modules if m == "agents" or m.startswith("agents.")]:
        monkeypatch.delitem(sys.modules, name)  # imported again, so they register again


def _with_dist(ep: metadata.EntryPoint, dist_name: str) -> metadata.EntryPoint:
    class FakeDist:
        name = dist_name

    return ep._for(FakeDist())  # type: ignore[attr-defined]


AGENT_MODULE = """
    from dataclasses import dataclass
    from toolkit.config import TrainerConfig, param
    from toolkit.registry import AGENTS
    from agents.qlearning import QLearning

    @AGENTS.register("{name}", description="from {dist}")
    class Copy(QLearning):
        pass
"""


def test_third_party_plugin_loads_lazily_at_first_lookup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, {
        "thirdparty": AGENT_MODULE.format(name="thirdparty-agent", dist="thirdparty")})
    assert "fake_thirdparty" not in sys.modules
    assert "thirdparty-agent" in AGENTS.names()
    assert "fake_thirdparty" in sys.modules
    entry = AGENTS.entry("thirdparty-agent")
    assert entry.description == "from thirdparty" and entry.source == "thirdparty"


def test_broken_plugin_warns_instead_of_breaking_gymkit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, {"broken": "raise ImportError('no xyz')\n"})
    with pytest.warns(RuntimeWarning, match="no xyz"):
        names = AGENTS.names()
    assert "qlearning" in names
    with pytest.raises(RegistryError, match="from broken failed to load: no xyz"):
        AGENTS.get("missing-agent")


def test_a_name_clash_fails_only_where_the_name_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(tmp_path, monkeypatch, {
        "zz-plugins": AGENT_MODULE.format(name="qlearning", dist="zz-plugins"),
        "aa-plugins": AGENT_MODULE.format(name="qlearning", dist="aa-plugins")})
    assert AGENTS.clashes() == {"qlearning": ["gymkit", "aa-plugins", "zz-plugins"]}
    assert [n for n in AGENTS.names() if n.endswith("qlearning")] == [
        "aa-plugins:qlearning", "gymkit:qlearning", "zz-plugins:qlearning"]
    with pytest.raises(RegistryError) as info:
        AGENTS.get("qlearning")
    message = str(info.value)
    assert "registered by 3 packages" in message
    assert "gymkit:qlearning or aa-plugins:qlearning or zz-plugins:qlearning" in message
    assert AGENTS.entry("gymkit:qlearning").source == "gymkit"
    assert AGENTS.entry("zz_plugins:qlearning").description == "from zz-plugins"
    # the order of loading never depends on the order entry points are listed in
    assert [e.source for e in AGENTS.entries() if e.name == "qlearning"] == [
        "aa-plugins", "gymkit", "zz-plugins"]


def test_a_run_with_a_qualified_name_records_and_resumes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolkit import launch

    _fake_entry_points(tmp_path, monkeypatch, {
        "other": AGENT_MODULE.format(name="qlearning", dist="other")})
    prepared = launch.prepare("agent", "frozenlake", "gymkit:qlearning", flags={"steps": 10})
    assert prepared.spec["plugin"] == "qlearning"
    assert prepared.spec["plugin_package"]["name"] == "gymkit"
    runner = launch.start(prepared, tmp_path / "runs", quiet=True)
    runner.request_stop()
    runner.run()
    resumed, _ = launch.resume(runner.rundir.path, quiet=True)
    assert type(resumed.trainer).__module__ == "agents.qlearning"


@pytest.mark.parametrize(("body", "message"), [
    ("""
        class Config(TrainerConfig):
            lr: float = param(0.1, "rate")
     """, "is not a dataclass, so its fields (lr) are ignored"),
    ("""
        @dataclass
        class Config:
            lr: float = 0.1
     """, "must be a class derived from toolkit.config.TrainerConfig"),
    ("""
        @dataclass
        class Config(TrainerConfig):
            steps: int = param(10, "steps per update")
     """, "field 'steps' has the name of a run setting"),
])
def test_registration_checks_name_the_mistake(body: str, message: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = textwrap.dedent("""
        from dataclasses import dataclass
        from toolkit.config import TrainerConfig, param
        from toolkit.registry import AGENTS
        from agents.qlearning import QLearning
    """) + textwrap.dedent(body) + textwrap.dedent("""
        @AGENTS.register("mistaken")
        class Mistaken(QLearning):
            pass
        Mistaken.Config = Config
    """)
    # register after Config is attached, as a class body would have it
    module = module.replace('@AGENTS.register("mistaken")\n', "").replace(
        "Mistaken.Config = Config", "Mistaken.Config = Config\nAGENTS.add('mistaken', Mistaken)")
    _fake_entry_points(tmp_path, monkeypatch, {"mistakes": module})
    assert "qlearning" in AGENTS.names() and "mistaken" not in AGENTS.names()
    (entry,) = [e for e in AGENTS.entries() if e.name == "mistaken"]
    assert entry.error is not None and message in entry.error
    with pytest.raises(RegistryError, match=re.escape(message.split(";")[0])):
        AGENTS.get("mistaken")


def test_a_list_default_in_param_is_copied_per_config() -> None:
    from dataclasses import dataclass

    from toolkit.config import TrainerConfig, param

    @dataclass
    class Layers(TrainerConfig):
        hidden: list[int] = param([64, 64], "hidden layer sizes")

    a, b = Layers(), Layers()
    a.hidden.append(1)
    assert b.hidden == [64, 64]


def test_a_folder_in_the_working_directory_that_shadows_a_package_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")
    monkeypatch.delitem(sys.modules, "agents", raising=False)
    monkeypatch.delitem(sys.modules, "agents.qlearning", raising=False)
    folder, installed = registry_module.shadowing_folder("agents") or ("", "")
    assert folder == "./agents"
    assert installed.endswith("agents") and Path(installed) != tmp_path / "agents"
    assert registry_module.shadowing_folder("generative") is None


def test_a_config_subclass_that_adds_no_fields_needs_no_decorator() -> None:
    from agents.qlearning import QLearning
    from toolkit.plugin_checks import check_trainer_class

    class Stricter(QLearning.Config):  # only tightens validation: no new fields
        def validate(self) -> None:
            super().validate()

    class Strict(QLearning):
        Config = Stricter

    check_trainer_class("agent", Strict)


def test_a_plugin_is_credited_to_the_package_that_defines_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plugin package that registers a built-in's class under a new name: the class is
    # still gymkit's, so `gymkit:...` finds it and config.json names gymkit's version.
    _fake_entry_points(tmp_path, monkeypatch, {"borrower": """
        from toolkit.registry import AGENTS
        from agents.qlearning import QLearning
        AGENTS.add("borrowed", QLearning)
    """})
    assert AGENTS.entry("borrowed").source == "gymkit"


def test_a_lazy_entry_is_listed_without_importing_and_checked_when_used() -> None:
    reg: Registry[type] = Registry("agent")
    reg.add_lazy("later", "json:JSONDecoder", description="imported on use")
    reg.add_lazy("missing", "no_such_module_xyz:Thing", description="never importable")
    reg.add_lazy("typo", "json:NoSuchThing", description="a name that is not there")
    entries = {e.name: e for e in reg.entries()}
    assert entries["later"].description == "imported on use"
    assert entries["later"].loader == "json:JSONDecoder"
    import json

    assert reg.get("later") is json.JSONDecoder
    assert reg.entry("later").loader is None  # loaded once, kept
    with pytest.raises(RegistryError, match="importing no_such_module_xyz failed"):
        reg.get("missing")
    with pytest.raises(RegistryError, match="json has no 'NoSuchThing'"):
        reg.get("typo")
    with pytest.raises(RegistryError, match="must be written 'module:attribute'"):
        reg.add_lazy("bad", "json.JSONDecoder", description="")
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add_lazy("later", "json:JSONEncoder", description="")


def test_a_lazy_entry_that_fails_its_check_is_unusable() -> None:
    def check(name: str, obj: type) -> None:
        raise GymkitError("not a Trainer")

    reg: Registry[type] = Registry("agent", check)
    reg.add_lazy("x", "json:JSONDecoder", description="")
    with pytest.raises(RegistryError, match=r"agent 'x' from .* cannot be used: not a Trainer"):
        reg.get("x")
