"""gymkit's framework: registry, trainer interface, runner, config, run directories."""

from importlib import metadata

try:
    __version__ = metadata.version("gymkit")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
