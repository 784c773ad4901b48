"""Task code shared by experiments: losses, evaluation loops, "train a model of this kind".

An experiment module stays thin: it validates its config, calls these, and
writes tables and figures. `classification` serves notes 1 and 8 and the MLP
demo; `lm` serves the char-level language models of notes 2 and 3.
"""
