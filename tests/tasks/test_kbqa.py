"""Note 7's task code: metrics, and that every constrained output is a fact of the base."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys import config as config_lib
from lmsys.nn import trie as trie_lib
from lmsys.tasks import kbqa
from tests.conftest import REPO


def test_lcs_and_f1_match_their_definitions():
  assert kbqa.lcs_length("abcbdab", "bdcaba") == 4
  assert kbqa.lcs_length("", "abc") == 0 and kbqa.lcs_length("abc", "abc") == 3
  assert kbqa.f1_score("北京大学", "北京") == pytest.approx(2 * 2 / 6)
  assert kbqa.score_answers(["a", "b"], ["a", "c"]) == {"em": 0.5, "f1": 0.5, "mean": 0.5}


def test_lcs_rows_extend_like_the_dynamic_programme():
  rng = np.random.default_rng(0)
  for _ in range(20):
    q = rng.integers(1, 5, size=7)
    text = rng.integers(1, 5, size=6)
    rows = jnp.zeros((1, 8), jnp.int32)
    for tok in text:
      rows = kbqa.lcs_extend(rows, jnp.asarray(q)[None], jnp.asarray([tok]))
    want = kbqa.lcs_length("".join(map(chr, 65 + text)), "".join(map(chr, 65 + q)))
    assert int(rows[0, -1]) == want


@pytest.mark.slow
@pytest.mark.parametrize("train_steps", [0, 30], ids=["random_model", "trained_model"])
def test_every_constrained_output_is_a_fact_of_the_base(fixture_data_env, train_steps, tmp_path):
  config = config_lib.load_config_file(str(REPO / "configs" / "kgclue.py"), "smoke")
  data = kbqa.load_data(config)
  model = kbqa.make_model(config, data.tokenizer.vocab_size, data.max_target_length)
  if train_steps:
    from lmsys import metrics
    config.train.num_steps = config.train.checkpoint_every = config.train.eval_every = train_steps
    with metrics.Writer(str(tmp_path)) as writer:
      model, result = kbqa.train(config, str(tmp_path), writer, data)
    params = result.params
  else:
    source = jnp.zeros((1, config.data.max_source_length), jnp.int32)
    params = model.init(jax.random.PRNGKey(3), source, jnp.zeros((1, data.max_target_length), jnp.int32))["params"]
  split = config.data.eval_split
  for lookahead in (False, True):
    objects, facts = kbqa.predict(model, params, data, split, beam_size=3, constrained=True,
                                  lookahead=lookahead, batch_size=4)
    assert len(facts) == len(data.splits[split])
    real = set(data.base.facts)
    for fact, obj in zip(facts, objects):
      assert fact is not None, "a constrained beam search ended without a complete fact"
      assert fact in real and obj == fact.object
  # Unconstrained decoding of a random model is free to leave the base.
  if not train_steps:
    _, facts = kbqa.predict(model, params, data, split, beam_size=3, constrained=False, lookahead=False,
                            batch_size=4)
    assert not all(f is not None for f in facts)
  trie = data.trie(distractors=True)
  assert all(trie_lib.contains(trie, data.tokenizer.encode_target(f, data.order)) for f in data.base.facts)


def test_lookahead_matches_the_reference_rule_over_all_completions():
  """lookahead_bonus against the note's reference code, written out in Python: once S is decoded,
  w(t) = max(1, max over completions c through t of LCS(c, q) - LCS(prefix, q) + 1), p -> p^(1/w)
  over the allowed tokens, renormalised. Random bases where subjects share prefixes and facts."""
  rng = np.random.default_rng(1)
  sep, v = 3, 10
  reweighted = 0
  as_text = lambda ids: "".join(chr(65 + int(t)) for t in ids if t != 0)
  for trial in range(4):
    subjects = [list(rng.integers(4, v, size=rng.integers(1, 3))) for _ in range(3)]
    seqs = {tuple(subjects[rng.integers(3)] + [sep] + list(rng.integers(4, v, size=rng.integers(1, 3))) + [sep]
                  + list(rng.integers(4, v, size=rng.integers(0, 2))) + [sep]) for _ in range(12)}
    seqs = sorted(seqs)
    tokens, lengths = trie_lib.pad_sequences(seqs, dtype=np.int32)
    trie = trie_lib.build_trie(tokens, lengths, v)
    tables = jax.tree.map(jnp.asarray, kbqa.build_lookahead(trie, tokens, lengths, sep))
    # Beams at every prefix of every sequence (the root excluded), plus one DEAD beam.
    prefixes = sorted({s[:d] for s in seqs for d in range(1, len(s) + 1)})
    nodes = np.array([trie_lib.walk(trie, p) for p in prefixes] + [trie_lib.DEAD], np.int32)
    prefixes.append(None)
    question = rng.integers(0, v, size=6)  # 0 = padding
    allowed = np.asarray(trie_lib.next_token_mask(trie_lib.to_device(trie), nodes, v))
    raw = np.log(rng.dirichlet(np.ones(v), size=len(nodes)))
    norm = np.log(np.maximum((np.exp(raw) * allowed).sum(1, keepdims=True), 1e-30))
    lp = np.where(allowed, raw - norm, kbqa.decoding.NEG_INF)
    q_rows = jnp.asarray(np.tile(question, (len(nodes), 1)), jnp.int32)
    bonus = kbqa.lookahead_bonus((q_rows, tables), None, jnp.asarray(lp, jnp.float32)[:, None, :],
                                 jnp.asarray(nodes))
    got = lp + np.asarray(bonus)[:, 0, :]
    for i, prefix in enumerate(prefixes):
      want = lp[i].copy()
      if prefix is not None and sep in prefix:
        weights = np.ones(v)
        lcs0 = kbqa.lcs_length(as_text(prefix), as_text(question))
        for c in seqs:
          if len(c) > len(prefix) and c[:len(prefix)] == prefix:
            w = kbqa.lcs_length(as_text(c), as_text(question)) - lcs0
            weights[c[len(prefix)]] = max(w + 1, weights[c[len(prefix)]])
        reweighted += int((weights[allowed[i]] > 1).any())
        p = np.where(allowed[i], np.exp(lp[i]) ** (1 / weights), 0.0)
        want = np.where(allowed[i], np.log(np.maximum(p / p.sum(), 1e-30)), lp[i])
      np.testing.assert_allclose(np.where(allowed[i], got[i], 0), np.where(allowed[i], want, 0),
                                 atol=1e-5, err_msg=f"trial {trial}, prefix {prefix}")
  assert reweighted >= 8, "too few prefixes where the rule changes anything: the check would be idle"
