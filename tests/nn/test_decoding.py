"""Beam search: exact on small models (brute force), greedy as beam 1, the pool of finished
hypotheses, renormalisation over a trie, the length penalty, consistent with the Seq2Seq cache."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.models import transformer as T
from lmsys.nn import decoding
from lmsys.nn import trie as trie_lib

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


BODY = (1, 2)  # the tokens that do not end a hypothesis (END = 3 ends it: end_count 1)


def _tree_model(probs, max_length, default):
  """A model whose next-token distribution depends on the whole prefix: probs[prefix] (a dict
  token -> p), `default` for prefixes not listed. Returns (log p [S, V], next state [S, V])
  over the S prefixes of BODY tokens shorter than max_length (state 0: the empty prefix)."""
  prefixes = [()] + [p for n in range(1, max_length) for p in itertools.product(BODY, repeat=n)]
  index = {p: i for i, p in enumerate(prefixes)}
  log_p = np.full((len(prefixes), V), -np.inf, np.float32)
  next_state = np.zeros((len(prefixes), V), np.int32)
  for prefix, i in index.items():
    for token, p in probs.get(prefix, default).items():
      log_p[i, token] = np.log(p)
    for token in BODY:
      next_state[i, token] = index.get(prefix + (token,), 0)
  return jnp.asarray(log_p), jnp.asarray(next_state)


def _tree_step(args, cache, tokens, t):
  """The cache is each row's prefix state; the first call (t = 0) reads BOS."""
  log_p, next_state = args
  state = jnp.where(t == 0, 0, next_state[cache, tokens[:, 0]])
  return log_p[state], state


def _search(args, beam, max_length, **kwargs):
  return decoding.beam_search(_tree_step, args, jnp.zeros((beam,), jnp.int32), batch_size=1, beam_size=beam,
                              max_length=max_length, vocab_size=V, bos_id=BOS, end_id=END, **kwargs)


def _hypotheses(result):
  """[(tokens up to the length, score, finished)] of batch row 0, best first."""
  return [(tuple(int(x) for x in s[:n]), float(sc), bool(f))
          for s, sc, n, f in zip(result.sequences[0], result.scores[0], result.lengths[0], result.finished[0])]


# Beam 2: [END] ends first with p 0.25 and ranks second at step 0; at step 1 both live
# hypotheses' extensions [1, 1] (0.35) and [1, 2] (0.343) outrank it, and they end at 0.175
# and 0.1715. A beam whose K slots hold finished and live hypotheses together (lmsys before
# the finished pool) evicted [END] at step 1 and returned [1, 1, END] (0.175); every other
# sequence scores at most 0.175, so the best finished sequence is [END].
EVICTION_CASE = {(): {1: 0.7, END: 0.25, 2: 0.05},
                 (1,): {1: 0.5, 2: 0.49, END: 0.01},
                 (1, 1): {END: 0.5, 1: 0.25, 2: 0.25},
                 (1, 2): {END: 0.5, 1: 0.25, 2: 0.25}}
EVICTION_DEFAULT = {1: 0.4, 2: 0.4, END: 0.2}


def test_a_finished_hypothesis_outranked_by_live_ones_is_kept_in_the_pool():
  args = _tree_model(EVICTION_CASE, 3, EVICTION_DEFAULT)
  result = _search(args, 2, 3)
  got = _hypotheses(result)
  assert [g[0] for g in got] == [(END,), (1, 1, END)]
  np.testing.assert_allclose([g[1] for g in got], np.log([0.25, 0.175]), rtol=1e-6)
  assert [g[2] for g in got] == [True, True]
  assert [int(n) for n in result.lengths[0]] == [1, 3]
  assert not bool(result.cut[0])


def test_length_penalty_ranks_the_pool_by_score_over_length():
  # score / length: [END] log .25 / 1 = -1.386; [1, 1, END] log .175 / 3 = -0.581;
  # [1, 2, END] log .1715 / 3 = -0.588: the longer hypotheses now come first.
  args = _tree_model(EVICTION_CASE, 3, EVICTION_DEFAULT)
  got = _hypotheses(_search(args, 2, 3, length_penalty=1.0))
  assert [g[0] for g in got] == [(1, 1, END), (1, 2, END)]
  np.testing.assert_allclose([g[1] for g in got], np.log([0.175, 0.1715]), rtol=1e-6)  # summed, not divided


def _brute_force_trie(args, sequences, renormalise):
  """Every sequence of the trie with its score: summed log p, renormalised over the tokens the
  trie allows after each prefix (or not), best first."""
  log_p, next_state = (np.asarray(a) for a in args)
  scored = []
  for seq in sequences:
    state, score = 0, 0.0
    for i, token in enumerate(seq):
      allowed = {s[i] for s in sequences if len(s) > i and s[:i] == seq[:i]}
      norm = np.log(sum(np.exp(log_p[state, a]) for a in allowed)) if renormalise else 0.0
      score += log_p[state, token] - norm
      state = next_state[state, token]
    scored.append((tuple(seq), score))
  return sorted(scored, key=lambda kv: -kv[1])


@pytest.mark.parametrize("beam", [3, 4, 5])
@pytest.mark.slow
def test_constrained_beam_equals_brute_force_with_and_without_renormalisation(beam):
  """A trie of `beam` sequences (so the beam holds every prefix: the search is exhaustive) over
  a prefix-dependent random model; the trie forces tokens (one child), where renormalising
  changes the scores. Both ways the beam returns every sequence, in brute force's order, with
  its brute-force score; over the seeds the two orders differ (the option is not idle)."""
  orders_differ = 0
  for seed in range(6):
    rng = np.random.default_rng(100 * beam + seed)
    max_length = 6
    seqs = set()
    while len(seqs) < beam:
      seqs.add(tuple(rng.choice(BODY, size=rng.integers(0, max_length))) + (END,))
    seqs = sorted(seqs)
    probs = {p: dict(zip((1, 2, END), rng.dirichlet(np.ones(3) * 0.7)))
             for n in range(max_length) for p in itertools.product(BODY, repeat=n)}
    args = _tree_model(probs, max_length, None)
    trie = trie_lib.to_device(trie_lib.build_trie_from_sequences(seqs, V))
    orders = []
    for renormalise in (True, False):
      want = _brute_force_trie(args, seqs, renormalise)
      got = _hypotheses(_search(args, beam, max_length, trie=trie, end_count=1, renormalise=renormalise))
      assert [g[0] for g in got] == [w[0] for w in want], (seed, renormalise)
      np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], rtol=1e-5, atol=1e-5)
      assert all(g[2] for g in got)
      orders.append([w[0] for w in want])
    orders_differ += orders[0] != orders[1]
  assert orders_differ >= 1


def test_renormalisation_makes_a_forced_token_free():
  # The trie allows only [1, 1, END]: renormalised, every step is forced and costs nothing.
  probs = {(): {1: 0.5, 2: 0.3, END: 0.2}, (1,): {1: 0.1, 2: 0.6, END: 0.3}, (1, 1): {END: 0.4, 1: 0.3, 2: 0.3}}
  args = _tree_model(probs, 3, {1: 0.4, 2: 0.4, END: 0.2})
  trie = trie_lib.to_device(trie_lib.build_trie_from_sequences([(1, 1, END)], V))
  on = _hypotheses(_search(args, 1, 3, trie=trie, renormalise=True))[0]
  off = _hypotheses(_search(args, 1, 3, trie=trie, renormalise=False))[0]
  assert on[0] == off[0] == (1, 1, END)
  assert on[1] == pytest.approx(0.0, abs=1e-6)
  assert off[1] == pytest.approx(np.log(0.5 * 0.1 * 0.4), rel=1e-6)


def test_a_hypothesis_that_cannot_end_within_max_length_is_reported():
  # [1, 1, 1, END] needs 4 steps, max_length is 3: it never finishes, and the search is cut.
  args = _tree_model({}, 3, {1: 0.6, 2: 0.2, END: 0.2})
  trie = trie_lib.to_device(trie_lib.build_trie_from_sequences([(1, 1, 1, END)], V))
  result = _search(args, 2, 3, trie=trie)
  assert not bool(result.finished[0, 0]) and bool(result.cut[0])
  assert [int(x) for x in result.sequences[0, 0]] == [1, 1, 1]
  # With a sequence that fits, that one is returned first and finished; the long one is still cut.
  trie = trie_lib.to_device(trie_lib.build_trie_from_sequences([(1, 1, 1, END), (2, END)], V))
  got = _hypotheses(_search(args, 2, 3, trie=trie))
  assert got[0][0] == (2, END) and got[0][2] and not got[1][2]


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
