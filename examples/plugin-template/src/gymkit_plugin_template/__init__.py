"""gymkit plugins, registered through the entry points in pyproject.toml.

gymkit imports each module named under ``[project.entry-points."gymkit.plugins"]``
the first time it looks a name up; importing a module registers its plugins and
does nothing else.
"""
