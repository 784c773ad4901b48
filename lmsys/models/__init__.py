"""Flax model definitions, one module per model family."""
