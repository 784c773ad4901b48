"""Beam search: exact on a small Markov model, greedy as beam 1, consistent with the Seq2Seq cache."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.nn import decoding
from lmsys.models import transformer as T

V, END, BOS = 4, 3, 0  # tokens 1, 2 and END=3; id 0 doubles as BOS and padding


def _markov(seed):
  table = jax.nn.log_softmax(jax.random.normal(jax.random.key(seed), (V, V)) * 2.0, -1)
  table = table.at[:, 0].set(-jnp.inf)  # never emit padding
  return jax.nn.log_softmax(table, -1)


def _markov_step(table, cache, tokens, t):
  del t
  return table[tokens[:, 0]], cache


def _brute_force(table, max_length):
  """Every sequence of 1..max_length tokens ending at the first END, with its log-probability."""
  table = np.asarray(table)
  out = {}
  for n in range(1, max_length + 1):
    for body in itertools.product((1, 2), repeat=n - 1):
      seq, prev, score = body + (END,), BOS, 0.0
      for tok in seq:
        score, prev = score + table[prev, tok], tok
      out[seq] = score
  return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_the_exact_best_sequences(seed):
  # At the last step 8 live prefixes x 3 tokens + 7 finished = 31 candidates: a beam of 32 is exhaustive.
  table, max_length, beam = _markov(seed), 4, 32
  result = jax.jit(lambda table: decoding.beam_search(
      _markov_step, table, jnp.zeros((beam, 1)), batch_size=1, beam_size=beam, max_length=max_length,
      vocab_size=V, bos_id=BOS, end_id=END))(table)
  exact = sorted(_brute_force(table, max_length).items(), key=lambda kv: -kv[1])
  found = [(tuple(int(x) for x in s[:n]), float(sc))
           for s, sc, n, f in zip(result.sequences[0], result.scores[0], result.lengths[0], result.finished[0]) if f]
  assert len(found) == len(exact) == 15
  for (seq, score), (want_seq, want_score) in zip(found, exact):
    assert seq == want_seq and abs(score - want_score) < 1e-5


def test_beam_of_one_is_greedy_and_batch_rows_are_independent():
  tables = [_markov(s) for s in (3, 4)]
  step = lambda tabs, cache, tokens, t: (jnp.concatenate([tabs[0][tokens[:1, 0]], tabs[1][tokens[1:, 0]]]), cache)
  result = decoding.beam_search(step, tables, jnp.zeros((2, 1)), batch_size=2, beam_size=1, max_length=6,
                                vocab_size=V, bos_id=BOS, end_id=END)
  for row, table in enumerate(tables):
    prev, seq = BOS, []
    for _ in range(6):
      prev = int(jnp.argmax(table[prev]))
      seq.append(prev)
      if prev == END:
        break
    n = int(result.lengths[row, 0])
    assert [int(x) for x in result.sequences[row, 0, :n]] == seq
    assert all(int(x) == 0 for x in result.sequences[row, 0, n:])


@pytest.mark.slow
def test_seq2seq_beam_scores_equal_teacher_forced_log_probabilities():
  """The cache is reordered with the beams: each hypothesis' score is its true log-probability."""
  cfg = T.TransformerConfig(num_layers=2, num_heads=2, head_dim=8)
  model = T.Seq2Seq(cfg, vocab_size=9, max_source_length=6, max_target_length=5)
  source = jnp.asarray([[3, 4, 5, 6, 0, 0], [7, 8, 2, 0, 0, 0]], jnp.int32)
  params = model.init(jax.random.key(0), source, jnp.zeros((2, 5), jnp.int32))["params"]
  beam, end = 3, 2
  encoded = model.apply({"params": params}, source, method=T.Seq2Seq.encode)
  enc_rows = jnp.repeat(encoded, beam, 0)
  mask_rows = jnp.repeat(source != 0, beam, 0)
  cache = T.init_cache(model, params, enc_rows, mask_rows)

  def step(args, cache, tokens, t):
    logits, state = model.apply({"params": args, "cache": cache}, tokens, enc_rows, mask_rows, decode=True,
                                position=t, method=T.Seq2Seq.decode, mutable=["cache"])
    return logits[:, 0], state["cache"]

  result = jax.jit(lambda p, c: decoding.beam_search(step, p, c, batch_size=2, beam_size=beam, max_length=5,
                                                       vocab_size=9, bos_id=1, end_id=end))(params, cache)
  for row in range(2):
    for k in range(beam):
      n = int(result.lengths[row, k])
      tokens = result.sequences[row, k, :n]
      target_in = jnp.concatenate([jnp.asarray([1]), tokens[:-1]])[None]
      log_probs = jax.nn.log_softmax(model.apply({"params": params}, source[row:row + 1], target_in), -1)
      expected = float(jnp.take_along_axis(log_probs[0], tokens[:, None], -1).sum())
      np.testing.assert_allclose(float(result.scores[row, k]), expected, rtol=1e-4, atol=1e-4)
    assert float(result.scores[row, 0]) >= float(result.scores[row, 1]) >= float(result.scores[row, 2])
