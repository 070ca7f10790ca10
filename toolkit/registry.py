"""Named registries of plugins, filled by `@REGISTRY.register(...)` and entry points.

Third-party packages declare an entry point in the group ``gymkit.plugins``;
the module it names is imported the first time any registry is read, and
registers its plugins as a side effect of being imported. gymkit's own
plugins (``agents``, ``generative``, ``envs``) load the same way.
"""

from __future__ import annotations

import importlib.metadata as metadata
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from toolkit.errors import RegistryError, did_you_mean

if TYPE_CHECKING:
    from toolkit.trainer import Trainer

ENTRY_POINT_GROUP = "gymkit.plugins"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object, with where it came from."""

    name: str
    obj: T
    description: str
    source: str


class Registry(Generic[T]):
    """Maps names to plugins of one kind (``agent``, ``generative``, ``env``, ``dataset``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@AGENTS.register("dqn")`` above a class."""

        def decorate(obj: T) -> T:
            self.add(name, obj, description=description)
            return obj

        return decorate

    def add(self, name: str, obj: T, *, description: str | None = None) -> None:
        if name in self._entries:
            raise RegistryError(
                f"{self.kind} '{name}' is registered twice "
                f"(by {self._entries[name].source} and {_source_of(obj)}); rename one of them"
            )
        doc = description if description is not None else _first_line(obj)
        self._entries[name] = Entry(name, obj, doc, _source_of(obj))

    def remove(self, name: str) -> None:
        """Unregister `name` (tests and interactive sessions)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        load_plugins()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none registered"
            raise RegistryError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"known: {known}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        load_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_loaded = False
_loading_source: str | None = None


def load_plugins() -> None:
    """Import every module named in the ``gymkit.plugins`` entry-point group, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = ep.dist.name if ep.dist is not None else ep.value.split(".")[0]
        try:
            with _loading(source):
                ep.load()
        except RegistryError:
            raise
        except Exception as exc:  # a broken third-party plugin must not break gymkit
            warnings.warn(
                f"gymkit plugin '{ep.name}' from {source} failed to load: {exc}",
                RuntimeWarning,
                stacklevel=2,
            )


@contextmanager
def _loading(source: str) -> Iterator[None]:
    global _loading_source
    previous, _loading_source = _loading_source, source
    try:
        yield
    finally:
        _loading_source = previous


def _source_of(obj: object) -> str:
    if _loading_source is not None:
        return _loading_source
    module = getattr(obj, "__module__", None) or type(obj).__module__
    top = module.split(".")[0]
    dists = metadata.packages_distributions().get(top)
    return dists[0] if dists else top


def _first_line(obj: object) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


AGENTS: Registry[type[Trainer]] = Registry("agent")
GENERATIVE: Registry[type[Trainer]] = Registry("generative")
