"""Note 7's task code: the official metric, the look-ahead as the reference computes it, the
decoding settings, and that every constrained output is a fact of the base."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.nn import trie as trie_lib
from lmsys.tasks import kbqa
from tests.conftest import REPO


def test_lcs_and_f1_match_their_definitions():
  assert kbqa.lcs_length("abcbdab", "bdcaba") == 4
  assert kbqa.lcs_length("", "abc") == 0 and kbqa.lcs_length("abc", "abc") == 3
  assert kbqa.lcs_length("We are shannonai", "We like shannonai") == 14  # pylcs's README example
  assert kbqa.f1_score("北京大学", "北京") == pytest.approx(2 * 2 / 6)
  assert kbqa.score_answers(["a", "b"], ["a", "c"]) == {"em": 0.5, "f1": 0.5, "mean": 0.5}


def test_scores_follow_the_official_kgclue_script():
  """CLUEbenchmark/KgCLUE baselines/evaluate_f1_em.py: normalize = ' '.join(text.lower().split())
  on both sides, then EM = equality and F1 = 2 pylcs.lcs / (len a + len b), 0. for two empty
  strings. Expected values worked out by hand from those lines."""
  assert kbqa.normalize_answer("  Hello \t  World\n") == "hello world"
  # Case and whitespace runs do not count: EM 1, F1 1.
  assert kbqa.score_answers(["Hello  World"], ["hello world"]) == {"em": 1.0, "f1": 1.0, "mean": 1.0}
  assert kbqa.score_answers(["ABC\tD"], ["abc d"])["em"] == 1.0
  # "hello world" (11 characters) against "hello" (5): LCS 5, F1 10 / 16.
  assert kbqa.score_answers(["Hello World"], ["HELLO"]) == {"em": 0.0, "f1": 0.625, "mean": 0.3125}
  # An inner space is a character: LCS("a b", "ab") = 2, F1 4 / 5.
  assert kbqa.score_answers(["a b"], ["ab"])["f1"] == pytest.approx(0.8)
  # Two empty answers: EM 1 (equal strings) but F1 0, as the script's f1_sim.
  assert kbqa.f1_score("", "") == 0.0
  assert kbqa.score_answers([""], ["  "]) == {"em": 1.0, "f1": 0.0, "mean": 0.5}
  # Averages over questions: EM (1 + 0) / 2, F1 (1 + 2*1/(2+3)) / 2.
  got = kbqa.score_answers(["Paris", "北京"], ["paris", "北京市"])
  assert got["em"] == 0.5 and got["f1"] == pytest.approx((1 + 0.8) / 2)


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
  assert data.max_target_length == data.longest_target() > 0  # data.max_target_length 0: the longest
  model = kbqa.make_model(config, data.tokenizer.vocab_size, data.max_target_length)
  if train_steps:
    from lmsys import metrics
    config.train.num_steps = config.train.checkpoint_every = config.train.eval_every = train_steps
    with metrics.Writer(str(tmp_path)) as writer:
      model, result = kbqa.train(config, str(tmp_path), writer, data)
    params = result.params
  else:
    source = jnp.zeros((1, config.data.max_source_length), jnp.int32)
    params = model.init(jax.random.key(3), source, jnp.zeros((1, data.max_target_length), jnp.int32))["params"]
  split = config.data.eval_split
  for lookahead in (False, True):
    for renormalise in (True, False):
      pred = kbqa.predict(model, params, data, split, beam_size=3, constrained=True, lookahead=lookahead,
                          renormalise=renormalise, batch_size=4)
      assert len(pred.facts) == len(data.splits[split])
      assert pred.finished.all() and not pred.cut.any()
      real = set(data.base.facts)
      for fact, obj in zip(pred.facts, pred.objects):
        assert fact is not None, "a constrained beam search ended without a complete fact"
        assert fact in real and obj == fact.object
  # Unconstrained decoding of a random model is free to leave the base.
  if not train_steps:
    pred = kbqa.predict(model, params, data, split, beam_size=3, constrained=False, lookahead=False, batch_size=4)
    assert not all(f is not None for f in pred.facts)
  trie = data.trie(distractors=True)
  assert all(trie_lib.contains(trie, data.tokenizer.encode_target(f, data.order)) for f in data.base.facts)


@pytest.mark.slow
def test_constrained_outputs_are_facts_only_when_max_target_length_covers_the_base(fixture_data_env):
  """The page's claim 'every constrained output is a fact' holds because max_target_length
  covers every target: with a limit 3 tokens short of the longest, the questions whose
  hypotheses cannot end get no fact, and they are counted (unfinished, cut), not hidden."""
  config = config_lib.load_config_file(str(REPO / "configs" / "kgclue.py"), "smoke")
  data = kbqa.load_data(config)
  short = 3  # every target has at least S [SEP] P [SEP] [SEP]: none ends in 3 tokens
  model = kbqa.make_model(config, data.tokenizer.vocab_size, short)
  source = jnp.zeros((1, config.data.max_source_length), jnp.int32)
  params = model.init(jax.random.key(3), source, jnp.zeros((1, short), jnp.int32))["params"]
  row = kbqa.evaluate_run(model, params, data, config.data.eval_split,
                          kbqa.DecodeRun(3, True, False, True, True, 0.0), batch_size=4)
  n = len(data.splits[config.data.eval_split])
  assert row["fact_rate"] == 0.0 and row["unfinished"] == n and row["cut"] == n and row["examples"] == n
  assert row["em"] == 0.0


def test_max_target_length_defaults_to_the_longest_target_and_a_shorter_one_is_refused(fixture_data_env):
  config = config_lib.load_config_file(str(REPO / "configs" / "kgclue.py"), "smoke")
  longest = kbqa.load_data(config).longest_target()
  config.data.max_target_length = longest + 5
  assert kbqa.load_data(config).max_target_length == longest + 5
  config.data.max_target_length = longest - 1
  with pytest.raises(ConfigError, match="config key 'data.max_target_length'"):
    kbqa.load_data(config)


@pytest.mark.parametrize("runs, key", [({"a": (0, True, False, True)}, "decode.runs.a"),
                                        ({"b": (2, False, True, True)}, "decode.runs.b"),
                                        ({"c": (2, True, False, True, "yes")}, "decode.runs.c"),
                                        ({"d": (2, True, False)}, "decode.runs.d")])
def test_bad_decode_runs_are_config_errors(runs, key):
  decode = ml_collections.ConfigDict({"runs": runs, "renormalise": True, "length_penalty": 0.0})
  with pytest.raises(ConfigError, match=f"config key '{key}'"):
    kbqa.decode_runs(decode)


def test_decode_runs_take_renormalise_from_the_run_or_the_section():
  decode = ml_collections.ConfigDict({"runs": {"a": (5, True, True, True), "b": (1, True, False, False, False)},
                                      "renormalise": True, "length_penalty": 0.5})
  runs = kbqa.decode_runs(decode)
  assert runs["a"] == kbqa.DecodeRun(5, True, True, True, True, 0.5)
  assert runs["b"] == kbqa.DecodeRun(1, True, False, False, False, 0.5)


def _text(ids):
  return "".join(chr(65 + int(t)) for t in ids if t != 0)


def test_lcs_with_the_encoded_question_counts_its_cls_and_sep():
  """LCS(first n tokens, [CLS] q [SEP]) against the dynamic programme on strings, the question
  written out with its [CLS] and [SEP] (ids 2 and 3; targets hold [SEP] but never [CLS])."""
  rng = np.random.default_rng(4)
  cls, sep = 2, 3
  for lq in (6, 40):  # bit-parallel and row-by-row
    question = np.where(rng.random((30, lq)) < 0.2, 0, rng.integers(4, 8, size=(30, lq)))
    sequences = np.where(rng.random((30, 9)) < 0.3, sep, rng.integers(4, 8, size=(30, 9)))
    lengths = rng.integers(0, 10, size=30)
    got = kbqa.lcs_with_encoded_question(jnp.asarray(question), jnp.asarray(sequences), jnp.asarray(lengths), sep)
    for i in range(30):
      want = kbqa.lcs_length(_text(sequences[i, :lengths[i]]), _text([cls, *question[i], sep]))
      assert int(got[i]) == want, (lq, i)
    both = kbqa.lcs_with_encoded_question(jnp.asarray(question), jnp.asarray(sequences),
                                          (jnp.asarray(lengths), jnp.full(30, 9)), sep)
    np.testing.assert_array_equal(both[0], got)
    assert [int(x) for x in both[1][:3]] == [
        kbqa.lcs_length(_text(sequences[i]), _text([cls, *question[i], sep])) for i in range(3)]
  # A literal case: "AB[SEP]" against [CLS] "BA" [SEP]: "A[SEP]" or "B[SEP]", 2 (1 without [SEP]).
  got = kbqa.lcs_with_encoded_question(jnp.asarray([[5, 4]]), jnp.asarray([[4, 5, sep]]), jnp.asarray([3]), sep)
  assert int(got[0]) == 2


@pytest.mark.parametrize("max_group", [None, 2])
@pytest.mark.slow
def test_lookahead_matches_the_reference_rule_over_all_completions(max_group):
  """lookahead_bonus against the note's reference code (bojone/KgCLUE-bert4keras baseline.py,
  AutoQA.predict), written out in Python: once S is decoded and more than one token is allowed,
  w(t) = max(1, max over keys c through t of LCS(c, Q) - LCS(prefix, Q) + 1), with Q = [CLS] q
  [SEP] and keys the targets without their closing [SEP]; p -> p^(1/w) on the model's
  probabilities, kept on the allowed tokens, renormalised. Checked with the renormalisation
  (beam search's default) and without it (p^(1/w) as it is). Random bases where subjects share
  prefixes and facts. max_group 2 sends most groups down the wide path (`Lookahead.wide`)."""
  rng = np.random.default_rng(1)
  cls, sep, v = 2, 3, 10
  reweighted = 0
  for trial in range(4):
    subjects = [list(rng.integers(4, v, size=rng.integers(1, 3))) for _ in range(3)]
    seqs = {tuple(subjects[rng.integers(3)] + [sep] + list(rng.integers(4, v, size=rng.integers(1, 3))) + [sep]
                  + list(rng.integers(4, v, size=rng.integers(0, 2))) + [sep]) for _ in range(12)}
    seqs = sorted(seqs)
    keys = [s[:-1] for s in seqs]
    tokens, lengths = trie_lib.pad_sequences(seqs, dtype=np.int32)
    trie = trie_lib.build_trie(tokens, lengths, v)
    tables = jax.tree.map(jnp.asarray, kbqa.build_lookahead(trie, tokens, lengths, sep, max_group=max_group))
    # Beams at every prefix of every sequence (the root excluded), plus one DEAD beam.
    prefixes = sorted({s[:d] for s in seqs for d in range(1, len(s) + 1)})
    nodes = np.array([trie_lib.walk(trie, p) for p in prefixes] + [trie_lib.DEAD], np.int32)
    prefixes.append(None)
    question = np.where(rng.random(6) < 0.2, 0, rng.integers(4, v, size=6))  # 0 = padding
    encoded = [cls, *question, sep]
    allowed = np.asarray(trie_lib.next_token_mask(trie_lib.to_device(trie), nodes, v))
    p_model = rng.dirichlet(np.ones(v), size=len(nodes))
    lp = np.where(allowed, np.log(p_model), kbqa.decoding.NEG_INF).astype(np.float32)
    args = kbqa.lookahead_args(jnp.asarray(np.tile(question, (len(nodes), 1)), jnp.int32), 1, tables)
    bonus = kbqa.lookahead_bonus(args, None, jnp.asarray(lp)[:, None, :], jnp.asarray(nodes), sep_id=sep)
    raw = jnp.asarray(lp) + bonus[:, 0, :]
    renormalised = np.asarray(kbqa.decoding.renormalise_allowed(raw, jnp.asarray(allowed)))
    for i, prefix in enumerate(prefixes):
      weights = np.ones(v)
      if prefix is not None and sep in prefix and allowed[i].sum() > 1:
        lcs0 = kbqa.lcs_length(_text(prefix), _text(encoded))
        for c in keys:
          if len(c) > len(prefix) and c[:len(prefix)] == prefix:
            w = kbqa.lcs_length(_text(c), _text(encoded)) - lcs0
            weights[c[len(prefix)]] = max(w + 1, weights[c[len(prefix)]])
        reweighted += int((weights[allowed[i]] > 1).any())
      p = np.where(allowed[i], p_model[i] ** (1 / weights), 0.0)
      if not allowed[i].any():
        continue
      want_raw = np.log(np.maximum(p, 1e-30))
      want = np.log(np.maximum(p / p.sum(), 1e-30))
      where = allowed[i]
      np.testing.assert_allclose(np.asarray(raw[i])[where], want_raw[where], atol=1e-5,
                                 err_msg=f"trial {trial}, prefix {prefix} (not renormalised)")
      np.testing.assert_allclose(renormalised[i][where], want[where], atol=1e-5,
                                 err_msg=f"trial {trial}, prefix {prefix}")
  assert reweighted >= 8, "too few prefixes where the rule changes anything: the check would be idle"


def _wide_base(rng, sep, v):
  """Targets `S [SEP] P [SEP] M [SEP]` where subject [4] has 30 facts and 5 others have 2-3."""
  subjects = [[4]] + [[5 + i % 3, 5 + i // 3] for i in range(5)]
  seqs = set()
  for i, subject in enumerate(subjects):
    for _ in range(30 if i == 0 else int(rng.integers(2, 4))):
      seqs.add(tuple(subject + [sep] + list(rng.integers(4, v, size=rng.integers(1, 4))) + [sep]
                     + list(rng.integers(4, v, size=rng.integers(0, 3))) + [sep]))
  return sorted(seqs)


def test_capping_the_lookahead_group_width_keeps_the_decoded_outputs():
  """A base with one subject group far wider than the rest: the tables with groups capped at 3
  facts (the wide group read from per-batch LCS tables) give the same bonus as uncapped ones
  (every group a padded row), and beam search with the rule decodes exactly the same beams."""
  rng = np.random.default_rng(7)
  sep, v, k = 3, 12, 3
  seqs = _wide_base(rng, sep, v)
  tokens, lengths = trie_lib.pad_sequences(seqs, dtype=np.int32)
  trie = trie_lib.build_trie(tokens, lengths, v)
  uncapped = kbqa.build_lookahead(trie, tokens, lengths, sep, max_group=None)
  capped = kbqa.build_lookahead(trie, tokens, lengths, sep, max_group=3)
  wide_size = sum(s[0] == 4 for s in seqs)
  assert uncapped.members.shape[1] == wide_size and (uncapped.wide == -1).all()
  assert capped.members.shape[1] == 3 and len(capped.wide) == wide_size
  assert sorted(tokens[capped.wide, 0].tolist()) == [4] * wide_size

  questions = jnp.asarray(rng.integers(4, v, size=(4, 7)) * (rng.random((4, 7)) > 0.2), jnp.int32)
  logits = jax.random.normal(jax.random.key(0), (tokens.shape[1] + 1, v, v))  # by position and last token
  device_trie = trie_lib.to_device(trie)

  def decode(tables):
    tables = jax.tree.map(jnp.asarray, tables)
    step = lambda args, cache, last, t: (logits[t, last[:, 0]] + cache, cache)
    return kbqa.decoding.beam_search(step, None, jnp.zeros((4 * k, v)), batch_size=4, beam_size=k,
                                     max_length=tokens.shape[1], vocab_size=v, bos_id=1, end_id=sep, end_count=3,
                                     trie=device_trie, bonus_fn=functools.partial(kbqa.lookahead_bonus, sep_id=sep),
                                     bonus_args=kbqa.lookahead_args(questions, k, tables))

  before, after = decode(uncapped), decode(capped)
  for field in before._fields:
    np.testing.assert_array_equal(np.asarray(getattr(after, field)), np.asarray(getattr(before, field)), err_msg=field)
  assert (np.asarray(before.sequences)[:, :, 0] == 4).any(), "no beam in the wide group: the check would be idle"

  # The bonus itself, at every prefix past a subject's [SEP], for each question.
  prefixes = sorted({s[:d] for s in seqs for d in range(s.index(sep) + 1, len(s))})
  nodes = jnp.asarray([trie_lib.walk(trie, p) for p in prefixes], jnp.int32)
  lp = jnp.where(trie_lib.next_token_mask(device_trie, nodes, v), -1.5, kbqa.decoding.NEG_INF)[:, None, :]
  for q in range(4):
    rows = jnp.tile(questions[q], (len(prefixes), 1))
    got = [np.asarray(kbqa.lookahead_bonus(kbqa.lookahead_args(rows, 1, jax.tree.map(jnp.asarray, t)), None, lp,
                                           nodes, sep_id=sep)) for t in (uncapped, capped)]
    np.testing.assert_array_equal(got[1], got[0])
    assert (got[0] != 0).any()
