"""The package version (pyproject.toml holds the same number for the build)."""
__version__ = "0.1.0"
