"""lmsys: a JAX research framework for eight research notes (see README.md)."""

__version__ = "0.1.0"
