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
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmsys import trainer
from lmsys.config import ConfigError
from lmsys.data import kgclue
from lmsys.models.transformer import Seq2Seq, TransformerConfig, init_cache
from lmsys.nn import decoding
from lmsys.nn import trie as trie_lib

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[unused1]")


# ---------------------------------------------------------------- targets and the trie

def target_sequences(base: kgclue.KgBase, tokenizer: kgclue.CharTokenizer, order: str = "spm") -> list[list[int]]:
  """The target ids of every fact of `base`, in fact order."""
  return [tokenizer.encode_target(f, order) for f in base.facts]


def target_arrays(base: kgclue.KgBase, tokenizer: kgclue.CharTokenizer, order: str = "spm") -> tuple[np.ndarray, np.ndarray]:
  """`target_sequences` padded with [PAD]: (tokens [N, L], lengths int32 [N]) for `trie.build_trie`."""
  return trie_lib.pad_sequences(target_sequences(base, tokenizer, order), pad_value=tokenizer.pad_id)


def build_base_trie(base: kgclue.KgBase, tokenizer: kgclue.CharTokenizer, order: str = "spm"):
  """The trie of the base's targets (`lmsys.nn.trie.TrieArrays`, numpy): value[node] is the id of
  the fact whose target ends at node (the first, if the tokenizer merges two facts' targets)."""
  tokens, lengths = target_arrays(base, tokenizer, order)
  return trie_lib.build_trie(tokens, lengths, tokenizer.vocab_size, end_token=tokenizer.pad_id)


def fact_at_node(base: kgclue.KgBase, trie_arrays, node: int) -> kgclue.Fact | None:
  """The fact whose target ends at trie node `node` (host side), or None."""
  node = int(node)
  if node < 0:
    return None
  value = int(np.asarray(trie_arrays.value[node]))
  return base.facts[value] if value >= 0 else None


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


def normalize_answer(text: str) -> str:
  """KgCLUE's official normalisation before EM / F1: lower-cased, whitespace runs collapsed to
  one space, none at either end."""
  return " ".join(text.lower().split())


def f1_score(prediction: str, gold: str) -> float:
  """KgCLUE's F1 of two normalised answers: 2 LCS / (len a + len b), 0 when both are empty
  (as the official script, which scores an empty pair 0 for F1 and 1 for EM)."""
  if not prediction and not gold:
    return 0.0
  return 2.0 * lcs_length(prediction, gold) / (len(prediction) + len(gold))


def score_answers(predictions: list[str], golds: list[str]) -> dict[str, float]:
  """EM and F1 on the answers after `normalize_answer`, and their mean (the official EMF1).

  Args:
    predictions, golds: the predicted and the gold objects O, one a question.
  Returns:
    {"em", "f1", "mean"} as fractions in [0, 1].
  """
  pairs = [(normalize_answer(p), normalize_answer(g)) for p, g in zip(predictions, golds)]
  em = float(np.mean([p == g for p, g in pairs]))
  f1 = float(np.mean([f1_score(p, g) for p, g in pairs]))
  return {"em": em, "f1": f1, "mean": (em + f1) / 2}


# ---------------------------------------------------------------- data

@dataclasses.dataclass
class KbqaData:
  tokenizer: kgclue.CharTokenizer     # compact vocabulary
  base: kgclue.KgBase                 # with distractors
  splits: dict[str, list[kgclue.Example]]
  order: str
  max_target_length: int = 0          # decoding steps: covers every target of the base (`load_data`)

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

  def longest_target(self, split: str | None = None) -> int:
    """Tokens of the longest target of the base (split=None) or of the examples of `split`."""
    facts = self.base.facts if split is None else [ex.fact for ex in self.splits[split] if ex.fact is not None]
    return max((len(self.tokenizer.encode_target(f, self.order)) for f in facts), default=1)

  def trie(self, distractors: bool) -> trie_lib.TrieArrays:
    return build_base_trie(self.facts_base(distractors), self.tokenizer, self.order)

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
  data = KbqaData(compact_tokenizer(texts, bert), base, splits, kgclue.check_order(d.order))
  longest = data.longest_target()
  if d.max_target_length and d.max_target_length < longest:
    raise ConfigError(f"config key 'data.max_target_length': {d.max_target_length} is shorter than the longest "
                      f"target of the base ({longest} tokens), which decoding could then never finish "
                      f"(0 = the longest)")
  data.max_target_length = d.max_target_length or longest
  return data


# ---------------------------------------------------------------- model and training

def make_model(config, vocab_size: int, max_target_length: int) -> Seq2Seq:
  """The Seq2Seq of config.model; `max_target_length` (`KbqaData.max_target_length`) bounds decoding."""
  return Seq2Seq(TransformerConfig.from_config(config.model), vocab_size=vocab_size,
                 max_source_length=config.data.max_source_length, max_target_length=max_target_length)


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
  """Trains the Seq2Seq on the training split with the shared trainer; (model, TrainResult).

  Training batches are as wide as the longest training target (no target is cut; the wider
  padding up to the model's decoding length would cost compute and change no loss: the
  decoder is causal and padding is masked out of the loss)."""
  from lmsys import data as data_lib  # pylint: disable=g-import-not-at-top
  model = make_model(config, data.tokenizer.vocab_size, data.max_target_length)
  width = min(data.longest_target(config.data.train_split), data.max_target_length)
  arrays = data.arrays(config.data.train_split, config.data.max_source_length, width)
  source0 = jnp.zeros((1, config.data.max_source_length), jnp.int32)
  target0 = jnp.zeros((1, width), jnp.int32)
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


class Lookahead(NamedTuple):
  """What the look-ahead rule needs on the device, beside the trie (a pytree; `build_lookahead`).

  Once a hypothesis has decoded its subject (up to the first [SEP]), its possible completions
  are the facts of that subject: a group of sequences. Groups of at most `max_group` facts
  (all but 11 of 19,922 on KgCLUE with distractors, 6 facts each) are rows of `members`, padded
  to the widest of them, R: a hypothesis in one scans its R completions each step. The few
  wider groups (on KgCLUE the subjects that tokenise to a lone [UNK]: 390 facts in one group)
  would pad every row to their width; their sequences are listed once in `wide` instead, and
  the LCS of each with each question is computed once per decoded batch (`lookahead_args`),
  so a step only reads it. Both paths give the rule's weights exactly.
  """
  group_of_node: Any   # int32 [num_nodes]: at or past its subject's [SEP]: its row of `members`, or -2
                       # in a wide group; else -1
  depth_of_node: Any   # int32 [num_nodes]: tokens from the root
  members: Any         # int32 [G, R]: the sequences (rows of `tokens`) of each narrow group, -1 pads
  wide: Any            # int32 [W]: the sequences of the groups wider than max_group (-1: none)
  tokens: Any          # int32 [N, L]: the base's target sequences, 0-padded
  path: Any            # int32 [N, L]: the node after each token of each sequence (-1 past its end)


def build_lookahead(trie: trie_lib.TrieArrays, tokens: np.ndarray, lengths: np.ndarray,
                    sep_id: int, max_group: int | None = 8) -> Lookahead:
  """The look-ahead tables of the sequences a trie was built from (host numpy, vectorised).

  Args:
    trie: the trie of `tokens`.
    tokens: int [N, L] target sequences, 0-padded.
    lengths: int [N].
    sep_id: the [SEP] id (the first one ends the subject).
    max_group: groups (facts of one subject) with more facts than this go to `wide`; None:
      none do (every group a row of `members`, padded to the widest).
  Returns:
    The `Lookahead` tables (numpy).
  """
  tokens = np.asarray(tokens, np.int32)
  n, width = tokens.shape
  step = jax.jit(trie_lib.advance)
  device_trie = trie_lib.to_device(trie)
  path = np.full((n, width), trie_lib.DEAD, np.int32)
  node = np.zeros(n, np.int32)
  for d in range(width):
    live = d < lengths
    node = np.where(live, np.asarray(step(device_trie, node, tokens[:, d])), node)
    path[live, d] = node[live]
  has_sep = (tokens == sep_id).any(1)
  if not has_sep.all():
    raise ValueError(f"sequence {int(np.flatnonzero(~has_sep)[0])} has no [SEP] ending its subject")
  first_sep = (tokens == sep_id).argmax(1)
  subject_node = path[np.arange(n), first_sep]
  _, group_of_seq = np.unique(subject_node, return_inverse=True)
  sizes = np.bincount(group_of_seq)
  wide_group = sizes > max_group if max_group is not None else np.zeros(len(sizes), bool)
  # Narrow groups renumbered 0.. in order; wide ones -2.
  row_of_group = np.where(wide_group, -2, np.cumsum(~wide_group) - 1).astype(np.int32)
  narrow = ~wide_group[group_of_seq]
  row_of_seq = row_of_group[group_of_seq]
  seqs = np.flatnonzero(narrow)
  order = seqs[np.argsort(row_of_seq[seqs], kind="stable")]
  narrow_sizes = sizes[~wide_group]
  rank = np.arange(len(order)) - np.repeat(np.cumsum(narrow_sizes) - narrow_sizes, narrow_sizes)
  members = np.full((max(len(narrow_sizes), 1), int(narrow_sizes.max()) if len(order) else 1), -1, np.int32)
  members[row_of_seq[order], rank] = order
  wide = np.flatnonzero(~narrow).astype(np.int32)
  wide = wide if len(wide) else np.full(1, -1, np.int32)
  group_of_node = np.full(trie.num_nodes, -1, np.int32)
  depth_of_node = np.zeros(trie.num_nodes, np.int32)
  cols = np.arange(width)[None, :]
  valid = path >= 0
  depth_of_node[path[valid]] = np.broadcast_to(cols + 1, path.shape)[valid]
  past_subject = valid & (cols >= first_sep[:, None])
  group_of_node[path[past_subject]] = np.broadcast_to(row_of_seq[:, None], path.shape)[past_subject]
  return Lookahead(group_of_node, depth_of_node, members, wide, tokens, path)


def _lcs_history(question, sequences):
  """LCS of the question [M, Lq] with every prefix of each sequence [M, L] (0 = padding, skipped
  in both): [M, L], entry i the LCS with the first i + 1 tokens.

  Bit-parallel (Hyyrö 2004) when Lq <= 32: the DP row is one uint32 whose set bits are the
  question positions not yet matched, so a token costs a few word operations instead of an
  O(Lq) row and a cummax; the look-ahead runs this on every beam's completions every step."""
  m, lq = question.shape
  if lq > 32:
    def extend_rows(rows, tok):
      rows = jnp.where((tok != 0)[:, None], lcs_extend(rows, question, tok), rows)
      return rows, rows[:, -1]
    _, history = jax.lax.scan(extend_rows, jnp.zeros((m, lq + 1), jnp.int32), sequences.T)
    return history.T
  bits = jnp.left_shift(jnp.uint32(1), jnp.arange(lq, dtype=jnp.uint32))
  live_bits = jnp.sum(jnp.where(question != 0, bits, jnp.uint32(0)), axis=1, dtype=jnp.uint32)

  def extend_bits(v, tok):
    match = jnp.sum(jnp.where(question == tok[:, None], bits, jnp.uint32(0)), axis=1, dtype=jnp.uint32)
    u = v & match & live_bits
    new = (v + u) | (v - u)
    v = jnp.where(tok != 0, new, v)
    return v, v

  _, history = jax.lax.scan(extend_bits, jnp.full((m,), 0xFFFFFFFF, jnp.uint32), sequences.T)  # [L, M]
  low = jnp.uint32((1 << lq) - 1) if lq < 32 else jnp.uint32(0xFFFFFFFF)
  return (lq - jax.lax.population_count(history | ~low).astype(jnp.int32) + (32 - lq)).T


def _last_sep(sequences, sep_id: int):
  """[M, L]: the position of the last [SEP] in the first i + 1 tokens of each sequence (-1: none)."""
  width = sequences.shape[-1]
  return jax.lax.cummax(jnp.where(sequences == sep_id, jnp.arange(width), -1), axis=sequences.ndim - 1)


def _encoded_lcs(history_at, last_sep_at, n, width: int):
  """LCS(first n tokens, [CLS] q [SEP]) from lookups of a sequence's LCS history and last [SEP]:
  `history_at(i)` / `last_sep_at(i)` give entry i (the first i + 1 tokens) for index arrays i
  shaped like n. See `lcs_with_encoded_question`."""
  def first(m, at):  # entry m - 1, 0 where m == 0
    return jnp.where(m > 0, at(jnp.clip(m - 1, 0, width - 1)), 0)
  j = jnp.where(n > 0, first(n, last_sep_at), -1)
  through_sep = jnp.where(j >= 0, 1 + first(j, history_at), 0)
  return jnp.maximum(first(n, history_at), through_sep)


def lcs_with_encoded_question(question, sequences, lengths, sep_id: int):
  """LCS(first n tokens of each sequence, [CLS] question [SEP]) for the n of `lengths`, as note
  7's reference code measures the look-ahead: against the question as BERT encodes it.

  [CLS] never occurs in a target, so it adds nothing; the final [SEP] adds one where the
  sequence has a [SEP] after the tokens it matches: LCS(x, q [SEP]) = max(LCS(x, q),
  1 + LCS(x[:j], q)), j the position of the last [SEP] of x (the LCS of a prefix only grows).

  Args:
    question: int [M, Lq], 0-padded, without [CLS] / [SEP].
    sequences: int [M, L], 0-padded.
    lengths: int [M], or a tuple of such arrays (one scan of the sequences serves them all).
    sep_id: the [SEP] id.
  Returns:
    int32 [M] (a tuple of them for a tuple of lengths).
  """
  history = _lcs_history(question, sequences)
  last_sep = _last_sep(sequences, sep_id)
  width = sequences.shape[1]
  row = lambda table: (lambda i: jnp.take_along_axis(table, i[:, None], axis=1)[:, 0])
  at = lambda n: _encoded_lcs(row(history), row(last_sep), n, width)
  return tuple(at(n) for n in lengths) if isinstance(lengths, tuple) else at(lengths)


def lookahead_args(source, beam_size: int, tables: Lookahead):
  """The look-ahead rule's per-batch inputs (`lookahead_bonus`'s args) for questions [B, Lq].

  Besides each hypothesis's question row, the LCS history of every wide-group sequence with
  every question [B, W, L]: computed here once per batch, not once per step and hypothesis.

  Args:
    source: int [B, Lq] the questions, 0-padded, without [CLS] / [SEP].
    beam_size: K, hypotheses per question.
    tables: the `Lookahead` tables (on the device).
  Returns:
    (question rows int [B*K, Lq], tables, wide history int32 [B, W, L]).
  """
  batch = source.shape[0]
  wide_tokens = tables.tokens[jnp.maximum(tables.wide, 0)]                    # [W, L]
  w = wide_tokens.shape[0]
  history = _lcs_history(jnp.repeat(source, w, 0), jnp.tile(wide_tokens, (batch, 1)))
  return jnp.repeat(source, beam_size, 0), tables, history.reshape(batch, w, -1)


def lookahead_bonus(args, cache, log_probs, nodes, *, sep_id: int):
  """The note's look-ahead rule, over all completions, as its reference code has it: once the
  subject is decoded and more than one token is allowed, every allowed next token t gets the
  weight w(t) = 1 + max over the base's completions c through t of [LCS(c, Q) - LCS(prefix, Q)]
  (1 where none), Q the question encoded as `[CLS] q [SEP]` and c the fact's target without
  its closing [SEP] (the reference's trie keys), and p -> p^(1/w). Returns the additive change
  of the masked log p, [B, K, V]; beam search renormalises over the allowed tokens after it
  (decode.renormalise, as the reference).

  Args:
    args: `lookahead_args(...)`: (question rows int [B*K, Lq], Lookahead tables, the wide groups'
      LCS history [B, W, L]).
    cache: unused (the rule reads the trie, not the model).
    log_probs: [B, K, V] masked log-softmax (NEG_INF off the trie).
    nodes: [B*K] trie node of each hypothesis.
    sep_id: the [SEP] id (ends the subject; the question's closing token).
  Returns:
    float32 [B, K, V].
  """
  del cache
  question_rows, la, wide_history = args
  b, k, v = log_probs.shape
  alive_node = nodes >= 0
  node = jnp.maximum(nodes, 0)
  group = jnp.where(alive_node, la.group_of_node[node], -1)                   # [B*K]
  depth = la.depth_of_node[node]
  width = la.tokens.shape[1]
  before = jnp.clip(depth - 1, 0, width - 1)                                  # index of the last decoded token
  after = jnp.minimum(depth, width - 1)                                       # index of the next token

  hyp = jnp.arange(b * k)[:, None]

  def narrow(weights):
    """Narrow groups: the LCS of each of the hypothesis's R completions, scanned now."""
    members = la.members[jnp.maximum(group, 0)]                               # [B*K, R]
    rows = jnp.maximum(members, 0)
    # A member is a completion of this hypothesis if it passes through the same node.
    through = (members >= 0) & (group >= 0)[:, None] & (depth > 0)[:, None] & (
        la.path[rows, before[:, None]] == node[:, None])
    next_token = jnp.where(depth[:, None] < width, la.tokens[rows, after[:, None]], 0)
    r = members.shape[1]
    sequences = la.tokens[rows.reshape(-1)]
    question = jnp.repeat(question_rows, r, 0)
    key_length = (sequences != 0).sum(1) - 1                                  # without the closing [SEP]
    full, prefix = lcs_with_encoded_question(question, sequences, (key_length, jnp.repeat(depth, r)), sep_id)
    gain = (full - prefix).reshape(b * k, r)
    weight = jnp.where(through & (next_token != 0), gain + 1, 1).astype(jnp.float32)
    return weights.at[hyp, next_token].max(weight)

  def wide(weights):
    """Wide groups: every wide sequence, its LCS history with the question read from wide_history."""
    wide_rows = jnp.maximum(la.wide, 0)                                        # [W]
    wide_tokens, wide_path = la.tokens[wide_rows], la.path[wide_rows]        # [W, L]
    wide_through = (la.wide >= 0)[None, :] & (group == -2)[:, None] & (depth > 0)[:, None] & (
        wide_path.T[before] == node[:, None])                                 # [B*K, W]
    wide_next = jnp.where(depth[:, None] < width, wide_tokens.T[after], 0)
    w_count = wide_rows.shape[0]
    history = wide_history.reshape(b * w_count, width)
    last_sep = _last_sep(wide_tokens, sep_id)                                  # [W, L]
    cell = (jnp.arange(b * k) // k)[:, None] * w_count + jnp.arange(w_count)[None, :]  # [B*K, W] rows of history
    history_at = lambda i: history[cell, i]
    last_sep_at = lambda i: last_sep[jnp.arange(w_count)[None, :], i]
    wide_key = jnp.broadcast_to((wide_tokens != 0).sum(1) - 1, cell.shape)
    wide_gain = (_encoded_lcs(history_at, last_sep_at, wide_key, width)
                 - _encoded_lcs(history_at, last_sep_at, jnp.broadcast_to(depth[:, None], cell.shape), width))
    wide_weight = jnp.where(wide_through & (wide_next != 0), wide_gain + 1, 1).astype(jnp.float32)
    return weights.at[hyp, wide_next].max(wide_weight)

  # Each path only on the steps where some hypothesis needs it (most steps have none in a wide
  # group; none in any group while subjects are decoded): the same weights, less work.
  weights = jnp.ones((b * k, v), jnp.float32)
  weights = jax.lax.cond(jnp.any(group >= 0), narrow, lambda w: w, weights)
  weights = jax.lax.cond(jnp.any(group == -2), wide, lambda w: w, weights)
  lp = log_probs.reshape(b * k, v)
  live = lp > decoding.NEG_INF / 2
  branching = live.sum(-1) > 1
  active = ((group != -1) & branching)[:, None] & live
  return jnp.where(active, lp / weights - lp, 0.0).reshape(b, k, v)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "use_trie", "sep_id", "bos_id",
                                             "renormalise", "length_penalty", "early_stop"))
def decode_batch(model: Seq2Seq, params, source, trie, lookahead=None, *, beam_size: int, use_trie: bool,
                 sep_id: int, bos_id: int, renormalise: bool = True, length_penalty: float = 0.0,
                 early_stop: bool = True) -> decoding.BeamResult:
  """Best-first beams of one batch of questions [B, Ls], jitted end to end; `lookahead`
  (a `Lookahead` of the same trie, or None) turns the note's look-ahead rule on;
  renormalise and length_penalty as `decoding.beam_search`."""
  batch = source.shape[0]
  encoded = model.apply({"params": params}, source, method=Seq2Seq.encode)
  enc_rows = jnp.repeat(encoded, beam_size, 0)
  mask_rows = jnp.repeat(source != 0, beam_size, 0)

  def step(args, cache, tokens, t):
    logits, state = model.apply({"params": args, "cache": cache}, tokens, enc_rows, mask_rows,
                                decode=True, position=t, method=Seq2Seq.decode, mutable=["cache"])
    return logits[:, 0], state["cache"]

  return decoding.beam_search(step, params, init_cache(model, params, enc_rows, mask_rows),
                              batch_size=batch, beam_size=beam_size,
                              max_length=model.max_target_length, vocab_size=model.vocab_size,
                              bos_id=bos_id, end_id=sep_id, end_count=3,
                              trie=trie if use_trie else None,
                              bonus_fn=(functools.partial(lookahead_bonus, sep_id=sep_id)
                                        if lookahead is not None else None),
                              bonus_args=(lookahead_args(source, beam_size, lookahead)
                                          if lookahead is not None else None), renormalise=renormalise,
                              length_penalty=length_penalty, early_stop=early_stop)


def device_constraint(data: KbqaData, distractors: bool, lookahead: bool):
  """(trie, look-ahead tables or None) of the base, on the device, for `decode_batch`."""
  tokens, lengths = target_arrays(data.facts_base(distractors), data.tokenizer, data.order)
  host_trie = trie_lib.build_trie(tokens, lengths, data.tokenizer.vocab_size, end_token=data.tokenizer.pad_id)
  tables = build_lookahead(host_trie, tokens, lengths, data.tokenizer.sep_id) if lookahead else None
  return trie_lib.to_device(host_trie), (jax.tree.map(jnp.asarray, tables) if lookahead else None)


class Predictions(NamedTuple):
  """What `predict` decoded for each example of a split."""
  objects: list[str]                      # the answer O ("" where no fact was decoded)
  facts: list[kgclue.Fact | None]         # the decoded fact of the base, or None
  finished: np.ndarray                    # bool [N]: the best hypothesis ended within max_target_length
  cut: np.ndarray                         # bool [N]: the length limit stopped a hypothesis that could still rank


def predict(model, params, data: KbqaData, split: str, *, beam_size: int, constrained: bool,
            lookahead: bool, distractors: bool = True, renormalise: bool = True, length_penalty: float = 0.0,
            batch_size: int = 16) -> Predictions:
  """The decoded fact and answer of every example of `split` (`Predictions`): the best
  hypothesis's fact of the base and its object, or None and "" where it is not a fact
  (unconstrained output off the base, or a hypothesis that never ended)."""
  from lmsys import data as data_lib  # pylint: disable=g-import-not-at-top
  if lookahead and not constrained:
    raise ValueError("the look-ahead rule reads the trie: it needs constrained decoding")
  arrays = data.arrays(split, model.max_source_length, model.max_target_length)
  base = data.base if distractors else data.base.without_distractors()
  tok = data.tokenizer
  trie, tables = device_constraint(data, distractors, lookahead) if constrained else (None, None)

  def run(batch, _):
    result = decode_batch(model, params, jnp.asarray(batch["source"]), trie, tables, beam_size=beam_size,
                          use_trie=constrained, sep_id=tok.sep_id, bos_id=tok.cls_id, renormalise=renormalise,
                          length_penalty=length_penalty)
    return {"best": np.asarray(result.sequences[:, 0]), "finished": np.asarray(result.finished[:, 0]),
            "cut": np.asarray(result.cut)}

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
  return Predictions(objects, facts, np.asarray(out["finished"], bool), np.asarray(out["cut"], bool))


class DecodeRun(NamedTuple):
  """One decoding setting of config key decode.runs (`decode_runs`)."""
  beam: int
  constrained: bool
  lookahead: bool
  distractors: bool
  renormalise: bool
  length_penalty: float


def decode_runs(decode) -> dict[str, DecodeRun]:
  """The decoding runs of config section `decode`: runs maps a name to (beam size, constrained,
  lookahead, distractors) or (..., renormalise); renormalise defaults to decode.renormalise,
  the length penalty is decode.length_penalty. ConfigError naming the key on a bad entry."""
  renormalise = decode.get("renormalise", True)
  length_penalty = decode.get("length_penalty", 0.0)
  if not isinstance(renormalise, bool):
    raise ConfigError(f"config key 'decode.renormalise': expected True or False, got {renormalise!r}")
  if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
    raise ConfigError(f"config key 'decode.length_penalty': expected a number, got {length_penalty!r}")
  runs = {}
  for name, run in decode.runs.items():
    run = tuple(run)
    if (len(run) not in (4, 5) or isinstance(run[0], bool) or not isinstance(run[0], int) or run[0] < 1
        or not all(isinstance(x, bool) for x in run[1:])):
      raise ConfigError(f"config key 'decode.runs.{name}': expected (beam size >= 1, constrained, lookahead, "
                        f"distractors[, renormalise]) with True/False flags, got {run!r}")
    if run[2] and not run[1]:
      raise ConfigError(f"config key 'decode.runs.{name}': the look-ahead rule needs constrained decoding")
    runs[name] = DecodeRun(run[0], run[1], run[2], run[3], run[4] if len(run) == 5 else renormalise,
                           float(length_penalty))
  return runs


def evaluate_run(model, params, data: KbqaData, split: str, run: DecodeRun, batch_size: int = 16) -> dict:
  """Decodes `split` with one setting and scores it against the gold objects.

  Returns:
    the row of the results table: em, f1, mean (official metric), the setting, fact_rate (the
    share of answers that are facts of the base), unfinished (questions whose best hypothesis
    never ended within max_target_length) and cut (questions where the length limit stopped a
    hypothesis that could still have ranked), examples.
  """
  pred = predict(model, params, data, split, beam_size=run.beam, constrained=run.constrained,
                 lookahead=run.lookahead, distractors=run.distractors, renormalise=run.renormalise,
                 length_penalty=run.length_penalty, batch_size=batch_size)
  row = score_answers(pred.objects, gold_objects(data, split))
  row.update(run._asdict())
  row.update(fact_rate=float(np.mean([f is not None for f in pred.facts])),
             unfinished=int((~pred.finished).sum()), cut=int(pred.cut.sum()), examples=len(pred.facts))
  return row


def gold_objects(data: KbqaData, split: str) -> list[str]:
  return [ex.fact.object if ex.fact is not None else "" for ex in data.splits[split]]
