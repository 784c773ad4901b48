"""lmsys.nn.trie: the flat-array trie against a brute-force set of prefixes, on the host and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.nn import trie


def _random_base(seed, vocab=6, end_token=0, num=40, max_len=7):
  """Random sequences over a small vocabulary (prefixes collide), with duplicates, prefixes of
  other sequences, and the empty sequence now and then."""
  rng = np.random.default_rng(seed)
  tokens = [t for t in range(vocab) if t != end_token]
  seqs = [list(rng.choice(tokens, rng.integers(1, max_len + 1))) for _ in range(num)]
  seqs += [s[:rng.integers(0, len(s) + 1)] for s in seqs[:num // 4]]  # prefixes (maybe empty)
  seqs += [list(s) for s in seqs[:num // 8]]                          # duplicates
  order = rng.permutation(len(seqs))
  return [[int(t) for t in seqs[i]] for i in order]


def _brute_force(seqs, vocab, end_token):
  """{prefix: allowed next tokens} for every prefix of every sequence, from sets."""
  full = {tuple(s) for s in seqs}
  allowed = {}
  for s in seqs:
    for k in range(len(s) + 1):
      allowed.setdefault(tuple(s[:k]), set())
  for s in full:
    for k in range(len(s)):
      allowed[tuple(s[:k])].add(s[k])
  for p in full:
    allowed[p].add(end_token)
  return allowed


def _dense(sets, vocab):
  out = np.zeros((len(sets), vocab), bool)
  for i, s in enumerate(sets):
    out[i, sorted(s)] = True
  return out


# (seed, vocabulary, end_token): end_token 3 sorts the padding between tokens, not first.
CASES = [(seed, vocab, end) for seed in range(5) for vocab, end in ((4, 0), (6, 0), (7, 3))]


@pytest.mark.parametrize("seed,vocab,end_token", CASES)
def test_mask_and_advance_match_brute_force(seed, vocab, end_token):
  seqs = _random_base(seed, vocab, end_token)
  tokens, lengths = trie.pad_sequences(seqs, pad_value=end_token)
  t = trie.build_trie(tokens, lengths, vocab, end_token)
  for chunk_rows in (1, 3, 7):  # the two passes carry state across chunks of rows: same trie
    for x, y in zip(t, trie.build_trie(tokens, lengths, vocab, end_token, chunk_rows=chunk_rows)):
      np.testing.assert_array_equal(x, y)
  allowed = _brute_force(seqs, vocab, end_token)
  assert t.num_nodes == len(allowed)  # one node per distinct prefix, the empty one included

  # Layout: children ranges are ordered, tokens ascend inside a range, value names a first occurrence.
  fc, tok = t.first_child, t.token
  assert fc[0] == 1 and fc[-1] == t.num_nodes and np.all(np.diff(fc) >= 0)
  for v in range(t.num_nodes):
    assert np.all(np.diff(tok[fc[v]:fc[v + 1]]) > 0)
  for i, s in enumerate(seqs):
    node = trie.walk(t, s)
    assert t.value[node] == min(j for j, o in enumerate(seqs) if o == s)
    assert trie.prefix(t, node) == s
  np.testing.assert_array_equal(trie.parents(t)[1:] <= np.arange(1, t.num_nodes), True)

  prefixes = sorted(allowed)
  nodes = np.array([trie.walk(t, p) for p in prefixes], np.int32)
  assert np.all(nodes >= 0) and len(set(nodes.tolist())) == len(prefixes)
  expected = _dense([allowed[p] for p in prefixes], vocab)
  arrays = trie.to_device(t)
  mask_fn = jax.jit(trie.next_token_mask, static_argnums=2)
  np.testing.assert_array_equal(np.asarray(mask_fn(arrays, nodes, vocab)), expected)
  if seed == 0:  # eager (no jit) gives the same
    np.testing.assert_array_equal(np.asarray(trie.next_token_mask(arrays, nodes, vocab)), expected)

  # advance, for every (prefix, token): the node of prefix+[token], DEAD outside, end keeps a terminal.
  advance_fn = jax.jit(trie.advance)
  index = {p: n for p, n in zip(prefixes, nodes.tolist())}
  from_nodes = np.repeat(nodes, vocab)
  with_tokens = np.tile(np.arange(vocab, dtype=np.int32), len(prefixes))
  want = []
  for p in prefixes:
    for token in range(vocab):
      if token == end_token:
        want.append(index[p] if end_token in allowed[p] else trie.DEAD)
      else:
        want.append(index.get(p + (token,), trie.DEAD))
  for fn in (trie.advance, advance_fn)[0 if seed == 0 else 1:]:
    got = np.asarray(fn(arrays, from_nodes, with_tokens))
    np.testing.assert_array_equal(got, want)
    assert np.all((got >= 0) == expected.reshape(-1))  # advance follows the mask exactly
  # Off the trie: a DEAD beam allows nothing and stays DEAD.
  dead = np.full(vocab, trie.DEAD, np.int32)
  assert not np.asarray(mask_fn(arrays, dead, vocab)).any()
  np.testing.assert_array_equal(np.asarray(advance_fn(arrays, dead, np.arange(vocab))), trie.DEAD)


@pytest.mark.parametrize("seed", range(3))
def test_non_prefixes_are_dead_and_walk_matches_advance(seed):
  vocab = 9
  seqs = _random_base(seed, vocab, num=30)
  t = trie.build_trie_from_sequences(seqs, vocab)
  prefixes = {tuple(s[:k]) for s in seqs for k in range(len(s) + 1)}
  rng = np.random.default_rng(100 + seed)
  probes = [[int(x) for x in rng.integers(1, vocab, rng.integers(1, 8))] for _ in range(300)]
  walked = [trie.walk(t, p) for p in probes]
  assert [n >= 0 for n in walked] == [tuple(p) in prefixes for p in probes]
  assert sum(n < 0 for n in walked) > 50  # many probes leave the trie

  @jax.jit
  def follow(arrays, tokens, lengths):  # advance token by token; past its length a probe waits
    def step(nodes, d):
      moved = trie.advance(arrays, nodes, tokens[:, d])
      return jnp.where(d < lengths, moved, nodes), None
    return jax.lax.scan(step, jnp.zeros(tokens.shape[0], jnp.int32), jnp.arange(tokens.shape[1]))[0]

  tokens, lengths = trie.pad_sequences(probes)
  np.testing.assert_array_equal(np.asarray(follow(trie.to_device(t), tokens.astype(np.int32), lengths)),
                                walked)


def test_jit_scan_walk_and_pytree_arguments():
  """A lax.scan that follows each sequence token by token inside one jit (the trie an argument),
  then pads with end_token: every beam ends on its sequence's node."""
  vocab = 5
  seqs = _random_base(7, vocab, num=24)
  t = trie.build_trie_from_sequences(seqs, vocab)
  tokens, _ = trie.pad_sequences(seqs, pad_value=0)
  tokens = np.concatenate([tokens, np.zeros((len(seqs), 2), tokens.dtype)], 1).astype(np.int32)

  @jax.jit
  def follow(arrays, tokens):
    def step(nodes, column):
      ok = trie.next_token_mask(arrays, nodes, vocab)[jnp.arange(nodes.shape[0]), column]
      return trie.advance(arrays, nodes, column), ok
    return jax.lax.scan(step, jnp.zeros(tokens.shape[0], jnp.int32), tokens.T)

  nodes, ok = follow(trie.to_device(t), tokens)
  assert bool(ok.all())
  np.testing.assert_array_equal(np.asarray(nodes), [trie.walk(t, s) for s in seqs])
  assert all(int(t.value[n]) >= 0 for n in np.asarray(nodes))
  # The same jitted function takes another trie of other sizes (a retrace, no closed-over constants).
  other = trie.build_trie_from_sequences([[1, 2], [1, 3, 4]], vocab)
  nodes, ok = follow(trie.to_device(other), np.array([[1, 3, 4, 0], [1, 2, 0, 0]], np.int32))
  assert bool(ok.all()) and np.all(np.asarray(nodes) >= 0)


def test_wider_vocab_pads_mask_and_root():
  t = trie.build_trie_from_sequences([[1, 2], [3]], 4)
  mask = np.asarray(trie.next_token_mask(trie.to_device(t), np.array([0, 1, 2, 3]), 6))
  assert mask.shape == (4, 6)
  np.testing.assert_array_equal(mask[0], [0, 1, 0, 1, 0, 0])      # root: first tokens
  np.testing.assert_array_equal(mask[trie.walk(t, [1])], [0, 0, 1, 0, 0, 0])
  np.testing.assert_array_equal(mask[trie.walk(t, [3])], [1, 0, 0, 0, 0, 0])  # leaf: end only
  with pytest.raises(ValueError, match="smaller"):
    trie.next_token_mask(t, np.array([0]), 3)


def test_empty_base_and_empty_sequence():
  t = trie.build_trie_from_sequences([], 3)
  assert t.num_nodes == 1 and not t.root_mask.any()
  assert not np.asarray(trie.next_token_mask(trie.to_device(t), np.array([0]), 3)).any()
  t = trie.build_trie_from_sequences([[], [2]], 3)
  np.testing.assert_array_equal(np.asarray(trie.next_token_mask(t, np.array([0]), 3))[0], [1, 0, 1])
  assert trie.contains(t, []) and trie.contains(t, [2]) and not trie.contains(t, [1])


def test_padded_input_equals_list_input_and_row_order_only_changes_values():
  seqs = _random_base(3, 6, num=50)
  a = trie.build_trie_from_sequences(seqs, 6)
  tokens, lengths = trie.pad_sequences(seqs)
  b = trie.build_trie(tokens.astype(np.int64), lengths, 6)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  perm = np.random.default_rng(0).permutation(len(seqs))
  c = trie.build_trie_from_sequences([seqs[i] for i in perm], 6)
  for name in ("first_child", "token", "root_mask", "slots"):
    np.testing.assert_array_equal(getattr(a, name), getattr(c, name))
  np.testing.assert_array_equal(a.value >= 0, c.value >= 0)


def test_bad_sequences_are_refused():
  with pytest.raises(ValueError, match="sequence 1: must not contain end_token"):
    trie.build_trie_from_sequences([[1, 2], [1, 0, 2]], 4)
  with pytest.raises(ValueError, match="sequence 0: tokens must lie in"):
    trie.build_trie_from_sequences([[1, 4]], 4)
  tokens = np.array([[1, 2, 3]])
  with pytest.raises(ValueError, match="padding past its length"):
    trie.build_trie(tokens, np.array([2]), 4)  # position 2 holds 3, not end_token
