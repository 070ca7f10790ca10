"""`gymkit new plugin NAME`: start a plugin package (the work is done by toolkit/scaffold.py).

cli.py mounts `new_plugin` as the command `plugin` of the group `new`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape


class Kind(str, Enum):
    agent = "agent"
    generative = "generative"


def new_plugin(
    name: Annotated[str, typer.Argument(help="distribution name, e.g. acme-rl; the import "
                                             "package is acme_rl, the plugins acme-rl-...")],
    kind: Annotated[Kind | None, typer.Option(
        help="only an agent (with an env preset) or only a generative trainer (with a "
             "dataset) [default: both]")] = None,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="folder to create; must not exist [default: ./NAME]")] = None,
) -> None:
    """Write a plugin package: plugins, tests, pyproject.toml and README."""
    from toolkit import scaffold

    console = Console()
    folder = scaffold.new_plugin(name, kind.value if kind else None, directory)
    kinds = scaffold.KINDS if kind is None else (kind.value,)
    plugins = ", ".join(f"{what} {plugin}" for what, plugin in
                        scaffold.registered(name, kinds))
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    console.print(f"wrote {files} files to [bold]{escape(str(folder))}[/]: {plugins}\n"
                  "next, in gymkit's environment:\n"
                  f"  pip install -e {escape(str(folder))}\n"
                  "  gymkit list\n"
                  f"  cd {escape(str(folder))} && pytest", highlight=False)
