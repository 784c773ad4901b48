"""Experiments: `run.py` is the entry point; each module is one `config.experiment`."""
