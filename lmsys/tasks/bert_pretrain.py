"""MLM + NSP pretraining of a small BERT from scratch with the shared trainer (note 5).

NSP-BERT needs a BERT whose NSP head was trained; none can be downloaded here, so a small
one is pretrained on the FewCLUE text itself: every task's `unlabeled.json` and its training
split without the labels (dev and test texts are never read, so the zero-shot evaluation
stays zero-shot on unseen text).

Data, as in BERT but from short independent texts:
- each text is cut into two segments A, B at the sentence end (。！？；!?;…) nearest its
  middle, else at the comma nearest it, else in the middle (`split_halves`); a text shorter
  than 4 characters is dropped; ChID's blank marker is removed;
- both segments are WordPiece-tokenised once (`PairCorpus`: flat ids + offsets, numpy);
- a batch is a pure function of (seed, step): documents in epoch-permutation order
  (`lmsys.data.make_batch_fn`), with probability `next_rate` B is the document's own second
  half (IsNext, label 0 as Hugging Face's NSP) else the second half of another random
  document (label 1); the pair is truncated longest-first to max_length; 15% of its
  non-special tokens (at least 1, at most max_predictions) are picked, of which 80% become
  [MASK], 10% a random corpus token, 10% stay.
- loss = cross-entropy of the MLM logits at the picked positions only (`mlm_positions`, so
  the vocabulary-sized logits cost [B, P, V], not [B, L, V]) + NSP cross-entropy.
- eval: MLM accuracy and NSP accuracy on a fixed set of pairs built from a held-out 2% of the
  documents.
"""

from __future__ import annotations

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import analysis, data, trainer
from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.data import fewclue, wordpiece
from lmsys.models import bert, hf_bert

# Text fields read from each task's files (labels never).
TEXT_FIELDS = {"eprstmt": ("sentence",), "tnews": ("sentence",), "iflytek": ("sentence",),
               "csldcp": ("content",), "bustm": ("sentence1", "sentence2"),
               "ocnli": ("sentence1", "sentence2"), "csl": ("abst",), "cluewsc": ("text",),
               "chid": ("content",)}
_SENTENCE_END = re.compile(r"[。！？；!?;…]+[”’」』）)]*")
_COMMA = re.compile(r"[，,、：:]")
MIN_CHARS = 4
# Files next to the checkpoints that make a pretraining workdir a self-contained BERT.
VOCAB_FILE, BERT_CONFIG_FILE = "vocab.txt", "bert_config.json"


# ---------------------------------------------------------------- texts

def corpus_files(data_dir: str | None, tasks, train_split: str) -> list[tuple[str, str]]:
  """(task, path) of every file the corpus reads: unlabeled.json where present and the train split."""
  files = []
  for task in tasks:
    directory = data.fewclue_dir(task, data_dir)
    for split in ("unlabeled", train_split):
      path = os.path.join(directory, f"{split}.json")
      if os.path.isfile(path):
        files.append((task, path))
      elif split != "unlabeled":
        raise ConfigError(f"fewclue/{task}: training split file not found: {path!r} (config key data.train_split)")
  return files


def read_texts(data_dir: str | None, tasks, train_split: str) -> list[str]:
  """The corpus texts in a fixed order (file by file), labels left out."""
  texts = []
  for task, path in corpus_files(data_dir, tasks, train_split):
    for record in data.read_json_lines(path, allow_empty=True):
      for field in TEXT_FIELDS[task]:
        text = str(record.get(field) or "").replace(fewclue.CHID_BLANK, "").strip()
        if text:
          texts.append(text)
  return texts


def split_halves(text: str) -> tuple[str, str] | None:
  """(A, B): `text` cut at the sentence end nearest its middle, else the nearest comma, else the
  middle character; None if shorter than MIN_CHARS."""
  text = text.strip()
  if len(text) < MIN_CHARS:
    return None
  middle = len(text) / 2
  for pattern in (_SENTENCE_END, _COMMA):
    cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
    if cuts:
      cut = min(cuts, key=lambda c: abs(c - middle))
      return text[:cut], text[cut:]
  cut = len(text) // 2
  return text[:cut], text[cut:]


# ---------------------------------------------------------------- tokenised corpus

@dataclasses.dataclass
class PairCorpus:
  """Segments A and B of every document as token ids: flat int32 arrays + int64 offsets
  (document i's A is first_ids[first_offsets[i]:first_offsets[i + 1]])."""
  first_ids: np.ndarray
  first_offsets: np.ndarray
  second_ids: np.ndarray
  second_offsets: np.ndarray

  def __len__(self):
    return len(self.first_offsets) - 1

  def first(self, i):
    return self.first_ids[self.first_offsets[i]:self.first_offsets[i + 1]]

  def second(self, i):
    return self.second_ids[self.second_offsets[i]:self.second_offsets[i + 1]]

  def subset(self, index) -> PairCorpus:
    firsts = [self.first(i) for i in index]
    seconds = [self.second(i) for i in index]
    return PairCorpus(*_ragged(firsts), *_ragged(seconds))


def _ragged(seqs):
  offsets = np.zeros(len(seqs) + 1, np.int64)
  offsets[1:] = np.cumsum([len(s) for s in seqs])
  flat = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
  return flat, offsets


def tokenize_halves(tokenizer, halves: list[tuple[str, str]], chunk: int = 4096) -> PairCorpus:
  """WordPiece ids of every (A, B) without special tokens; documents with an empty side dropped."""
  firsts, seconds = [], []
  for start in range(0, len(halves), chunk):
    part = halves[start:start + chunk]
    a = tokenizer.encode_batch([h[0] for h in part], add_special_tokens=False)
    b = tokenizer.encode_batch([h[1] for h in part], add_special_tokens=False)
    for ea, eb in zip(a, b):
      if ea.ids and eb.ids:
        firsts.append(np.asarray(ea.ids, np.int32))
        seconds.append(np.asarray(eb.ids, np.int32))
  return PairCorpus(*_ragged(firsts), *_ragged(seconds))


@dataclasses.dataclass
class Specials:
  cls: int
  sep: int
  mask: int
  pad: int
  random_ids: np.ndarray   # the tokens a masked position may be replaced by (those of the corpus)


def specials(tokenizer, corpus: PairCorpus) -> Specials:
  ids = {}
  for token in ("[CLS]", "[SEP]", "[MASK]", "[PAD]"):
    ids[token] = tokenizer.token_to_id(token)
    if ids[token] is None:
      raise ConfigError(f"BERT vocabulary has no {token} token")
  random_ids = np.unique(np.concatenate([corpus.first_ids, corpus.second_ids]))
  return Specials(ids["[CLS]"], ids["[SEP]"], ids["[MASK]"], ids["[PAD]"], random_ids.astype(np.int32))


# ---------------------------------------------------------------- batches

def _truncate(a: np.ndarray, b: np.ndarray, budget: int):
  """Longest-first truncation to len(a) + len(b) <= budget; A loses its start, B its end
  (the tokens next to the A|B boundary are the ones NSP reads)."""
  while len(a) + len(b) > budget:
    if len(a) > len(b):
      a = a[1:]
    else:
      b = b[:-1]
  return a, b


def make_pairs(corpus: PairCorpus, docs: np.ndarray, rng: np.random.Generator, sp: Specials,
               max_length: int, max_predictions: int, mask_rate: float = 0.15,
               next_rate: float = 0.5) -> dict[str, np.ndarray]:
  """One batch of pretraining pairs for documents `docs`; all randomness from `rng`."""
  n = len(docs)
  input_ids = np.full((n, max_length), sp.pad, np.int32)
  token_type_ids = np.zeros((n, max_length), np.int32)
  attention_mask = np.zeros((n, max_length), np.int32)
  positions = np.zeros((n, max_predictions), np.int32)
  targets = np.zeros((n, max_predictions), np.int32)
  weights = np.zeros((n, max_predictions), np.float32)
  is_random = rng.random(n) >= next_rate
  others = rng.integers(0, max(len(corpus) - 1, 1), size=n)
  for row, doc in enumerate(docs):
    a = corpus.first(doc)
    if is_random[row] and len(corpus) > 1:
      other = others[row] + (others[row] >= doc)   # any document but this one
      b = corpus.second(other)
    else:
      b = corpus.second(doc)
    a, b = _truncate(a, b, max_length - 3)
    ids = np.concatenate([[sp.cls], a, [sp.sep], b, [sp.sep]]).astype(np.int32)
    length = len(ids)
    token_type_ids[row, len(a) + 2:length] = 1
    attention_mask[row, :length] = 1
    candidates = np.concatenate([np.arange(1, len(a) + 1), np.arange(len(a) + 2, length - 1)])
    count = int(min(max_predictions, max(1, round(mask_rate * len(candidates)))))
    picked = np.sort(rng.choice(candidates, size=count, replace=False))
    positions[row, :count] = picked
    targets[row, :count] = ids[picked]
    weights[row, :count] = 1.0
    action = rng.random(count)
    ids[picked[action < 0.8]] = sp.mask
    swap = picked[(action >= 0.8) & (action < 0.9)]
    ids[swap] = rng.choice(sp.random_ids, size=len(swap))
    input_ids[row, :length] = ids
  return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
          "mlm_positions": positions, "mlm_ids": targets, "mlm_weights": weights,
          "nsp_labels": is_random.astype(np.int32) * (len(corpus) > 1)}


def make_batch_fn(corpus: PairCorpus, sp: Specials, batch_size: int, seed: int, max_length: int,
                  max_predictions: int, mask_rate: float = 0.15, next_rate: float = 0.5):
  """step -> batch, a pure function of (seed, step): documents in epoch-permutation order, the
  pairing and masking drawn from default_rng([seed, step])."""
  order = data.make_batch_fn({"doc": np.arange(len(corpus))}, batch_size, seed)

  def batch_fn(step: int):
    rng = np.random.default_rng([seed, step])
    return make_pairs(corpus, order(step)["doc"], rng, sp, max_length, max_predictions, mask_rate, next_rate)
  return batch_fn


# ---------------------------------------------------------------- loss and eval

def pretraining_outputs(model, params, batch, deterministic=True, rngs=None):
  """Per-row (mlm nll summed, mlm correct, mlm count, nsp nll, nsp correct)."""
  mlm_logits, nsp_logits = model.apply(
      {"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
      deterministic=deterministic, mlm_positions=batch["mlm_positions"], rngs=rngs or {})
  w = batch["mlm_weights"]
  mlm_nll = optax.softmax_cross_entropy_with_integer_labels(mlm_logits, batch["mlm_ids"]) * w
  mlm_correct = (jnp.argmax(mlm_logits, -1) == batch["mlm_ids"]) * w
  nsp_nll = optax.softmax_cross_entropy_with_integer_labels(nsp_logits, batch["nsp_labels"])
  nsp_correct = jnp.argmax(nsp_logits, -1) == batch["nsp_labels"]
  return {"mlm_nll": mlm_nll.sum(-1), "mlm_correct": mlm_correct.sum(-1), "mlm_count": w.sum(-1),
          "nsp_nll": nsp_nll, "nsp_correct": nsp_correct.astype(jnp.float32)}


def make_loss_fn(model):
  def loss_fn(params, batch, rng):
    out = pretraining_outputs(model, params, batch, deterministic=False, rngs={"dropout": rng})
    count = jnp.maximum(out["mlm_count"].sum(), 1.0)
    mlm_loss = out["mlm_nll"].sum() / count
    nsp_loss = out["nsp_nll"].mean()
    return mlm_loss + nsp_loss, {"mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
                                 "mlm_accuracy": out["mlm_correct"].sum() / count,
                                 "nsp_accuracy": out["nsp_correct"].mean()}
  return loss_fn


def make_eval_fn(model, pairs: dict[str, np.ndarray], batch_size: int):
  """params -> {mlm_loss, mlm_accuracy, nsp_loss, nsp_accuracy} over the fixed held-out pairs."""
  per_row = jax.jit(lambda p, b: pretraining_outputs(model, p, b))

  def eval_fn(params):
    out = data.map_batches(lambda batch, _: per_row(params, batch), pairs, min(batch_size, len(pairs["input_ids"])))
    count = max(float(out["mlm_count"].sum()), 1.0)
    return {"mlm_loss": float(out["mlm_nll"].sum()) / count, "mlm_accuracy": float(out["mlm_correct"].sum()) / count,
            "nsp_loss": float(out["nsp_nll"].mean()), "nsp_accuracy": float(out["nsp_correct"].mean())}
  return eval_fn


# ---------------------------------------------------------------- model and run

def bert_config(config, vocab_size: int) -> bert.BertConfig:
  """The BertConfig of config.model (Hugging Face field names) with the vocabulary's size."""
  m = config.model
  return bert.BertConfig(
      vocab_size=vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_hidden_layers,
      num_attention_heads=m.num_attention_heads, intermediate_size=m.intermediate_size,
      max_position_embeddings=m.max_position_embeddings,
      hidden_dropout_prob=m.hidden_dropout_prob, attention_probs_dropout_prob=m.attention_probs_dropout_prob,
      dtype=m.dtype, remat=m.remat)


def hf_config_dict(cfg: bert.BertConfig) -> dict:
  """config.json fields (Hugging Face names) of a BertConfig, for the workdir."""
  keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
          "hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")
  return {"model_type": "bert", **{k: getattr(cfg, k) for k in keys}}


@dataclasses.dataclass
class Corpus:
  train: PairCorpus
  heldout: PairCorpus
  specials: Specials
  info: dict


def load_corpus(config, tokenizer) -> Corpus:
  d = config.data
  texts = read_texts(d.data_dir or None, d.tasks, d.train_split)
  halves = [h for h in (split_halves(t) for t in texts) if h is not None]
  corpus = tokenize_halves(tokenizer, halves)
  order = np.random.default_rng(config.seed).permutation(len(corpus))
  if d.max_documents:
    order = order[:d.max_documents]
  num_heldout = max(1, int(round(d.heldout_fraction * len(order))))
  if len(order) - num_heldout < 2:
    raise ConfigError(f"pretraining corpus: only {len(order)} usable documents in {', '.join(d.tasks)}")
  heldout, train = corpus.subset(order[:num_heldout]), corpus.subset(order[num_heldout:])
  sp = specials(tokenizer, train)
  tokens = len(train.first_ids) + len(train.second_ids)
  info = {"texts": len(texts), "documents": len(order), "train_documents": len(train),
          "heldout_documents": len(heldout), "train_tokens": int(tokens),
          "mean_pair_tokens": tokens / max(len(train), 1)}
  return Corpus(train, heldout, sp, info)


def pretrain(config, workdir, writer, tokenizer, corpus: Corpus):
  """Trains BertForPreTraining on `corpus`; returns (BertConfig, TrainResult)."""
  p = config.pretrain
  cfg = bert_config(config, tokenizer.get_vocab_size())
  if p.max_length > cfg.max_position_embeddings:
    raise ConfigError(f"config key 'pretrain.max_length': {p.max_length} > model.max_position_embeddings "
                      f"{cfg.max_position_embeddings}")
  model = bert.BertForPreTraining(cfg)
  heldout_docs = np.resize(np.arange(len(corpus.heldout)), p.eval_pairs)
  heldout_pairs = make_pairs(corpus.heldout, heldout_docs, np.random.default_rng([config.seed, 2**31]),
                             corpus.specials, p.max_length, p.max_predictions, p.mask_rate, p.next_rate)
  ids = jnp.zeros((1, p.max_length), jnp.int32)
  result = trainer.train(
      config, workdir, writer,
      init_fn=lambda rng: model.init(rng, ids, ids, jnp.ones_like(ids))["params"],
      loss_fn=make_loss_fn(model),
      batch_fn=make_batch_fn(corpus.train, corpus.specials, config.train.batch_size, config.seed,
                             p.max_length, p.max_predictions, p.mask_rate, p.next_rate),
      eval_fn=make_eval_fn(model, heldout_pairs, p.eval_batch_size))
  return cfg, result


def load_checkpoint(workdir: str):
  """(BertConfig, {'params': ...}, vocab.txt path, step) of a bert_pretrain workdir (latest
  checkpoint), for the zero-shot config."""
  run = analysis.load_run(workdir)
  if config_lib.get(run.config, "experiment") != "nsp_bert_pretrain":
    raise ConfigError(f"{workdir}: not a bert_pretrain workdir (its experiment is "
                      f"{config_lib.get(run.config, 'experiment')!r})")
  for name in (VOCAB_FILE, BERT_CONFIG_FILE):
    if not os.path.isfile(os.path.join(workdir, name)):
      raise ConfigError(f"{workdir}: no {name} (a bert_pretrain run writes it when it starts)")
  steps = run.checkpoint_steps()
  if not steps:
    raise ConfigError(f"{workdir}: no checkpoint yet under checkpoints/")
  cfg = bert.BertConfig.from_json(os.path.join(workdir, BERT_CONFIG_FILE))
  return cfg, {"params": run.restore(steps[-1])}, os.path.join(workdir, VOCAB_FILE), steps[-1]


# ---------------------------------------------------------------- a BERT for the zero-shot protocol (configs/nsp_bert.py)

def checkpoint_kind(path: str) -> str:
  """What config key model.checkpoint names: 'random' (empty), 'hf' (a Hugging Face BERT
  directory) or 'lmsys' (a bert_pretrain workdir); a ConfigError naming the key otherwise."""
  if not path:
    return "random"
  if hf_bert.is_hf_bert_dir(path):
    if not os.path.isfile(os.path.join(path, "vocab.txt")):
      raise ConfigError(f"config key 'model.checkpoint': {path!r} has Hugging Face weights but no vocab.txt")
    return "hf"
  if os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(os.path.join(path, "checkpoints")):
    return "lmsys"
  raise ConfigError(f"config key 'model.checkpoint': {path!r} is neither a Hugging Face BERT directory "
                    f"(config.json, vocab.txt, model.safetensors or pytorch_model.bin) nor an lmsys "
                    f"bert_pretrain workdir (config.json, checkpoints/); run configs/nsp_bert_pretrain.py first "
                    f"or pass --config.model.checkpoint=PATH")


def load_bert(config):
  """(BertConfig, variables, vocab.txt path, description) of the BERT that config.model.checkpoint
  names (`checkpoint_kind`): a Hugging Face directory, a bert_pretrain workdir, or random
  weights of config.model.random's shape (a floor for the zero-shot protocol)."""
  path, dtype = config.model.checkpoint, config.model.dtype
  kind = checkpoint_kind(path)
  if kind == "hf":
    cfg, variables = hf_bert.load_hf_bert(path)
    return cfg.replace(dtype=dtype), variables, os.path.join(path, "vocab.txt"), {"kind": "hugging_face", "path": path}
  if kind == "lmsys":
    cfg, variables, vocab, step = load_checkpoint(path)
    return cfg.replace(dtype=dtype), variables, vocab, {"kind": "lmsys_bert_pretrain", "path": path, "step": step}
  r = config.model.random
  vocab = data.vocab_path(config.data.data_dir or None, config.data.vocab_path)
  cfg = bert.BertConfig(vocab_size=wordpiece.load_tokenizer(vocab).get_vocab_size(), hidden_size=r.hidden_size,
                        num_hidden_layers=r.num_hidden_layers, num_attention_heads=r.num_attention_heads,
                        intermediate_size=r.intermediate_size, max_position_embeddings=r.max_position_embeddings,
                        dtype=dtype)
  variables = bert.init_params(cfg, jax.random.key(r.seed))
  return cfg, variables, vocab, {"kind": "random_init", "seed": r.seed}
