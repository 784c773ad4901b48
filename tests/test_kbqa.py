"""Note 7's task code: metrics, and that every constrained output is a fact of the base."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys import config as config_lib
from lmsys import trie as trie_lib
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
  model = kbqa.make_model(config, data.tokenizer.vocab_size)
  if train_steps:
    from lmsys import metrics
    config.train.num_steps = config.train.checkpoint_every = config.train.eval_every = train_steps
    with metrics.Writer(str(tmp_path)) as writer:
      model, result = kbqa.train(config, str(tmp_path), writer, data)
    params = result.params
  else:
    source = jnp.zeros((1, config.data.max_source_length), jnp.int32)
    params = model.init(jax.random.PRNGKey(3), source, jnp.zeros((1, config.data.max_target_length), jnp.int32))["params"]
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


def test_lookahead_bonus_is_log_p_over_one_plus_the_lcs_gain():
  rng = np.random.default_rng(1)
  b, k, v, lq = 2, 3, 9, 5
  question = jnp.asarray(rng.integers(0, v, size=(b * k, lq)), jnp.int32)  # 0 = padding
  prefixes = [rng.integers(1, v, size=rng.integers(0, 4)) for _ in range(b * k)]
  rows = jnp.zeros((b * k, lq + 1), jnp.int32)
  for i, prefix in enumerate(prefixes):
    for tok in prefix:
      rows = rows.at[i].set(kbqa.lcs_extend(rows[i:i + 1], question[i:i + 1], jnp.asarray([tok]))[0])
  seps = jnp.asarray([0, 1, 2, 1, 1, 0])
  log_probs = jnp.asarray(np.log(rng.dirichlet(np.ones(v), size=(b, k))), jnp.float32)
  bonus = kbqa.lookahead_bonus(question, {"lcs": rows, "seps": seps}, log_probs)
  as_text = lambda ids: "".join(chr(65 + int(t)) for t in ids if t != 0)
  for i in range(b * k):
    for tok in range(v):
      before = kbqa.lcs_length(as_text(prefixes[i]), as_text(question[i]))
      after = kbqa.lcs_length(as_text(list(prefixes[i]) + [tok]), as_text(question[i]))
      lp = float(log_probs.reshape(b * k, v)[i, tok])
      want = lp / (after - before + 1) - lp if int(seps[i]) >= 1 else 0.0
      assert float(bonus.reshape(b * k, v)[i, tok]) == pytest.approx(want, abs=1e-6)
