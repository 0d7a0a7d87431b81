"""shoal's node agent: the daemon, its manager and worker parts, and the CLI."""

# The one place the version is written: pyproject.toml reads it from here, and the CLI prints
# it without searching the installed distributions (importlib.metadata takes half a second).
__version__ = "0.1.0"
