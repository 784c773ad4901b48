"""Knowledge-base QA as seq2seq + trie-constrained decoding (note 7, KgCLUE).

question -> `S [SEP] P [SEP] M [SEP]` (or S, M, P) by a Seq2Seq Transformer
trained from scratch with the shared trainer; at decoding, beam search inside
one jitted loop, optionally masked by the trie of every fact of the base, so
every output is a fact; the answer is that fact's object O. Metrics on O as
KgCLUE defines them: EM, and F1 = 2 LCS / (len a + len b) over characters.

Tokens are characters of the BERT-chinese vocabulary; the model's vocabulary
is the part of it that occurs in the KgCLUE files (a compact vocabulary, so
the output softmax costs ~5k rather than 21k classes; the same ids either way
up to a renumbering).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import decoding, kgclue, trainer
from lmsys import trie as trie_lib
from lmsys.models.transformer import Seq2Seq, TransformerConfig, init_cache

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[unused1]")


# ---------------------------------------------------------------- metrics

def lcs_length(a: str, b: str) -> int:
  """Length of the longest common subsequence of two strings (characters)."""
  if not a or not b:
    return 0
  row = np.zeros(len(b) + 1, np.int32)
  b_chars = np.array(list(b))
  for ch in a:
    match = np.concatenate([[0], (row[:-1] + 1) * (b_chars == ch)])
    row = np.maximum.accumulate(np.maximum(row, match))
  return int(row[-1])


def f1_score(prediction: str, gold: str) -> float:
  """KgCLUE's F1: 2 LCS / (len a + len b) (1.0 when both are empty)."""
  if not prediction and not gold:
    return 1.0
  return 2.0 * lcs_length(prediction, gold) / (len(prediction) + len(gold))


def score_answers(predictions: list[str], golds: list[str]) -> dict[str, float]:
  em = float(np.mean([p == g for p, g in zip(predictions, golds)]))
  f1 = float(np.mean([f1_score(p, g) for p, g in zip(predictions, golds)]))
  return {"em": em, "f1": f1, "mean": (em + f1) / 2}


# ---------------------------------------------------------------- data

@dataclasses.dataclass
class KbqaData:
  tokenizer: kgclue.CharTokenizer     # compact vocabulary
  base: kgclue.KgBase                 # with distractors
  splits: dict[str, list[kgclue.Example]]
  order: str

  def arrays(self, split: str, max_source: int, max_target: int) -> dict[str, np.ndarray]:
    """{'source': [N, max_source], 'target': [N, max_target]} ids, padded with 0, truncated."""
    examples = self.splits[split]
    source = np.zeros((len(examples), max_source), np.int32)
    target = np.zeros((len(examples), max_target), np.int32)
    for i, ex in enumerate(examples):
      q = self.tokenizer.encode(ex.question)[:max_source]
      source[i, :len(q)] = q
      if ex.fact is not None:
        t = self.tokenizer.encode_target(ex.fact, self.order)[:max_target]
        target[i, :len(t)] = t
    return {"source": source, "target": target}

  def trie(self, distractors: bool) -> trie_lib.TrieArrays:
    return kgclue.build_base_trie(self.facts_base(distractors), self.tokenizer, self.order)

  def facts_base(self, distractors: bool) -> kgclue.KgBase:
    return self.base if distractors else self.base.without_distractors()

  def target_index(self, distractors: bool) -> dict[tuple[int, ...], int]:
    """Token ids of a target -> the index of its fact in facts_base (the first, where two facts'
    targets tokenise alike). Decoded ids are matched as ids: the text of a decoded target is
    not always the fact's text (BERT lowercases letters and has no token for a few characters)."""
    index = {}
    for i, fact in enumerate(self.facts_base(distractors).facts):
      index.setdefault(tuple(self.tokenizer.encode_target(fact, self.order)), i)
    return index


def compact_tokenizer(texts, bert: kgclue.CharTokenizer) -> kgclue.CharTokenizer:
  """The BERT tokens that `texts` use (specials first, then in BERT's order)."""
  used = sorted({i for text in texts for i in bert.encode(text)})
  tokens = list(SPECIAL_TOKENS) + [bert.tokens[i] for i in used if bert.tokens[i] not in SPECIAL_TOKENS]
  return kgclue.CharTokenizer(tokens)


def load_data(config) -> KbqaData:
  """Every split file present, the base (+ distractors) and the compact tokenizer."""
  d = config.data
  directory = d.data_dir or None
  names = kgclue.available_splits(directory)
  splits = {name: kgclue.load_split(name, directory, require_answer=False) for name in names}
  base = kgclue.build_base(directory, distractors=d.distractors, sense_distractors=d.sense_distractors,
                           seed=config.seed)
  bert = kgclue.load_tokenizer(directory, d.vocab_path or None)
  texts = [ex.question for exs in splits.values() for ex in exs]
  texts += [t for f in base.facts for t in (f.subject, f.predicate, f.sense, f.object)]
  return KbqaData(compact_tokenizer(texts, bert), base, splits, kgclue.check_order(d.order))


# ---------------------------------------------------------------- model and training

def make_model(config, vocab_size: int) -> Seq2Seq:
  return Seq2Seq(TransformerConfig.from_config(config.model), vocab_size=vocab_size,
                 max_source_length=config.data.max_source_length,
                 max_target_length=config.data.max_target_length)


def target_input(target, bos_id: int):
  """Teacher forcing: [BOS] + target[:-1]."""
  return jnp.concatenate([jnp.full_like(target[:, :1], bos_id), target[:, :-1]], axis=1)


def make_loss_fn(model: Seq2Seq, bos_id: int):
  """Token cross-entropy over the real (non-padding) target positions."""
  def loss_fn(params, batch, rng):
    dropout_rng, attention_rng = jax.random.split(rng)
    logits = model.apply({"params": params}, batch["source"], target_input(batch["target"], bos_id),
                         deterministic=False, rngs={"dropout": dropout_rng, "attention": attention_rng})
    real = (batch["target"] != 0).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["target"])
    loss = (nll * real).sum() / jnp.maximum(real.sum(), 1.0)
    correct = (logits.argmax(-1) == batch["target"]) * real
    sequence_ok = jnp.all((logits.argmax(-1) == batch["target"]) | (real == 0), axis=1)
    return loss, {"token_accuracy": correct.sum() / jnp.maximum(real.sum(), 1.0),
                  "sequence_accuracy": sequence_ok.mean()}
  return loss_fn


def train(config, workdir, writer, data: KbqaData):
  """Trains the Seq2Seq on the training split with the shared trainer; (model, TrainResult)."""
  from lmsys import data as data_lib  # pylint: disable=g-import-not-at-top
  model = make_model(config, data.tokenizer.vocab_size)
  arrays = data.arrays(config.data.train_split, config.data.max_source_length, config.data.max_target_length)
  source0 = jnp.zeros((1, config.data.max_source_length), jnp.int32)
  target0 = jnp.zeros((1, config.data.max_target_length), jnp.int32)
  result = trainer.train(
      config, workdir, writer,
      init_fn=lambda rng: model.init(rng, source0, target0)["params"],
      loss_fn=make_loss_fn(model, data.tokenizer.cls_id),
      batch_fn=data_lib.make_batch_fn(arrays, config.train.batch_size, config.seed),
      name="seq2seq")
  return model, result


# ---------------------------------------------------------------- decoding

def lcs_extend(rows, question, tokens):
  """LCS DP rows [N, Lq+1] against the question [N, Lq] after appending tokens [N]:
  new[j] = max(new[j-1], row[j], row[j-1] + [q_j == token]) = cummax_j max(row[j], row[j-1] + eq_j)."""
  eq = question == tokens[..., None]
  cand = jnp.maximum(rows[..., 1:], jnp.where(eq, rows[..., :-1] + 1, 0))
  return jnp.concatenate([jnp.zeros(cand.shape[:-1] + (1,), cand.dtype),  # LCS with the empty prefix
                          jax.lax.cummax(cand, axis=cand.ndim - 1)], -1)


def lookahead_bonus(question_rows, carry, log_probs):
  """The note's look-ahead rule, one step deep: once the subject (up to the first [SEP]) is
  decoded, log p -> log p / (Δ + 1) for every allowed next token, Δ in {0, 1} the gain in
  LCS between the question and the decoded predicate/sense text if that token is taken.
  (The note takes Δ over all completions through the token, a look-ahead down the trie;
  this is its first step.) Returns the additive change of log p, [B, K, V]."""
  b, k, v = log_probs.shape
  rows = carry["lcs"]                                                  # [B*K, Lq+1]
  # Only a token of the question can raise the LCS: extend the DP by each question token
  # ([B*K, Lq, Lq] work, not [B*K, V, Lq]) and scatter the gains into the vocabulary.
  grown = lcs_extend(rows[:, None, :], question_rows[:, None, :], question_rows)   # [B*K, Lq, Lq+1]
  gain_q = jnp.where(question_rows != 0, grown[..., -1] - rows[:, -1:], 0)
  gain = jnp.zeros((b * k, v), gain_q.dtype).at[jnp.arange(b * k)[:, None], question_rows].max(gain_q)
  gain = gain.astype(jnp.float32).reshape(b, k, v)
  after_subject = (carry["seps"] >= 1).reshape(b, k, 1)
  live = log_probs > decoding.NEG_INF / 2
  return jnp.where(after_subject & live, log_probs / (gain + 1.0) - log_probs, 0.0)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "use_trie", "lookahead", "sep_id", "bos_id",
                                             "early_stop"))
def decode_batch(model: Seq2Seq, params, source, trie, *, beam_size: int, use_trie: bool, lookahead: bool,
                 sep_id: int, bos_id: int, early_stop: bool = True) -> decoding.BeamResult:
  """Best-first beams of one batch of questions [B, Ls], jitted end to end."""
  batch = source.shape[0]
  encoded = model.apply({"params": params}, source, method=Seq2Seq.encode)
  enc_rows = jnp.repeat(encoded, beam_size, 0)
  mask_rows = jnp.repeat(source != 0, beam_size, 0)
  question_rows = jnp.repeat(source, beam_size, 0)
  carry = {"cache": init_cache(model, params, enc_rows, mask_rows),
           "lcs": jnp.zeros((batch * beam_size, source.shape[1] + 1), jnp.int32),
           "seps": jnp.zeros((batch * beam_size,), jnp.int32)}

  def step(args, carry, tokens, t):
    logits, state = model.apply({"params": args, "cache": carry["cache"]}, tokens, enc_rows, mask_rows,
                                decode=True, position=t, method=Seq2Seq.decode, mutable=["cache"])
    last = tokens[:, 0]
    counts = (carry["seps"] >= 1) & (last != sep_id) & (last != 0) & (t > 0)  # predicate/sense characters
    lcs = jnp.where(counts[:, None], lcs_extend(carry["lcs"], question_rows, last), carry["lcs"])
    seps = carry["seps"] + ((last == sep_id) & (t > 0))
    return logits[:, 0], {"cache": state["cache"], "lcs": lcs, "seps": seps}

  return decoding.beam_search(step, params, carry, batch_size=batch, beam_size=beam_size,
                              max_length=model.max_target_length, vocab_size=model.vocab_size,
                              bos_id=bos_id, end_id=sep_id, end_count=3,
                              trie=trie if use_trie else None,
                              bonus_fn=lookahead_bonus if lookahead else None, bonus_args=question_rows,
                              early_stop=early_stop)


def predict(model, params, data: KbqaData, split: str, *, beam_size: int, constrained: bool,
            lookahead: bool, distractors: bool = True, batch_size: int = 16):
  """(objects, facts) predicted for every example of `split`: the decoded fact of the base
  (a `kgclue.Fact`) and its object, or None and "" where the best hypothesis is not a fact."""
  from lmsys import data as data_lib  # pylint: disable=g-import-not-at-top
  arrays = data.arrays(split, model.max_source_length, model.max_target_length)
  trie = trie_lib.to_device(data.trie(distractors)) if constrained else None
  base = data.base if distractors else data.base.without_distractors()
  tok = data.tokenizer

  def run(batch, _):
    result = decode_batch(model, params, jnp.asarray(batch["source"]), trie, beam_size=beam_size,
                          use_trie=constrained, lookahead=lookahead, sep_id=tok.sep_id, bos_id=tok.cls_id)
    return {"best": np.asarray(result.sequences[:, 0]), "finished": np.asarray(result.finished[:, 0])}

  out = data_lib.map_batches(run, {"source": arrays["source"]}, min(batch_size, len(arrays["source"])))
  index = data.target_index(distractors)
  objects, facts = [], []
  for ids, finished in zip(out["best"], out["finished"]):
    ids = [int(i) for i in ids]
    ends = [j for j, i in enumerate(ids) if i == tok.sep_id]
    found = index.get(tuple(ids[:ends[2] + 1])) if finished and len(ends) >= 3 else None
    fact = base.facts[found] if found is not None else None
    facts.append(fact)
    objects.append(fact.object if fact is not None else "")
  return objects, facts


def gold_objects(data: KbqaData, split: str) -> list[str]:
  return [ex.fact.object if ex.fact is not None else "" for ex in data.splits[split]]
