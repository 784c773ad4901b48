"""lmsys BERT (note 5): logits equal transformers' BertForPreTraining, checkpoints load, WordPiece
ids equal transformers' tokenizers on FewCLUE text.

The tests that build a model with transformers or tokenize with it need the `hf` extra (torch,
transformers) and skip without it; tests/models/test_bert_recorded.py checks the same
equalities against recorded transformers outputs in every install.
"""

import dataclasses
import functools
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys.config import ConfigError
from lmsys.data import wordpiece
from lmsys.models import bert, hf_bert
from tests import fixture_data
from tests.conftest import REAL_DATA_DIR

try:  # the comparisons with Hugging Face need both; the other tests run without them
  import torch
  import transformers
except ImportError:
  torch = transformers = None
NEEDS_HF = ("needs torch and transformers (pip install -e '.[hf]'); "
            "tests/models/test_bert_recorded.py checks recorded transformers outputs instead")


def _require_transformers():
  if transformers is None:
    pytest.skip(NEEDS_HF)

SENTENCES = [("这次买的东西很好", "物流很快，包装完好，客服态度也不错。"), ("这是一则体育新闻", "比赛"),
             ("今天天气好", "我们去公园散步吧"), ("ABC是什么", "")]
MAX_LENGTH = 24


class _NotATensor:  # pickled into a .bin file that weights-only loading must refuse
  pass


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
  """A random transformers BertForPreTraining saved as safetensors and as pytorch_model.bin.

  Every parameter is drawn at scale 0.2 (LayerNorm scales around 1), not BERT's init (std
  0.02, zero biases, unit LayerNorms), so that a swapped bias, a missing tanh or a wrong
  LayerNorm moves the logits far beyond the tolerance.
  """
  _require_transformers()
  root = tmp_path_factory.mktemp("hf_bert")
  vocab_size = fixture_data.write_vocab(str(root), "".join(a + b for a, b in SENTENCES))
  config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=128,
                                   max_position_embeddings=32)
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(config).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "LayerNorm.weight" in name else 0.0))
  dirs = {"safetensors": root / "safetensors", "bin": root / "bin", "sharded": root / "sharded"}
  model.save_pretrained(dirs["safetensors"])
  model.save_pretrained(dirs["sharded"], max_shard_size="100KB")  # model.safetensors.index.json
  # transformers 5 saves safetensors only; pytorch_model.bin is what `torch.save` of the state
  # dict wrote in transformers 4 (tied decoder weight included).
  os.makedirs(dirs["bin"])
  shutil.copy(dirs["safetensors"] / "config.json", dirs["bin"] / "config.json")
  torch.save(model.state_dict(), dirs["bin"] / "pytorch_model.bin")
  for d in dirs.values():
    shutil.copy(root / "bert-base-chinese-vocab.txt", d / "vocab.txt")
  return {"model": model, "state": {k: v.numpy() for k, v in model.state_dict().items()}, **dirs}


def _inputs(directory):
  """Sentence pairs of different lengths through lmsys's tokenizer: padded rows."""
  tokenizer = wordpiece.load_tokenizer(str(directory / "vocab.txt"))
  batch = wordpiece.encode_pairs(tokenizer, [a for a, _ in SENTENCES], [b for _, b in SENTENCES],
                                 MAX_LENGTH)
  lengths = batch["attention_mask"].sum(1)
  assert len(set(lengths.tolist())) > 2 and lengths.min() < MAX_LENGTH  # padding is exercised
  return batch


def _torch_logits(model, batch):
  with torch.no_grad():
    out = model(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()})
  return out.prediction_logits.numpy(), out.seq_relationship_logits.numpy()


@functools.partial(jax.jit, static_argnums=0, static_argnames="deterministic")
def _jitted_apply(config, params, batch, mlm_positions=None, deterministic=True, rngs=None):
  return bert.BertForPreTraining(config).apply(
      params, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
      mlm_positions=mlm_positions, deterministic=deterministic, rngs=rngs,
      position_ids=batch.get("position_ids"))


def _apply(config, params, batch, **kwargs):
  return _jitted_apply(config, params, {k: jnp.asarray(v) for k, v in batch.items()}, **kwargs)


@pytest.mark.parametrize("fmt", ["safetensors", "bin", "sharded"])
def test_logits_match_transformers(hf_dirs, fmt):
  directory = hf_dirs[fmt]
  assert hf_bert.is_hf_bert_dir(directory)
  if fmt == "sharded":
    assert (directory / "model.safetensors.index.json").exists() and not (directory / "model.safetensors").exists()
  config, params = hf_bert.load_hf_bert(str(directory))
  assert config.hidden_size == 64 and config.num_hidden_layers == 2 and config.dtype == jnp.float32
  batch = _inputs(directory)
  mlm, nsp = _apply(config, params, batch)
  torch_mlm, torch_nsp = _torch_logits(hf_dirs["model"], batch)
  assert mlm.dtype == nsp.dtype == jnp.float32
  assert np.abs(torch_nsp).max() > 0.5 and np.abs(torch_mlm).max() > 5  # not near-zero logits
  np.testing.assert_allclose(np.asarray(nsp), torch_nsp, atol=1e-4, rtol=0)
  np.testing.assert_allclose(np.asarray(mlm), torch_mlm, atol=1e-4, rtol=0)
  # NSP-BERT's score: log P(IsNext), IsNext being index 0.
  np.testing.assert_allclose(np.asarray(bert.is_next_log_prob(nsp)),
                             torch.log_softmax(torch.tensor(torch_nsp), -1)[:, 0].numpy(), atol=1e-5)


def test_position_ids_match_transformers(hf_dirs):
  """Non-default position ids (NSP-BERT's soft positions for ChID: a permutation, and a shift)
  give transformers' logits for the same position_ids."""
  config, params = hf_bert.load_hf_bert(str(hf_dirs["safetensors"]))
  batch = _inputs(hf_dirs["safetensors"])
  rows, length = batch["input_ids"].shape
  rng = np.random.default_rng(0)
  permuted = np.stack([rng.permutation(length) for _ in range(rows)]).astype(np.int32)
  for position_ids in (permuted, np.tile(np.arange(length, dtype=np.int32) + 5, (rows, 1))):
    with_positions = dict(batch, position_ids=position_ids)
    mlm, nsp = _apply(config, params, with_positions)
    torch_mlm, torch_nsp = _torch_logits(hf_dirs["model"], with_positions)
    np.testing.assert_allclose(np.asarray(nsp), torch_nsp, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(mlm), torch_mlm, atol=1e-4, rtol=0)
    assert not np.allclose(np.asarray(nsp), np.asarray(_apply(config, params, batch)[1]), atol=1e-3)


def test_old_names_without_prefix_load_the_same(hf_dirs, tmp_path):
  """BertModel-style names (no `bert.`), LayerNorm.gamma/beta, no decoder weight."""
  from safetensors.numpy import save_file
  renamed = {}
  for name, value in hf_dirs["state"].items():
    if name == "cls.predictions.decoder.weight":
      continue
    name = name.removeprefix("bert.")
    name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
    renamed[name] = np.ascontiguousarray(value)
  save_file(renamed, str(tmp_path / "model.safetensors"))
  shutil.copy(hf_dirs["safetensors"] / "config.json", tmp_path / "config.json")
  _, expected = hf_bert.load_hf_bert(str(hf_dirs["safetensors"]))
  _, params = hf_bert.load_hf_bert(str(tmp_path))
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, expected)


def _save(state, directory, config_dir):
  from safetensors.numpy import save_file
  os.makedirs(directory, exist_ok=True)
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(directory / "model.safetensors"))
  shutil.copy(config_dir / "config.json", directory / "config.json")
  return str(directory)


def test_missing_tensor_is_one_error_naming_it(hf_dirs, tmp_path):
  name = "bert.encoder.layer.1.attention.self.key.weight"
  state = {k: v for k, v in hf_dirs["state"].items() if k != name}
  with pytest.raises(ConfigError) as err:
    hf_bert.load_hf_bert(_save(state, tmp_path, hf_dirs["safetensors"]))
  message = str(err.value)
  assert "\n" not in message and f"missing tensor {name}" in message and "(64, 64)" in message


def test_misshaped_tensor_is_one_error_naming_it(hf_dirs, tmp_path):
  name = "bert.encoder.layer.0.intermediate.dense.weight"
  state = dict(hf_dirs["state"], **{name: np.zeros((100, 64), np.float32)})
  with pytest.raises(ConfigError) as err:
    hf_bert.load_hf_bert(_save(state, tmp_path, hf_dirs["safetensors"]))
  message = str(err.value)
  assert "\n" not in message and name in message and "(100, 64)" in message and "(128, 64)" in message


def test_missing_head_warns_and_keeps_the_encoder(hf_dirs, tmp_path):
  state = {k: v for k, v in hf_dirs["state"].items() if not k.startswith("cls.seq_relationship")}
  with pytest.warns(UserWarning, match="cls.seq_relationship.weight"):
    config, params = hf_bert.load_hf_bert(_save(state, tmp_path, hf_dirs["safetensors"]))
  _, full = hf_bert.load_hf_bert(str(hf_dirs["safetensors"]))
  np.testing.assert_array_equal(params["params"]["layer_1"]["output"]["kernel"],
                                full["params"]["layer_1"]["output"]["kernel"])
  assert params["params"]["nsp"]["kernel"].shape == (64, 2)
  mlm, nsp = _apply(config, params, _inputs(hf_dirs["safetensors"]))
  assert np.isfinite(np.asarray(nsp)).all() and np.isfinite(np.asarray(mlm)).all()


def test_untied_decoder_is_refused(hf_dirs, tmp_path):
  state = dict(hf_dirs["state"])
  state["cls.predictions.decoder.weight"] = state["cls.predictions.decoder.weight"] + 1.0
  with pytest.raises(ConfigError, match="cls.predictions.decoder.weight differs"):
    hf_bert.load_hf_bert(_save(state, tmp_path, hf_dirs["safetensors"]))


def test_pytorch_bin_is_read_weights_only(hf_dirs, tmp_path):
  torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2), "x": _NotATensor()},
             tmp_path / "pytorch_model.bin")
  shutil.copy(hf_dirs["safetensors"] / "config.json", tmp_path / "config.json")
  with pytest.raises(ConfigError, match="not a weights-only PyTorch state dict"):
    hf_bert.load_hf_bert(str(tmp_path))


def test_is_hf_bert_dir(hf_dirs, tmp_path):
  assert hf_bert.is_hf_bert_dir(hf_dirs["bin"]) and hf_bert.is_hf_bert_dir(str(hf_dirs["safetensors"]))
  assert not hf_bert.is_hf_bert_dir(tmp_path)
  (tmp_path / "config.json").write_text("{}")
  assert not hf_bert.is_hf_bert_dir(tmp_path)            # no weights
  assert not hf_bert.is_hf_bert_dir(tmp_path / "config.json")
  with pytest.raises(ConfigError, match="no weights"):
    hf_bert.read_tensors(str(tmp_path))


SMALL = bert.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=16)


def _random_batch(config, batch=3, length=12):
  rng = np.random.default_rng(0)
  mask = (np.arange(length)[None] < np.array([length, 7, 3][:batch])[:, None]).astype(np.int32)
  ids = rng.integers(1, config.vocab_size, (batch, length)).astype(np.int32) * mask
  types = ((np.arange(length)[None] >= 4) * mask).astype(np.int32)
  return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def test_bfloat16_compute_keeps_float32_params(hf_dirs):
  config, params = hf_bert.load_hf_bert(str(hf_dirs["safetensors"]), dtype=jnp.bfloat16)
  assert config.dtype == jnp.bfloat16
  fresh = bert.init_params(config)
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(fresh)} == {jnp.dtype(jnp.float32)}
  assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {np.dtype(np.float32)}
  batch = _inputs(hf_dirs["safetensors"])
  mlm, nsp = _apply(config, params, batch)
  assert mlm.dtype == nsp.dtype == jnp.float32
  torch_mlm, torch_nsp = _torch_logits(hf_dirs["model"], batch)
  # bfloat16 keeps ~3 significant digits: close to the float32 logits, not equal to them.
  assert np.corrcoef(np.asarray(mlm).ravel(), torch_mlm.ravel())[0, 1] > 0.99
  np.testing.assert_allclose(np.asarray(nsp), torch_nsp, atol=0.1 * np.abs(torch_nsp).max())


def test_mlm_positions_gather_the_full_logits():
  params = bert.init_params(SMALL)
  batch = _random_batch(SMALL)
  full, nsp = _apply(SMALL, params, batch)
  positions = jnp.asarray([[0, 5, 11], [1, 2, 6], [0, 1, 2]], jnp.int32)
  some, nsp2 = _apply(SMALL, params, batch, mlm_positions=positions)
  assert some.shape == (3, 3, SMALL.vocab_size)
  np.testing.assert_allclose(some, jnp.take_along_axis(full, positions[..., None], 1), atol=1e-6)
  np.testing.assert_array_equal(nsp, nsp2)


def test_padding_does_not_leak_into_real_positions():
  params = bert.init_params(SMALL)
  batch = _random_batch(SMALL)
  changed = dict(batch, input_ids=np.where(batch["attention_mask"] == 1, batch["input_ids"], 7))
  mlm, nsp = _apply(SMALL, params, batch)
  mlm2, nsp2 = _apply(SMALL, params, changed)
  real = batch["attention_mask"].astype(bool)
  np.testing.assert_allclose(np.asarray(mlm)[real], np.asarray(mlm2)[real], atol=1e-5)
  np.testing.assert_allclose(nsp, nsp2, atol=1e-5)


def test_position_ids_pick_rows_of_the_position_table():
  """BertEmbeddings with explicit position ids: arange reproduces the default; other ids give
  LayerNorm(word + token type + position table[id]), written out in numpy from the parameters."""
  params = bert.init_params(SMALL)["params"]["embeddings"]
  batch = _random_batch(SMALL)
  ids, types = jnp.asarray(batch["input_ids"]), jnp.asarray(batch["token_type_ids"])
  embed = lambda position_ids=None: bert.BertEmbeddings(SMALL).apply({"params": params}, ids, types,
                                                                     position_ids=position_ids)
  length = ids.shape[1]
  np.testing.assert_array_equal(embed(jnp.arange(length)), embed())
  np.testing.assert_array_equal(embed(jnp.tile(jnp.arange(length), (3, 1))), embed())
  shifted = np.tile(np.arange(length) + 3, (3, 1))
  shifted[1] = np.arange(length)[::-1]                        # a permutation in another row
  x = (np.asarray(params["word_embeddings"]["embedding"])[batch["input_ids"]]
       + np.asarray(params["token_type_embeddings"]["embedding"])[batch["token_type_ids"]]
       + np.asarray(params["position_embeddings"]["embedding"])[shifted])
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  want = ((x - mean) / np.sqrt(var + SMALL.layer_norm_eps) * np.asarray(params["layer_norm"]["scale"])
          + np.asarray(params["layer_norm"]["bias"]))
  got = np.asarray(embed(jnp.asarray(shifted)))
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert not np.allclose(got, np.asarray(embed()), atol=1e-3)
  # Through the whole model: explicit arange equals the default, shifted ids change the NSP logits.
  full = bert.init_params(SMALL)
  _, nsp = _apply(SMALL, full, batch)
  _, nsp_arange = _apply(SMALL, full, dict(batch, position_ids=np.tile(np.arange(length), (3, 1))))
  _, nsp_shifted = _apply(SMALL, full, dict(batch, position_ids=shifted))
  np.testing.assert_allclose(nsp, nsp_arange, rtol=0, atol=1e-6)   # one fusion apart: not bitwise
  assert not np.allclose(nsp, nsp_shifted, atol=1e-4)


@pytest.mark.slow
def test_remat_gives_the_same_values_and_gradients():
  params = bert.init_params(SMALL)
  batch = {k: jnp.asarray(v) for k, v in _random_batch(SMALL).items()}

  def loss(p, config):
    mlm, nsp = _apply(config, p, batch, deterministic=False, rngs={"dropout": jax.random.key(1)})
    return jnp.mean(jax.nn.log_softmax(mlm)[..., 3]) + jnp.mean(bert.is_next_log_prob(nsp))

  plain = jax.jit(jax.value_and_grad(lambda p: loss(p, SMALL)))(params)
  remat = jax.jit(jax.value_and_grad(lambda p: loss(p, SMALL.replace(remat=True))))(params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                         plain, remat)
  deterministic = _apply(SMALL, params, batch)[1]
  with_dropout = _apply(SMALL, params, batch, deterministic=False,
                        rngs={"dropout": jax.random.key(1)})[1]
  assert not np.allclose(deterministic, with_dropout)


def test_other_attention_kinds_run():
  config = SMALL.replace(attention="linear", attention_params={"feature_map": "elu"})
  mlm, nsp = _apply(config, bert.init_params(config), _random_batch(config))
  assert mlm.shape == (3, 12, 50) and np.isfinite(np.asarray(nsp)).all()
  with pytest.raises(ConfigError, match="sequence length 20 > the model's max_position_embeddings 16"):
    _apply(config, bert.init_params(config), _random_batch(config, length=20))


def test_config_from_hf_dict_and_its_errors(tmp_path):
  hf = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "gelu_new", "model_type": "bert", "pooler_type": "x"}
  config = bert.BertConfig.from_dict(hf)
  assert config.activation == "gelu_tanh" and config.head_dim == 8
  (tmp_path / "config.json").write_text(json.dumps({**hf, "dtype": "bfloat16"}))
  assert bert.BertConfig.from_json(tmp_path / "config.json").dtype == jnp.float32  # storage dtype
  assert bert.BertConfig.from_dict({**hf, "dtype": "bfloat16"}).dtype == jnp.bfloat16
  assert hash(config) == hash(dataclasses.replace(config))
  bad = [({"hidden_size": 30}, "hidden_size=30 is not a multiple of num_attention_heads=4"),
         ({"hidden_act": "swishy"}, "hidden_act: unknown activation 'swishy'"),
         ({"num_hidden_layers": 0}, "num_hidden_layers: expected a positive integer, got 0"),
         ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
         ({"attention": "fast"}, "unknown kind 'fast'"),
         ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'")]
  for change, message in bad:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
      bert.BertConfig.from_dict({**hf, **change})
  with pytest.raises(ConfigError, match="missing key.*vocab_size"):
    bert.BertConfig.from_dict({k: v for k, v in hf.items() if k != "vocab_size"})
  (tmp_path / "broken.json").write_text('{"vocab_size": 1,\n oops}')
  with pytest.raises(ConfigError, match="broken.json: line 2"):
    bert.BertConfig.from_json(tmp_path / "broken.json")


# ---------------------------------------------------------------- WordPiece

FEWCLUE_FIELDS = {"eprstmt": ["sentence"], "tnews": ["sentence"], "iflytek": ["sentence"],
                  "csldcp": ["content"], "bustm": ["sentence1", "sentence2"],
                  "ocnli": ["sentence1", "sentence2"], "csl": ["abst"], "cluewsc": ["text"],
                  "chid": ["content"]}


@pytest.fixture(scope="module")
def fewclue(request):
  """(vocab path, {task: [records]}): the real data and vocabulary when present, else fixtures."""
  root = REAL_DATA_DIR
  if root is None or not os.path.isfile(os.path.join(root, "vocab", "bert-base-chinese-vocab.txt")):
    root = str(request.getfixturevalue("fixture_data_dir"))
  records = {}
  for task in FEWCLUE_FIELDS:
    with open(os.path.join(root, "fewclue", task, "dev_few_all.json"), encoding="utf-8") as f:
      records[task] = [json.loads(line) for line in f][:40]
  return os.path.join(root, "vocab", "bert-base-chinese-vocab.txt"), records


def _texts(records):
  return [r[field] for task, rs in records.items() for r in rs for field in FEWCLUE_FIELDS[task][:1]]


def _reference(kind, vocab):
  _require_transformers()
  from transformers.models import bert as hf
  cls = hf.BertTokenizerLegacy if kind == "slow" else hf.BertTokenizer
  return cls(vocab, do_lower_case=True)


@pytest.mark.parametrize("kind", ["slow", "fast"])
def test_single_sentences_match_transformers(fewclue, kind):
  """`slow` is transformers' pure-Python WordPiece: an implementation independent of ours."""
  vocab, records = fewclue
  texts = _texts(records)
  reference = _reference(kind, vocab)
  tokenizer = wordpiece.load_tokenizer(vocab)
  for max_length in (512, 20):
    ours = wordpiece.encode_pairs(tokenizer, texts, None, max_length)
    ref = reference(texts, max_length=max_length, truncation=True, padding="max_length",
                    return_token_type_ids=True, return_attention_mask=True)
    for key, value in ours.items():
      assert value.dtype == np.int32 and value.shape == (len(texts), max_length)
      np.testing.assert_array_equal(value, np.asarray(ref[key]), err_msg=f"{key} at {max_length}")
  assert (ours["attention_mask"].sum(1) == 20).sum() > len(texts) // 2  # most were truncated


def test_pairs_match_transformers(fewclue):
  """Pairs untruncated against both tokenizers; truncated (longest first) against the fast one.

  The pure-Python tokenizer and Google's original BERT break a tie in longest-first truncation
  by cutting the second text, `tokenizers` (and so transformers' default BertTokenizer, and
  bert4keras) by cutting the first: one token may sit on the other side of [SEP].
  """
  vocab, records = fewclue
  pairs = [(r["sentence1"], r["sentence2"]) for task in ("bustm", "ocnli") for r in records[task]]
  firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
  tokenizer = wordpiece.load_tokenizer(vocab)
  for kind, max_length in (("slow", 256), ("fast", 256), ("fast", 24)):
    ours = wordpiece.encode_pairs(tokenizer, firsts, seconds, max_length)
    ref = _reference(kind, vocab)(firsts, seconds, max_length=max_length, truncation="longest_first",
                                  padding="max_length", return_token_type_ids=True)
    for key, value in ours.items():
      np.testing.assert_array_equal(value, np.asarray(ref[key]), err_msg=f"{key} {kind} {max_length}")
  assert (ours["attention_mask"].sum(1) == 24).sum() >= len(pairs) // 4   # truncation exercised
  cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
  assert (ours["input_ids"][:, 0] == cls_id).all() and ((ours["input_ids"] == sep_id).sum(1) == 2).all()


def test_encode_pairs_pads_with_zero_and_restores_settings(fewclue):
  vocab, _ = fewclue
  tokenizer = wordpiece.load_tokenizer(vocab)
  tokenizer.enable_truncation(7)
  out = wordpiece.encode_pairs(tokenizer, ["今天", "今天天气"], ["好", "很好"], 10)
  assert out["input_ids"][0, 6:].tolist() == [0] * 4 and out["attention_mask"][0].tolist() == [1] * 6 + [0] * 4
  assert out["token_type_ids"][1].tolist() == [0] * 6 + [1] * 3 + [0]
  assert tokenizer.truncation["max_length"] == 7 and tokenizer.padding is None
  assert wordpiece.encode_pairs(tokenizer, [], None, 8)["input_ids"].shape == (0, 8)
  with pytest.raises(ConfigError, match="2 first texts but 1 second"):
    wordpiece.encode_pairs(tokenizer, ["a", "b"], ["c"], 8)
  with pytest.raises(ConfigError, match="max_length=3"):
    wordpiece.encode_pairs(tokenizer, ["a"], ["b"], 3)
  with pytest.raises(ConfigError, match="vocabulary not found"):
    wordpiece.load_tokenizer(os.path.join(os.path.dirname(vocab), "nope.txt"))
