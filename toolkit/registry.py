"""Named registries of plugins, filled by `@REGISTRY.register(...)` and entry points.

Third-party packages declare an entry point in the group ``gymkit.plugins``;
the module it names is imported the first time any registry is read, and
registers its plugins as a side effect of being imported. gymkit's own
plugins (``agents``, ``generative``, ``envs``) load the same way, first; the
others follow in the order of their distribution names, so the result never
depends on the working directory.

Two packages may register the same name. That is an error only when the name
is used; ``package:name`` always selects one, and `gymkit list` shows both.
A plugin that fails its registration checks stays listed with the reason, and
using it raises that reason.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.metadata as metadata
import inspect
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from toolkit.errors import GymkitError, RegistryError, did_you_mean

if TYPE_CHECKING:
    from toolkit.trainer import Trainer

ENTRY_POINT_GROUP = "gymkit.plugins"
BUILTIN_SOURCE = "gymkit"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object, with where it came from."""

    name: str
    obj: T
    description: str
    source: str
    #: Why the plugin cannot be used (it failed a registration check), or None.
    error: str | None = None
    #: ``"module:attribute"`` still to be imported (see `Registry.add_lazy`), or None.
    loader: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.source}:{self.name}"


class Registry(Generic[T]):
    """Maps names to plugins of one kind (``agent``, ``generative``, ``env``, ``dataset``)."""

    def __init__(self, kind: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind = kind
        self._check = check
        self._entries: dict[str, list[Entry[T]]] = {}

    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@AGENTS.register("dqn")`` above a class."""

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, description: str | None = None,
            source: str | None = None) -> None:
        source = source or _source_of(obj)
        same = self._entries.setdefault(name, [])
        if any(e.source == source for e in same):
            raise RegistryError(f"{self.kind} '{name}' is registered twice by {source}; "
                                "rename one of them")
        error = None
        if self._check is not None:
            try:
                self._check(name, obj)
            except GymkitError as exc:
                error = f"{self.kind} '{name}' from {source} cannot be used: {exc}"
        doc = description if description is not None else _first_line(obj)
        same.append(Entry(name, obj, doc, source, error))

    def add_lazy(self, name: str, target: str, *, description: str) -> None:
        """Register ``"module:attribute"`` without importing it: `gymkit list` shows the
        name and description, and the module is imported (and the object checked) only when
        the name is used. This keeps torch out of commands that need no tensors."""
        module, sep, attribute = target.partition(":")
        if not (module and sep and attribute):
            raise RegistryError(f"{self.kind} '{name}': lazy target {target!r} must be written "
                                "'module:attribute'")
        source = _source_of_module(module)
        same = self._entries.setdefault(name, [])
        if any(e.source == source for e in same):
            raise RegistryError(f"{self.kind} '{name}' is registered twice by {source}; "
                                "rename one of them")
        same.append(Entry(name, cast(T, None), description, source, loader=target))

    def remove(self, name: str, source: str | None = None) -> None:
        """Unregister `name` (from one `source`, or all) — for tests and interactive use."""
        kept = [e for e in self._entries.get(name, []) if source is not None
                and e.source != source]
        if kept:
            self._entries[name] = kept
        else:
            self._entries.pop(name, None)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        """The entry for `name` or ``package:name``; raises a RegistryError that says why not."""
        candidates = self._lookup(name)
        if not candidates:
            known = ", ".join(self.names()) or "none registered"
            plain = name.rpartition(":")[2]
            raise RegistryError(f"unknown {self.kind} '{name}'{did_you_mean(plain, self._entries)}"
                                f"; known: {known}{problems_hint()}")
        if len(candidates) > 1:
            options = " or ".join(e.qualified_name for e in candidates)
            raise RegistryError(
                f"{self.kind} '{name}' is registered by {len(candidates)} packages "
                f"({', '.join(e.source for e in candidates)}); name one: {options}")
        entry = candidates[0]
        if entry.loader is not None:
            entry = self._load(entry)
        if entry.error is not None:
            raise RegistryError(entry.error)
        return entry

    def _load(self, lazy: Entry[T]) -> Entry[T]:
        """Import a lazy entry's object, check it, and keep the result in its place."""
        assert lazy.loader is not None
        module_name, _, attribute = lazy.loader.partition(":")
        error = None
        obj: Any = None
        try:
            obj = getattr(importlib.import_module(module_name), attribute)
        except ImportError as exc:
            error = (f"{self.kind} '{lazy.name}' from {lazy.source} cannot be used: importing "
                     f"{module_name} failed: {exc}")
        except AttributeError:
            error = (f"{self.kind} '{lazy.name}' from {lazy.source} cannot be used: "
                     f"{module_name} has no '{attribute}'")
        if error is None and self._check is not None:
            try:
                self._check(lazy.name, obj)
            except GymkitError as exc:
                error = f"{self.kind} '{lazy.name}' from {lazy.source} cannot be used: {exc}"
        loaded = Entry(lazy.name, cast(T, obj), lazy.description, lazy.source, error)
        same = self._entries[lazy.name]
        same[same.index(lazy)] = loaded
        return loaded

    def names(self) -> list[str]:
        """Usable names, sorted; a name registered by several packages appears qualified."""
        load_plugins()
        names = []
        for name, entries in self._entries.items():
            usable = [e for e in entries if e.error is None]
            if len(entries) == 1:
                names += [name] if usable else []
            else:
                names += [e.qualified_name for e in usable]
        return sorted(names)

    def entries(self) -> list[Entry[T]]:
        """Every entry, broken and clashing ones included, sorted by name and source."""
        load_plugins()
        return sorted((e for entries in self._entries.values() for e in entries),
                      key=lambda e: (e.name, e.source))

    def clashes(self) -> dict[str, list[str]]:
        """Names registered by more than one package, with those packages."""
        load_plugins()
        return {name: [e.source for e in entries]
                for name, entries in sorted(self._entries.items()) if len(entries) > 1}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._lookup(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _lookup(self, name: str) -> list[Entry[T]]:
        load_plugins()
        if name in self._entries:
            return list(self._entries[name])
        source, sep, plain = name.rpartition(":")
        if not sep:
            return []
        wanted = _normalize(source)
        return [e for e in self._entries.get(plain, []) if _normalize(e.source) == wanted]


#: Problems met while loading plugins (a package that failed to import, a shadowed package),
#: one line each; `gymkit list` shows them and unknown-name errors mention them.
load_problems: list[str] = []
_loaded = False
#: (distribution, top-level module) of the entry point being loaded.
_loading: tuple[str, str] | None = None


def problems_hint() -> str:
    """The load problems as a tail for an error message ('' when there are none)."""
    return "".join(f"; {problem}" for problem in load_problems)


def load_plugins() -> None:
    """Import every module named in the ``gymkit.plugins`` entry-point group, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=_load_order):
        source = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
        shadow = shadowing_folder(ep.value.split(":")[0].split(".")[0])
        if shadow is not None:
            _problem(f"the folder {shadow[0]} in the working directory shadows the package "
                     f"'{ep.value}' of {source} ({shadow[1]}), so its plugins are not loaded; "
                     "rename the folder or run gymkit from another directory")
            continue
        try:
            with _loading_entry_point(source, ep.value.split(":")[0].split(".")[0]):
                ep.load()
        except Exception as exc:  # a broken plugin package must not break gymkit
            message = " ".join(str(exc).split()) or type(exc).__name__
            _problem(f"plugin package '{ep.name}' from {source} failed to load: {message}")


def shadowing_folder(module: str) -> tuple[str, str] | None:
    """(folder, installed location) when a folder of the working directory hides an installed
    package named `module` (Python searches the working directory first under ``python -m``,
    ``pytest`` or ``PYTHONPATH=.``), else None."""
    cwd = Path.cwd().resolve()
    loaded = sys.modules.get(module)
    first = _location(loaded.__spec__ if loaded is not None else _find_spec(module, sys.path))
    if first is None or cwd not in (first, *first.parents):
        return None
    if first.parent == Path(__file__).resolve().parent.parent:
        return None  # beside the running toolkit: one source tree (a checkout, a mutant copy)
    elsewhere = [p for p in sys.path if _resolve(p) != cwd]
    installed = _location(_find_spec(module, elsewhere))
    if installed is None or installed == first:
        return None
    return f"./{first.relative_to(cwd)}", str(installed)


def _find_spec(module: str, path: list[str]) -> importlib.machinery.ModuleSpec | None:
    """What `import module` would find if sys.path were `path` (every meta path finder
    asked, so editable installs count), without importing it."""
    saved = sys.path[:]
    sys.path[:] = path
    try:
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(module, None) if find is not None else None
            if spec is not None:
                return spec
    finally:
        sys.path[:] = saved
    return None


def _location(spec: importlib.machinery.ModuleSpec | None) -> Path | None:
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return _resolve(next(iter(spec.submodule_search_locations)))
    return _resolve(spec.origin) if spec.origin else None


def _resolve(entry: str) -> Path:
    try:
        return Path(entry or ".").resolve()
    except OSError:
        return Path(entry)


def _problem(message: str) -> None:
    load_problems.append(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _load_order(ep: metadata.EntryPoint) -> tuple[int, str, str]:
    dist = ep.dist.name if ep.dist is not None else ""
    return (0 if _normalize(dist) == BUILTIN_SOURCE else 1, _normalize(dist), ep.name)


def _normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@contextmanager
def _loading_entry_point(source: str, top_module: str) -> Iterator[None]:
    global _loading
    previous, _loading = _loading, (source, top_module)
    try:
        yield
    finally:
        _loading = previous


def _source_of(obj: object) -> str:
    """The distribution that defines `obj`: by its module where the installed files say so
    (a plugin may import and register another package's classes), else the one whose entry
    point is loading."""
    if inspect.isclass(obj) or inspect.isfunction(obj):
        module = obj.__module__
    else:  # an instance (an EnvPreset): its class says nothing, the registering module does
        module = _calling_module()
    return _source_of_module(module)


def _source_of_module(module: str) -> str:
    top = module.split(".")[0]
    if _loading is not None and top == _loading[1]:
        return _loading[0]  # the common case, without reading every installed package's files
    dists = _distributions().get(top)
    if dists:
        return dists[0]
    return _loading[0] if _loading is not None else top


@functools.lru_cache(maxsize=1)
def _distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


def _calling_module() -> str:
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back  # type: ignore[assignment]
    return str(frame.f_globals.get("__name__", "")) if frame is not None else ""


def _first_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _check_trainer(kind: str) -> Callable[[str, type[Trainer]], None]:
    def check(name: str, cls: type[Trainer]) -> None:
        from toolkit.plugin_checks import check_trainer_class

        check_trainer_class(kind, cls)

    return check


AGENTS: Registry[type[Trainer]] = Registry("agent", _check_trainer("agent"))
GENERATIVE: Registry[type[Trainer]] = Registry("generative", _check_trainer("generative"))
