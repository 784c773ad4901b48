"""One module per note, holding what only that note needs.

`NOTES` is the one map of note -> name: each name is used for the note's config(s)
(`configs/<name>.py`, `configs/<name>_<variant>.py`), experiment, results page, tests and,
where the note has method code of its own, `lmsys/notes/<name>.py`. The README's table of
files is generated from it (`python scripts/file_map.py`), and a test checks both.
"""

NOTES = {
    1: ("logreg", "Logistic regression has an analytic solution"),
    2: ("attention_cost", "The cost of a Transformer layer (linear attention is not what BERT needs)"),
    3: ("attention_approx", "Softmax as infinite-dimensional linear attention"),
    4: ("jl", "The Johnson-Lindenstrauss lemma and head size"),
    5: ("nsp_bert", "NSP-BERT: zero-shot classification by next-sentence prediction"),
    6: ("vae", "A VAE as an importance-sampling estimator of log p(x)"),
    7: ("kgclue", "Seq2seq with trie-constrained decoding (KgCLUE)"),
    8: ("squareplus", "SquarePlus, the cheapest smooth ReLU"),
}
