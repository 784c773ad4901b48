"""One module per note, holding what only that note needs (README: "The notes" maps note -> name -> files).

logreg (1), attention_cost (2), attention_approx (3), jl (4), nsp_bert (5), vae (6), kgclue (7),
squareplus (8).
"""
