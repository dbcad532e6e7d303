"""The package's version, in a module of its own so that any layer may record it."""

__version__ = "0.3.0"
