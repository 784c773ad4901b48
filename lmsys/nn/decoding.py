"""Beam search, jitted end to end, optionally constrained by a trie on the device (note 7).

    result = beam_search(step_fn, step_args, cache, batch_size=B, beam_size=K, max_length=T,
                         vocab_size=V, bos_id=CLS, end_id=SEP, end_count=3, trie=trie_arrays)
    result.sequences [B, K, T], result.scores [B, K] (best first), result.lengths [B, K]

Everything runs in one `lax.while_loop` with fixed shapes: no Python per
step, so the constraint costs what its mask costs, not a host round trip per
token (GENRE's `prefix_allowed_tokens_fn` calls Python every step).

- `step_fn(step_args, cache, tokens [B*K, 1], position) -> (logits [B*K, 1 or V...], cache)`
  runs the decoder one position with its key/value cache (`Seq2Seq.decode(decode=True)`).
- A hypothesis ends after its `end_count`-th `end_id` token (the targets of
  note 7 are `S [SEP] P [SEP] M [SEP]`).
- `trie` (lmsys.nn.trie arrays): every step masks the tokens that would leave the
  trie, so each finished hypothesis is a sequence of the trie (a fact of the
  base). With `renormalise` (the default, as note 7's reference code) the
  probabilities are renormalised over the allowed tokens, so a token the trie
  forces costs nothing; without it the masked log-softmax is used as it is, and
  every forced token costs its -log p.
- `bonus_fn(bonus_args, cache, log_probs [B, K, V], nodes [B*K]) -> [B, K, V]`:
  an optional additive change of the masked log-probabilities (before the
  renormalisation), from the step's new cache and each hypothesis's trie node
  (ROOT without a trie); note 7's look-ahead rule reads the node. It must keep
  every log-probability <= 0 (early stopping relies on scores only falling).

Hypotheses are kept as Hugging Face's `BeamHypotheses` keeps them: K live
hypotheses, and a pool of the K best finished ones, never evicted. Each step
takes the 2K best extensions of the live hypotheses; an extension that ends
goes to the pool if it ranks within the step's top K (so beam 1 is greedy
search), the K best that do not end stay live. The pool ranks by
score / length ** length_penalty (score: the summed log-probabilities; length:
tokens up to and including the last end token); length_penalty 0 (the
default) ranks by plain probability, as note 7 does. A batch row is done
when its pool is full and no live hypothesis can reach the pool's worst rank.
The result is the pool, best first; where the pool has fewer than K, the best
live hypotheses fill it (finished False). `cut` marks the rows where the
length limit stopped the search while a live hypothesis could still have
ranked in the pool (with a trie whose sequences all fit in max_length, never).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

NEG_INF = -1e30  # finite, so that -inf - -inf never makes a NaN


class BeamResult(NamedTuple):
  sequences: jax.Array   # [B, K, T] token ids after BOS (padding 0 after the end)
  scores: jax.Array      # [B, K] summed log-probabilities, best first (by rank, see the module doc)
  lengths: jax.Array     # [B, K] tokens up to and including the last end token (T if unfinished)
  finished: jax.Array    # [B, K] bool: the hypothesis reached end_count end tokens
  cut: jax.Array         # [B] bool: max_length stopped a live hypothesis that could still rank


def reorder_cache(cache, index):
  """The cache of rows `index` (the beams that survive a step): every array with a batch axis
  first is gathered; scalars (step counters all rows share) are kept."""
  return jax.tree.map(lambda c: c[index] if getattr(c, "ndim", 0) else c, cache)


def renormalise_allowed(log_probs, allowed):
  """log p - log (sum of p over the allowed tokens) at the allowed tokens, NEG_INF elsewhere
  (a row with nothing allowed stays NEG_INF). log_probs and allowed: [..., V]."""
  masked = jnp.where(allowed, log_probs, NEG_INF)
  norm = jax.nn.logsumexp(masked, axis=-1, keepdims=True)
  return jnp.where(allowed, masked - norm, NEG_INF)


def length_normalised(scores, lengths, length_penalty: float):
  """The pool's rank of summed log-probabilities: scores / lengths ** length_penalty."""
  if length_penalty == 0:
    return scores
  return scores / jnp.power(jnp.maximum(lengths, 1).astype(jnp.float32), length_penalty)


def beam_search(step_fn: Callable, step_args: Any, cache: Any, *, batch_size: int, beam_size: int,
                max_length: int, vocab_size: int, bos_id: int, end_id: int, end_count: int = 1,
                trie: Any = None, bonus_fn: Callable | None = None, bonus_args: Any = None,
                renormalise: bool = True, length_penalty: float = 0.0,
                early_stop: bool = True) -> BeamResult:
  """Beam search over at most `max_length` steps; `cache` rows are batch-major (row b * K + k).

  Args:
    step_fn, step_args, cache: the decoder step and its state (see the module doc).
    batch_size, beam_size, max_length, vocab_size: B, K, T, V.
    bos_id: the first input token; end_id, end_count: a hypothesis ends at its end_count-th end_id.
    trie: lmsys.nn.trie arrays on the device, or None (unconstrained).
    bonus_fn, bonus_args: an optional change of the masked log-probabilities (module doc).
    renormalise: renormalise over the allowed tokens when the trie (or bonus_fn) changes a step.
    length_penalty: the pool ranks by score / length ** length_penalty (0: plain score).
    early_stop: leave the loop once every row is done (False: always run max_length steps,
      e.g. to compare the cost per step of two settings).

  Returns:
    BeamResult, hypotheses best first.
  """
  if trie is not None:
    from lmsys.nn import trie as trie_lib  # pylint: disable=g-import-not-at-top
  b, k, v = batch_size, beam_size, vocab_size
  if v < 2:
    raise ValueError(f"vocab_size must be >= 2, got {v}")
  rows = b * k
  # The best rank a live hypothesis of score s can still reach (scores only fall): it ends at a
  # length between the next step's and max_length.
  def best_reachable(scores, t):
    if length_penalty == 0:
      return scores
    length = max_length if length_penalty > 0 else t + 1
    return length_normalised(scores, length, length_penalty)

  # Only beam 0 is alive at the start, so the first step does not pick K copies of one token.
  state = {
      "t": jnp.zeros((), jnp.int32),
      "sequences": jnp.zeros((b, k, max_length), jnp.int32),
      "scores": jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1)),
      "ends": jnp.zeros((b, k), jnp.int32),            # end tokens emitted so far
      "last": jnp.full((b, k), bos_id, jnp.int32),
      "nodes": jnp.zeros((b, k), jnp.int32),           # trie node of each hypothesis (root: 0)
      "cache": cache,
      "pool_sequences": jnp.zeros((b, k, max_length), jnp.int32),
      "pool_scores": jnp.full((b, k), NEG_INF, jnp.float32),
      "pool_ranks": jnp.full((b, k), NEG_INF, jnp.float32),
      "pool_lengths": jnp.zeros((b, k), jnp.int32),
  }

  def rows_done(state):
    pool_full = jnp.all(state["pool_ranks"] > NEG_INF / 2, axis=1)
    best_live = jnp.max(state["scores"], axis=1)
    no_live = best_live <= NEG_INF / 2
    beaten = best_reachable(best_live, state["t"]) <= jnp.min(state["pool_ranks"], axis=1)
    return no_live | (pool_full & beaten)

  def cond(state):
    running = state["t"] < max_length
    return running & ~jnp.all(rows_done(state)) if early_stop else running

  def body(state):
    t = state["t"]
    logits, cache = step_fn(step_args, state["cache"], state["last"].reshape(rows, 1), t)
    log_probs = jax.nn.log_softmax(logits.reshape(rows, -1)[:, :v].astype(jnp.float32), -1).reshape(b, k, v)
    if trie is not None:
      allowed = trie_lib.next_token_mask(trie, state["nodes"].reshape(rows), v).reshape(b, k, v)
      log_probs = jnp.where(allowed, log_probs, NEG_INF)
    if bonus_fn is not None:
      log_probs = log_probs + bonus_fn(bonus_args, cache, log_probs, state["nodes"].reshape(rows))
    if renormalise and (trie is not None or bonus_fn is not None):
      log_probs = renormalise_allowed(log_probs, log_probs > NEG_INF / 2)
    candidates = (state["scores"][..., None] + log_probs).reshape(b, k * v)
    top_scores, top = jax.lax.top_k(candidates, 2 * k)                  # [B, 2K], best first
    beam, token = top // v, top % v
    valid = top_scores > NEG_INF / 2
    ends = jnp.take_along_axis(state["ends"], beam, axis=1) + (token == end_id)
    ending = valid & (ends >= end_count)
    sequences = jnp.take_along_axis(state["sequences"], beam[..., None], axis=1).at[:, :, t].set(token)

    # The pool: its K best and the extensions that end within the step's top K.
    in_top_k = jnp.arange(2 * k)[None, :] < k
    new_ranks = jnp.where(ending & in_top_k, length_normalised(top_scores, t + 1, length_penalty), NEG_INF)
    ranks = jnp.concatenate([state["pool_ranks"], new_ranks], axis=1)
    pool_ranks, pick = jax.lax.top_k(ranks, k)
    merge = lambda old, new: jnp.take_along_axis(jnp.concatenate([old, new], axis=1), pick, axis=1)
    pool_sequences = jnp.take_along_axis(jnp.concatenate([state["pool_sequences"], sequences], axis=1),
                                         pick[..., None], axis=1)
    pool_scores = merge(state["pool_scores"], jnp.where(ending, top_scores, NEG_INF))
    pool_lengths = merge(state["pool_lengths"], jnp.full_like(beam, t + 1))

    # The live hypotheses: the K best extensions that do not end.
    live_scores, pick = jax.lax.top_k(jnp.where(ending, NEG_INF, top_scores), k)
    take = lambda x: jnp.take_along_axis(x, pick, axis=1)
    live_beam, live_token = take(beam), take(token)
    nodes = jnp.take_along_axis(state["nodes"], live_beam, axis=1)
    if trie is not None:
      nodes = trie_lib.advance(trie, nodes.reshape(rows), live_token.reshape(rows)).reshape(b, k)
    flat = (jnp.arange(b)[:, None] * k + live_beam).reshape(rows)
    return {"t": t + 1, "sequences": jnp.take_along_axis(sequences, pick[..., None], axis=1),
            "scores": live_scores, "ends": take(ends), "last": live_token, "nodes": nodes,
            "cache": reorder_cache(cache, flat), "pool_sequences": pool_sequences,
            "pool_scores": pool_scores, "pool_ranks": pool_ranks, "pool_lengths": pool_lengths}

  state = jax.lax.while_loop(cond, body, state)
  cut = ~rows_done(state)
  # The pool first (best rank first), then live hypotheses by score, then empty slots.
  pool_ok = state["pool_ranks"] > NEG_INF / 2
  live_ok = state["scores"] > NEG_INF / 2
  group = jnp.concatenate([jnp.where(pool_ok, 2, 0), jnp.where(live_ok, 1, 0)], axis=1)
  key = jnp.concatenate([state["pool_ranks"], state["scores"]], axis=1)
  order = jnp.lexsort((-key, -group), axis=-1)[:, :k]
  take = lambda x: jnp.take_along_axis(x, order, axis=1)
  sequences = jnp.concatenate([state["pool_sequences"], state["sequences"]], axis=1)
  return BeamResult(jnp.take_along_axis(sequences, order[..., None], axis=1),
                    take(jnp.concatenate([state["pool_scores"], state["scores"]], axis=1)),
                    take(jnp.concatenate([state["pool_lengths"], jnp.full_like(state["ends"], state["t"])], axis=1)),
                    take(group == 2), cut)
