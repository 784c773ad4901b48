"""lmsys BERT (note 5) against transformers' recorded outputs: no torch or transformers needed.

tests/testdata/bert_tiny/ holds a tiny random BertForPreTraining saved by transformers, and
transformers' tokenizer ids and logits for four sentence pairs, written by
scripts/record_bert_reference.py (which also runs the live comparison; tests/models/test_bert.py
runs it too where the `hf` extra is installed).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.data import wordpiece
from lmsys.models import bert, hf_bert

RECORDED = pathlib.Path(__file__).resolve().parents[1] / "testdata" / "bert_tiny"
FIELDS = ("input_ids", "token_type_ids", "attention_mask")


@pytest.fixture(scope="module")
def reference():
  """(the recorded arrays, reference.json's contents)."""
  with np.load(RECORDED / "reference.npz") as arrays:
    recorded = dict(arrays)
  return recorded, json.loads((RECORDED / "reference.json").read_text(encoding="utf-8"))


def _batch(recorded):
  """The batch the outputs were recorded for: transformers' fast tokenizer at max_length 24."""
  return {f: jnp.asarray(recorded[f"fast_24_{f}"]) for f in FIELDS}


def test_recorded_files_are_the_tiny_model():
  config, params = hf_bert.load_hf_bert(str(RECORDED))
  assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 4)
  assert config.dtype == jnp.float32
  assert sum(p.size for p in jax.tree_util.tree_leaves(params)) < 100_000
  assert sum(f.stat().st_size for f in RECORDED.iterdir()) < 500_000  # a few hundred KB in git


def test_logits_equal_transformers_recorded_outputs(reference):
  recorded, _ = reference
  config, params = hf_bert.load_hf_bert(str(RECORDED))
  batch = _batch(recorded)
  lengths = np.asarray(batch["attention_mask"]).sum(1)
  assert len(set(lengths.tolist())) > 2 and lengths.min() < 24 and lengths.max() == 24  # padding, truncation
  mlm, nsp = bert.BertForPreTraining(config).apply(params, *(batch[f] for f in FIELDS))
  assert mlm.dtype == nsp.dtype == jnp.float32
  assert mlm.shape == recorded["mlm_logits"].shape == (4, 24, config.vocab_size)
  # Logits of order 1 (not near zero): a tolerance of 1e-4 is then a strict test.
  assert np.abs(recorded["nsp_logits"]).max() > 0.5 and np.abs(recorded["mlm_logits"]).max() > 2
  np.testing.assert_allclose(np.asarray(nsp), recorded["nsp_logits"], atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(mlm), recorded["mlm_logits"], atol=1e-4, rtol=0)
  # NSP-BERT's score: log P(IsNext), IsNext being index 0 (torch's log_softmax, recorded).
  np.testing.assert_allclose(np.asarray(bert.is_next_log_prob(nsp)), recorded["is_next_log_prob"],
                             atol=1e-5, rtol=0)


def test_a_wrong_weight_moves_the_logits_beyond_the_tolerance(reference):
  """The comparison can fail: one LayerNorm bias shifted by 0.1 breaks it."""
  recorded, _ = reference
  config, params = hf_bert.load_hf_bert(str(RECORDED))
  layer_norm = params["params"]["layer_1"]["output_layer_norm"]
  layer_norm["bias"] = layer_norm["bias"] + 0.1
  mlm, _ = bert.BertForPreTraining(config).apply(params, *(_batch(recorded)[f] for f in FIELDS))
  assert np.abs(np.asarray(mlm) - recorded["mlm_logits"]).max() > 1e-2


def test_bfloat16_compute_is_close_to_the_float32_reference(reference):
  recorded, _ = reference
  config, params = hf_bert.load_hf_bert(str(RECORDED), dtype=jnp.bfloat16)
  assert config.dtype == jnp.bfloat16
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {np.dtype(np.float32)}
  mlm, nsp = bert.BertForPreTraining(config).apply(params, *(_batch(recorded)[f] for f in FIELDS))
  assert mlm.dtype == nsp.dtype == jnp.float32
  # bfloat16 keeps ~3 significant digits: close to the float32 logits, not equal to them.
  assert np.corrcoef(np.asarray(mlm).ravel(), recorded["mlm_logits"].ravel())[0, 1] > 0.99
  np.testing.assert_allclose(np.asarray(nsp), recorded["nsp_logits"],
                             atol=0.1 * np.abs(recorded["nsp_logits"]).max())


@pytest.mark.parametrize("kind,max_length", [("fast", 24), ("fast", 64), ("slow", 64)])
def test_wordpiece_ids_equal_transformers_recorded_ids(reference, kind, max_length):
  """`slow` is transformers' pure-Python WordPiece (untruncated here: it breaks a tie in
  longest-first truncation the other way); `fast` is its `tokenizers`-backed one."""
  recorded, meta = reference
  pairs = meta["sentence_pairs"]
  tokenizer = wordpiece.load_tokenizer(str(RECORDED / "vocab.txt"))
  ours = wordpiece.encode_pairs(tokenizer, [a for a, _ in pairs], [b for _, b in pairs], max_length)
  for field in FIELDS:
    expected = recorded[f"{kind}_{max_length}_{field}"]
    assert ours[field].dtype == np.int32 and expected.shape == (len(pairs), max_length)
    np.testing.assert_array_equal(ours[field], expected, err_msg=f"{field}")
  if max_length == 64:
    assert ours["attention_mask"].sum(1).max() < 64  # untruncated
