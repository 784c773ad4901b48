"""Hugging Face BERT checkpoint directories -> lmsys BertForPreTraining parameters (note 5).

    config, params = load_hf_bert("/path/to/bert-base-chinese")   # config.json + weights
    mlm_logits, nsp_logits = BertForPreTraining(config).apply(params, ids, type_ids, mask)

A directory holds `config.json` and `model.safetensors` (read with the
`safetensors` library) or `pytorch_model.bin` (read with
`torch.load(weights_only=True)`, which refuses to unpickle anything but
tensors and plain containers; torch is imported only then), or their sharded
`*.index.json` forms. Nothing is downloaded.

Both naming styles load: `bert.`-prefixed (BertForPreTraining) or not
(BertModel), and the old `LayerNorm.gamma` / `LayerNorm.beta` names. The MLM
decoder is tied to the word embeddings, so `cls.predictions.decoder.weight` is
not needed (when present it must equal them). A missing or mis-shaped encoder
tensor is one ConfigError naming it with the expected and found shapes; missing
pre-training head tensors (pooler, `cls.*`, e.g. a BertModel checkpoint) are
initialised randomly with one warning, since an encoder alone is still useful.
Tensors lmsys does not use (position_ids buffers, other heads) are ignored.
"""

from __future__ import annotations

import json
import os
import warnings

import jax
import numpy as np

from lmsys.config import ConfigError
from lmsys.models.bert import BertConfig, init_params

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Tensors of the pre-training heads: when absent, initialised randomly with a warning.
HEAD_PREFIXES = ("pooler.", "cls.")


def is_hf_bert_dir(path) -> bool:
  """True when `path` is a directory with config.json and Hugging Face weights."""
  path = os.fspath(path)
  return (os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))
          and any(os.path.isfile(os.path.join(path, name)) for name in WEIGHT_FILES))


def load_hf_bert(directory: str, **config_overrides) -> tuple[BertConfig, dict]:
  """(config, {'params': ...}) of BertForPreTraining from a Hugging Face BERT directory.

  config_overrides (e.g. dtype=jnp.bfloat16, attention="favor") replace config fields;
  the parameters are float32 whatever the stored dtype.
  """
  directory = os.fspath(directory)
  if not os.path.isdir(directory):
    raise ConfigError(f"Hugging Face BERT directory not found: {directory}")
  config = BertConfig.from_json(os.path.join(directory, "config.json"), **config_overrides)
  tensors = read_tensors(directory)
  return config, convert(config, tensors, source=directory)


def read_tensors(directory: str) -> dict[str, np.ndarray]:
  """name -> float32 array of every tensor in the directory's weights (safetensors first)."""
  for name in WEIGHT_FILES:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
      continue
    if name.endswith(".index.json"):
      files = sorted(set(_weight_map(path).values()))
      reader = _read_safetensors if name.startswith("model.safetensors") else _read_torch
      tensors = {}
      for file in files:
        tensors.update(reader(os.path.join(directory, file)))
      return tensors
    return _read_safetensors(path) if name.endswith(".safetensors") else _read_torch(path)
  raise ConfigError(f"{directory}: no weights (expected one of {', '.join(WEIGHT_FILES)})")


def _weight_map(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)["weight_map"]
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ConfigError(f"{path}: not a weight index with a 'weight_map' ({e})") from None


def _read_safetensors(path):
  import safetensors  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise ConfigError(f"weights file not found: {path}")
  # framework="flax": numpy has no bfloat16, which half-precision checkpoints store.
  with safetensors.safe_open(path, framework="flax") as f:
    return {name: np.asarray(f.get_tensor(name), np.float32) for name in f.keys()}


def _read_torch(path):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConfigError(f"{path}: reading pytorch_model.bin needs torch (pip install torch, the "
                      "CPU wheel is enough), or save the model as model.safetensors") from None
  if not os.path.isfile(path):
    raise ConfigError(f"weights file not found: {path}")
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"{path}: not a weights-only PyTorch state dict "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
  if not isinstance(state, dict):
    raise ConfigError(f"{path}: expected a state dict, found {type(state).__name__}")
  return {name: t.detach().float().numpy() for name, t in state.items() if torch.is_tensor(t)}


def _normalise(name):
  """Hugging Face name -> prefix-free, new-style name (bert.x.LayerNorm.gamma -> x.LayerNorm.weight)."""
  if name.startswith("bert."):
    name = name[len("bert."):]
  if ".LayerNorm." in name or name.startswith("LayerNorm."):
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
  return name


def _entries(cfg: BertConfig) -> dict:
  """flax path -> (Hugging Face name, HF shape, HF array -> flax array)."""
  h, nh, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim
  same = lambda w: w
  entries = {}

  def dense(path, hf, n_in, n_out, to_kernel=None, to_bias=None):
    entries[path + ("kernel",)] = (hf + ".weight", (n_out, n_in), to_kernel or (lambda w: w.T))
    entries[path + ("bias",)] = (hf + ".bias", (n_out,), to_bias or same)

  def layer_norm(path, hf):
    entries[path + ("scale",)] = (hf + ".weight", (h,), same)
    entries[path + ("bias",)] = (hf + ".bias", (h,), same)

  for table, rows in (("word_embeddings", cfg.vocab_size),
                      ("position_embeddings", cfg.max_position_embeddings),
                      ("token_type_embeddings", cfg.type_vocab_size)):
    entries[("embeddings", table, "embedding")] = (f"embeddings.{table}.weight", (rows, h), same)
  layer_norm(("embeddings", "layer_norm"), "embeddings.LayerNorm")
  for i in range(cfg.num_hidden_layers):
    hf, path = f"encoder.layer.{i}", (f"layer_{i}",)
    for proj in ("query", "key", "value"):  # heads split out: kernel [H, heads, head_dim]
      dense(path + ("attention", proj), f"{hf}.attention.self.{proj}", h, h,
            lambda w: w.T.reshape(h, nh, hd), lambda b: b.reshape(nh, hd))
    dense(path + ("attention", "out"), f"{hf}.attention.output.dense", h, h,
          lambda w: w.T.reshape(nh, hd, h))
    layer_norm(path + ("attention_layer_norm",), f"{hf}.attention.output.LayerNorm")
    dense(path + ("intermediate",), f"{hf}.intermediate.dense", h, cfg.intermediate_size)
    dense(path + ("output",), f"{hf}.output.dense", cfg.intermediate_size, h)
    layer_norm(path + ("output_layer_norm",), f"{hf}.output.LayerNorm")
  dense(("pooler",), "pooler.dense", h, h)
  dense(("nsp",), "cls.seq_relationship", h, 2)
  dense(("mlm_transform",), "cls.predictions.transform.dense", h, h)
  layer_norm(("mlm_layer_norm",), "cls.predictions.transform.LayerNorm")
  entries[("mlm_bias",)] = ("cls.predictions.bias", (cfg.vocab_size,), same)
  return entries


def convert(config: BertConfig, tensors: dict[str, np.ndarray], source: str = "checkpoint") -> dict:
  """Hugging Face state dict (name -> array) -> BertForPreTraining's {'params': ...} tree."""
  prefixed = any(name.startswith("bert.") for name in tensors)
  found = {}      # normalised name -> (name in the file, array)
  for name, array in tensors.items():
    found.setdefault(_normalise(name), (name, array))
  # The MLM output bias is also saved as the decoder's bias (the same tensor in HF).
  if "cls.predictions.bias" not in found and "cls.predictions.decoder.bias" in found:
    found["cls.predictions.bias"] = found["cls.predictions.decoder.bias"]
  in_file = lambda hf: ("bert." + hf if prefixed and not hf.startswith("cls.") else hf)

  shapes = jax.eval_shape(lambda: init_params(config))["params"]
  flat_shapes = {tuple(k.key for k in path): leaf
                 for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]}
  entries = _entries(config)
  if set(entries) != set(flat_shapes):  # the table and the module disagree: a bug, not bad input
    raise RuntimeError(f"hf_bert table out of date: {sorted(set(entries) ^ set(flat_shapes))}")

  flat, missing_heads = {}, []
  for path, (hf, hf_shape, to_flax) in entries.items():
    if hf not in found:
      if hf.startswith(HEAD_PREFIXES):
        missing_heads.append(in_file(hf))
        continue
      raise ConfigError(f"{source}: missing tensor {in_file(hf)} (expected shape {hf_shape})")
    name, array = found[hf]
    if tuple(array.shape) != hf_shape:
      raise ConfigError(f"{source}: tensor {name} has shape {tuple(array.shape)}, expected "
                        f"{hf_shape} (config.json: hidden_size={config.hidden_size}, "
                        f"vocab_size={config.vocab_size})")
    value = np.ascontiguousarray(to_flax(array), np.float32)
    assert value.shape == flat_shapes[path].shape, (path, value.shape)
    flat[path] = value

  decoder = found.get("cls.predictions.decoder.weight")
  if decoder is not None:
    name, array = decoder
    words = flat[("embeddings", "word_embeddings", "embedding")]
    if array.shape != words.shape or not np.array_equal(array, words):
      raise ConfigError(f"{source}: tensor {name} differs from the word embeddings; lmsys's MLM "
                        "decoder is tied to them (untied decoders are not supported)")

  if missing_heads:
    warnings.warn(f"{source}: {len(missing_heads)} pre-training head tensor(s) missing "
                  f"({', '.join(missing_heads)}); initialised randomly", stacklevel=2)
    random = jax.tree_util.tree_flatten_with_path(init_params(config)["params"])[0]
    for path, leaf in random:
      flat.setdefault(tuple(k.key for k in path), np.asarray(leaf, np.float32))

  params = {}
  for path, value in flat.items():
    node = params
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = value
  return {"params": params}
