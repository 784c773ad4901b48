"""Note 3: kernel / output error of feature maps vs dimension, and ranks (configs/attention_approx.py).

The measurements are `lmsys.notes.attention_approx`. Errors are single measurements on fixed
inputs (FAVOR+: the mean of `favor_draws` draws), so the claims have no interval.
"""

from __future__ import annotations

import jax

from lmsys import checks, metrics
from lmsys import claims as C
from lmsys.data import char_corpus
from lmsys.notes import attention_approx

CHECKS = [(checks.trained,), (checks.positive_ints, "orders"), (checks.positive_ints, "favor_dims"),
          (checks.divides, "context", "tokens_per_batch")]


def validate(config) -> None:
  checks.apply(config, CHECKS)
  checks.data_files(config, "data.data_dir", lambda: char_corpus.check_available(config.data.data_dir or None))


def inputs(config) -> list[str]:
  return char_corpus.input_files(config.data.data_dir or None)


def run(config, workdir, writer) -> dict:
  # Full float32 products: on GPUs the default (TF32) would blur ranks and small errors.
  with jax.default_matmul_precision("highest"):
    results = attention_approx.measure(config, workdir, writer)
  metrics.save_figure(attention_approx.error_figure(results), workdir, "attention_approx")
  return results


def claims(results, config) -> list[dict]:
  d = results["random"]["shape"]["head_dim"]
  out = []
  for source, rows in [("random", results["random"]["ranks"])] + [
      (f"trained/{n}", layer["ranks"]) for n, layer in results["trained"]["layers"].items()]:
    rank = {r["attention"].split()[0]: r for r in rows}
    head = d if source == "random" else results["trained"]["model"]["head_dim"]
    out.append(C.claim("rank_not_capped", "3", "Softmax attention's rank is not capped at the head size d",
                       dataset=source, metric="numerical rank of the n x n softmax attention matrix",
                       value=rank["softmax"]["numerical_rank"], kind="higher", target=head,
                       detail=f"d = {head}, n = {rank['softmax']['n']}"))
    out.append(C.claim("linear_rank_capped", "3", "Linear attention's rank is capped at its feature dimension",
                       dataset=source, metric="numerical rank of elu+1 linear attention", kind="at_most",
                       value=rank["linear"]["numerical_rank"], target=rank["linear"]["feature_dim"],
                       detail=f"feature dimension {rank['linear']['feature_dim']}"))
  for source, rows in attention_approx.error_sources(results):
    for family in ("taylor", "limit"):
      by_order = sorted((int(r["method"].split("P=")[1]), r["output_rel_error"]) for r in rows if r["family"] == family)
      if len(by_order) > 1:
        (low, e_low), (high, e_high) = by_order[0], by_order[-1]
        out.append(C.claim(f"{family}_converges", "3", f"The {family} map approaches softmax attention as its order "
                           "P grows", dataset=source, metric=f"output error at P={high} minus at P={low}",
                           value=e_high - e_low, kind="lower", detail=f"{e_low:.4g} -> {e_high:.4g}"))
    favor = [r for r in rows if r["family"].startswith("favor")]
    out.append(C.claim("favor_positive", "3", "FAVOR+ features are positive: its kernel is never negative",
                       dataset=source, metric="largest fraction of negative kernel values", kind="at_most",
                       value=max(r["negative_kernel_fraction"] for r in favor), target=0.0))
    iid = {r["feature_dim"]: r["output_rel_error"] for r in favor if r["family"] == "favor_iid"}
    orth = {r["feature_dim"]: r["output_rel_error"] for r in favor if r["family"] == "favor_orthogonal"}
    diffs = [orth[m] - iid[m] for m in iid if m in orth]
    out.append(C.claim("orthogonal_helps", "3", "Orthogonal random features lower FAVOR+'s error", dataset=source,
                       metric="mean over m of output error, orthogonal - iid", value=sum(diffs) / len(diffs),
                       interval=C.seed_interval(diffs), kind="lower",
                       detail=f"lower at {sum(x < 0 for x in diffs)} of {len(diffs)} dimensions; t-interval over "
                       f"the dimensions (each a mean of {config.favor_draws} draws)"))
    odd = [r["negative_normaliser_fraction"] for r in rows
           if r["family"] == "taylor" and int(r["method"].split("P=")[1]) % 2]
    if odd and source.startswith("trained"):
      out.append(C.claim("odd_orders_break", "3", "Odd-order Taylor truncations can make the normaliser <= 0",
                         dataset=source, metric="largest fraction of queries with normaliser <= 0 (odd P)",
                         value=max(odd), kind="higher", target=0.0))
  return C.with_summaries(out)
