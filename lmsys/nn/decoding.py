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
  note 7 are `S [SEP] P [SEP] M [SEP]`); an ended hypothesis only extends with
  padding (id 0) at no cost.
- `trie` (lmsys.nn.trie arrays): every step masks the tokens that would leave the
  trie, so each finished hypothesis is a sequence of the trie (a fact of the
  base). A hypothesis whose every continuation is masked drops out (-inf).
- `bonus_fn(bonus_args, cache, log_probs [B, K, V], nodes [B*K]) -> [B, K, V]`:
  an optional additive change of the (masked, normalised) log-probabilities
  used for ranking, from the step's new cache and each hypothesis's trie node
  (DEAD/ROOT without a trie); the note's look-ahead rule reads the node.
Scores are sums of log-probabilities (no length penalty: every fact ends the
same way, and the note ranks by plain probability).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

NEG_INF = -1e30  # finite, so that -inf - -inf never makes a NaN


class BeamResult(NamedTuple):
  sequences: jax.Array   # [B, K, T] token ids after BOS (padding 0 after the end)
  scores: jax.Array      # [B, K] summed log-probabilities (ranking scores), best first
  lengths: jax.Array     # [B, K] tokens up to and including the last end token
  finished: jax.Array    # [B, K] bool: the hypothesis reached end_count end tokens


def reorder_cache(cache, index):
  """The cache of rows `index` (the beams that survive a step): every array with a batch axis
  first is gathered; scalars (step counters all rows share) are kept."""
  return jax.tree.map(lambda c: c[index] if getattr(c, "ndim", 0) else c, cache)


def beam_search(step_fn: Callable, step_args: Any, cache: Any, *, batch_size: int, beam_size: int,
                max_length: int, vocab_size: int, bos_id: int, end_id: int, end_count: int = 1,
                trie: Any = None, bonus_fn: Callable | None = None, bonus_args: Any = None,
                early_stop: bool = True) -> BeamResult:
  """Beam search over `max_length` steps; `cache` rows are batch-major (row b * K + k).

  early_stop: leave the loop once every hypothesis has ended (False: always run
  max_length steps, e.g. to compare the cost per step of two settings).
  """
  if trie is not None:
    from lmsys.nn import trie as trie_lib  # pylint: disable=g-import-not-at-top
  b, k, v = batch_size, beam_size, vocab_size
  rows = b * k

  # Only beam 0 is alive at the start, so the first step does not pick K copies of one token.
  scores = jnp.tile(jnp.asarray([0.0] + [NEG_INF] * (k - 1), jnp.float32), (b, 1))
  state = {
      "t": jnp.zeros((), jnp.int32),
      "sequences": jnp.zeros((b, k, max_length), jnp.int32),
      "scores": scores,
      "ends": jnp.zeros((b, k), jnp.int32),            # end tokens emitted so far
      "lengths": jnp.zeros((b, k), jnp.int32),
      "last": jnp.full((b, k), bos_id, jnp.int32),
      "nodes": jnp.zeros((b, k), jnp.int32),           # trie node of each hypothesis (root: 0)
      "cache": cache,
  }

  def cond(state):
    running = state["t"] < max_length
    return running & ~jnp.all(state["ends"] >= end_count) if early_stop else running

  def body(state):
    t = state["t"]
    logits, cache = step_fn(step_args, state["cache"], state["last"].reshape(rows, 1), t)
    log_probs = jax.nn.log_softmax(logits.reshape(rows, -1)[:, :v].astype(jnp.float32), -1).reshape(b, k, v)
    done = state["ends"] >= end_count
    if trie is not None:
      allowed = trie_lib.next_token_mask(trie, state["nodes"].reshape(rows), v).reshape(b, k, v)
      log_probs = jnp.where(allowed, log_probs, NEG_INF)
    if bonus_fn is not None:
      log_probs = log_probs + bonus_fn(bonus_args, cache, log_probs, state["nodes"].reshape(rows))
    # A finished hypothesis continues with padding only, at no cost.
    pad_only = jnp.full((v,), NEG_INF).at[0].set(0.0)
    log_probs = jnp.where(done[..., None], pad_only, log_probs)
    candidates = (state["scores"][..., None] + log_probs).reshape(b, k * v)
    top_scores, top = jax.lax.top_k(candidates, k)                      # [B, K]
    beam, token = top // v, top % v
    flat = (jnp.arange(b)[:, None] * k + beam).reshape(rows)
    gather = lambda x: jnp.take_along_axis(x, beam, axis=1)
    was_done = gather(done)
    sequences = jnp.take_along_axis(state["sequences"], beam[..., None], axis=1)
    sequences = sequences.at[:, :, t].set(jnp.where(was_done, 0, token))
    ends = gather(state["ends"]) + ((token == end_id) & ~was_done)
    nodes = gather(state["nodes"])
    if trie is not None:
      nodes = jnp.where(was_done, nodes, trie_lib.advance(trie, nodes.reshape(rows), token.reshape(rows))
                        .reshape(b, k))
    lengths = jnp.where(was_done, gather(state["lengths"]), t + 1)
    return {"t": t + 1, "sequences": sequences, "scores": top_scores, "ends": ends, "lengths": lengths,
            "last": jnp.where(was_done, 0, token), "nodes": nodes, "cache": reorder_cache(cache, flat)}

  state = jax.lax.while_loop(cond, body, state)
  # Dead hypotheses (a masked token was all that was left, or padding slots of a
  # beam wider than the candidates) carry NEG_INF-level scores: never "finished".
  finished = (state["ends"] >= end_count) & (state["scores"] > NEG_INF / 2)
  # Unfinished hypotheses (ran out of length) rank below every finished one.
  ranking = jnp.where(finished, state["scores"], state["scores"] + NEG_INF)
  order = jnp.argsort(-ranking, axis=1)
  take = lambda x: jnp.take_along_axis(x, order, axis=1)
  return BeamResult(jnp.take_along_axis(state["sequences"], order[..., None], axis=1), take(state["scores"]),
                    take(state["lengths"]), take(finished))
