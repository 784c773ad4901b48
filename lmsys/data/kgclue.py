"""KgCLUE knowledge-base QA: split files, the retrieval base, a character tokenizer, target sequences.

Note 7 answers a question by decoding `S [SEP] P [SEP] M [SEP]` (the
subject, predicate and the subject's sense), constrained to the facts of a
knowledge base by a trie (`lmsys.nn.trie`), and then looks the object O up.

Files. `<root>/kgclue/<split>.json` (root: config key data.data_dir, else
$LMSYS_DATA_DIR; `lmsys.data.kgclue_dir`), one JSON object a line:
{"id", "question", "answer": "S ||| P ||| O"}. Any split name works
(`load_split`); `available_splits` lists every `*.json` in the folder.

Subject and sense. A subject may end with a sense in full-width parentheses,
`牛郎织女（中国著名民间故事）` -> S `牛郎织女`, M `中国著名民间故事`. The sense is the
last balanced `（…）` group that ends the subject, nested groups kept inside it:
`郑多彬（韩国女演员（2000年出生））` -> `郑多彬` / `韩国女演员（2000年出生）`. No sense
(M = "") when the subject does not end with `）`, when its parentheses do not
balance, when the group would be the whole subject, or when it is empty `（）`:
`完美（中国）有限公司` keeps its parentheses. Half-width `(...)` is never a sense.

The retrieval base (`build_base`). The real KgCLUE base has ~20M triples; it is
not shipped, so this base is far smaller: every fact (S, M, P, O) of every
split file present (train, dev, and any split a user adds; files in
`available_splits` order: train, dev, then the rest by name; lines in file
order), exact duplicates dropped, plus distractors that make the trie
constraint do real work (`make_distractors`, seeded and deterministic):
  - predicate distractors: per entity (S, M), `distractors` facts (S, M, P', O')
    where (P', O') is taken from a real fact of another entity drawn uniformly
    (so frequent predicates are drawn often), P' not already a predicate of
    (S, M) - the model must pick the right predicate of a known subject;
  - sense distractors: per entity, `sense_distractors` facts (S, M', P, O'')
    with M' a sense of another entity (not a real sense of S), P one of the
    entity's real predicates and O'' the object of a random real fact with
    predicate P - the model must pick the right sense.
No distractor shares its key (S, P, M) with a real fact or another distractor,
so a key names one fact. `KgBase.without_distractors()` (or distractors=0,
sense_distractors=0) gives the base of real facts only.

Tokens. `CharTokenizer` maps characters to the ids of Google's Chinese BERT
vocabulary (`<root>/vocab/bert-base-chinese-vocab.txt`): one token a character,
an uppercase letter the vocabulary lacks is lowercased (as BERT-chinese does),
whitespace becomes `[unused1]` (so that decoding gives the space back), any
other unknown character [UNK]; [PAD] = 0. Targets: `S [SEP] P [SEP] M [SEP]`
(order "spm", the note's) or `S [SEP] M [SEP] P [SEP]` ("smp"), no [CLS]
(a decoder's start token is the model's business); [PAD] is what a trie
allows after the final [SEP] (`lmsys.nn.trie`: end_token).

    base = build_base(data_dir)                       # real facts + distractors
    tok = load_tokenizer(data_dir)
    t = kbqa.build_base_trie(base, tok, order="spm")  # (lmsys.tasks.kbqa) TrieArrays, value = fact index
    base.lookup(S, P, M) -> O ;  kbqa.fact_at_node(base, t, node) -> Fact
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from lmsys import data
from lmsys.config import ConfigError

SENSE_OPEN, SENSE_CLOSE = "（", "）"
ANSWER_SEPARATOR = "|||"
ORDERS = {"spm": ("subject", "predicate", "sense"), "smp": ("subject", "sense", "predicate")}


class Fact(NamedTuple):
  """One triple of the base, the subject split from its sense (M, "" when none)."""
  subject: str
  sense: str
  predicate: str
  object: str

  @property
  def key(self) -> tuple[str, str, str]:
    """(S, P, M): what the decoder produces, and what names the fact."""
    return (self.subject, self.predicate, self.sense)

  @property
  def full_subject(self) -> str:
    """The subject as the file writes it: S（M） (or S)."""
    return f"{self.subject}{SENSE_OPEN}{self.sense}{SENSE_CLOSE}" if self.sense else self.subject


class Example(NamedTuple):
  """A question with its answer fact (None for a split without answers)."""
  id: Any
  question: str
  fact: Fact | None


# ---------------------------------------------------------------- parsing and files

def split_subject(text: str) -> tuple[str, str]:
  """'S（M）' -> (S, M); (text, '') when there is no sense (see the module doc for the rule)."""
  text = text.strip()
  if not text.endswith(SENSE_CLOSE):
    return text, ""
  depth = 0
  for i in range(len(text) - 1, -1, -1):
    if text[i] == SENSE_CLOSE:
      depth += 1
    elif text[i] == SENSE_OPEN:
      depth -= 1
      if depth == 0:
        subject, sense = text[:i].strip(), text[i + 1:-1].strip()
        return (subject, sense) if subject and sense else (text, "")
  return text, ""  # unbalanced


def parse_answer(answer: str) -> Fact:
  """'S ||| P ||| O' -> Fact; ValueError unless three non-empty parts."""
  if not isinstance(answer, str):
    raise ValueError(f"answer must be a string, got {type(answer).__name__}")
  parts = [p.strip() for p in answer.split(ANSWER_SEPARATOR)]
  if len(parts) != 3:
    raise ValueError(f"answer {answer!r} has {len(parts)} parts, not 3 ('S ||| P ||| O')")
  if not all(parts):
    raise ValueError(f"answer {answer!r} has an empty part")
  subject, sense = split_subject(parts[0])
  return Fact(subject, sense, parts[1], parts[2])


def split_path(split: str, data_dir: str | None = None) -> str:
  path = os.path.join(data.kgclue_dir(data_dir), f"{split}.json")
  if not os.path.isfile(path):
    raise ConfigError(f"kgclue: split file not found: {path!r} (splits here: "
                      f"{', '.join(available_splits(data_dir)) or 'none'})")
  return path


def available_splits(data_dir: str | None = None) -> list[str]:
  """Every `<split>.json` in the kgclue folder: train, dev, then the others by name."""
  names = [os.path.basename(p)[:-len(".json")]
           for p in glob.glob(os.path.join(glob.escape(data.kgclue_dir(data_dir)), "*.json"))]
  first = [s for s in ("train", "dev") if s in names]
  return first + sorted(s for s in names if s not in first)


def load_split(split: str, data_dir: str | None = None, require_answer: bool = True) -> list[Example]:
  """The examples of `<split>.json`; a malformed line is one ConfigError naming file and line.

  require_answer=False lets records without an "answer" (a test set's
  questions) through with fact=None; a present but malformed answer is an
  error either way.
  """
  path = split_path(split, data_dir)
  records = data.read_json_lines(path)
  with open(path, "rb") as f:  # line numbers of the records (read_json_lines skips blank lines)
    lines = [n for n, raw in enumerate(f, 1) if raw.decode("utf-8").strip()]
  examples = []
  for index, (record, line) in enumerate(zip(records, lines)):
    try:
      question = record.get("question")
      if not isinstance(question, str):
        raise ValueError("no 'question' string")
      if "answer" in record:
        fact = parse_answer(record["answer"])
      elif require_answer:
        raise ValueError("no 'answer'")
      else:
        fact = None
    except ValueError as e:
      raise ConfigError(f"{path}, line {line}: malformed KgCLUE record ({e})") from None
    examples.append(Example(record.get("id", index), question, fact))
  return examples


# ---------------------------------------------------------------- the retrieval base

@dataclasses.dataclass(frozen=True)
class KgBase:
  """Facts of the retrieval base: the real ones first (`num_real`), then the distractors.

  Index i of `facts` is the fact's id everywhere (trie values included).
  """
  facts: tuple[Fact, ...] = dataclasses.field(repr=False)
  num_real: int
  splits: tuple[str, ...] = ()
  settings: dict = dataclasses.field(default_factory=dict)  # distractors, sense_distractors, seed

  def __post_init__(self):
    index = {}
    for i, fact in enumerate(self.facts):
      index.setdefault(fact.key, i)  # two real facts may share a key (different O): the first wins
    object.__setattr__(self, "_index", index)

  def __len__(self) -> int:
    return len(self.facts)

  @property
  def real_facts(self) -> tuple[Fact, ...]:
    return self.facts[:self.num_real]

  @property
  def distractors(self) -> tuple[Fact, ...]:
    return self.facts[self.num_real:]

  def is_distractor(self, index: int) -> bool:
    return index >= self.num_real

  def index(self, subject: str, predicate: str, sense: str = "") -> int | None:
    """The id of the fact with key (S, P, M), or None."""
    return self._index.get((subject, predicate, sense))

  def lookup(self, subject: str, predicate: str, sense: str = "") -> str | None:
    """(S, P, M) -> O, the answer after decoding; None when no fact has that key."""
    i = self.index(subject, predicate, sense)
    return None if i is None else self.facts[i].object

  def without_distractors(self) -> KgBase:
    return KgBase(self.real_facts, self.num_real, self.splits,
                  dict(self.settings, distractors=0, sense_distractors=0))


def unique_facts(examples: Iterable[Example]) -> list[Fact]:
  """The facts of `examples` in order, exact duplicates dropped (examples without one skipped)."""
  return list(dict.fromkeys(e.fact for e in examples if e.fact is not None))


def make_distractors(facts: Sequence[Fact], distractors: int = 4, sense_distractors: int = 1,
                     seed: int = 0) -> list[Fact]:
  """Distractor facts for every entity (S, M) of `facts` (the rule is in the module doc).

  Deterministic in (facts in their order, the two counts, seed). An entity may
  get fewer than asked when the base has too few predicates or senses to draw
  (at most 8 * count + 8 draws each). No distractor key (S, P, M) is a real
  key or another distractor's.
  """
  if distractors < 0 or sense_distractors < 0:
    raise ConfigError(f"distractor counts must be >= 0 (got {distractors}, {sense_distractors})")
  if not facts or not (distractors or sense_distractors):
    return []
  rng = np.random.default_rng(seed)
  entities = list(dict.fromkeys((f.subject, f.sense) for f in facts))
  entity_of = {e: i for i, e in enumerate(entities)}
  fact_entity = np.array([entity_of[(f.subject, f.sense)] for f in facts])
  predicates = [set() for _ in entities]
  for f, e in zip(facts, fact_entity):
    predicates[e].add(f.predicate)
  real_predicates = [sorted(p) for p in predicates]
  taken = {f.key for f in facts}
  real_entities = set(entities)
  by_predicate = {}
  for i, f in enumerate(facts):
    by_predicate.setdefault(f.predicate, []).append(i)
  senses = list(dict.fromkeys(f.sense for f in facts if f.sense))
  out = []
  tries_p, tries_s = 8 * distractors + 8, 8 * sense_distractors + 8
  draws_p = rng.integers(0, len(facts), (len(entities), tries_p))
  draws_s = rng.integers(0, max(len(senses), 1), (len(entities), tries_s))
  picks = rng.random((len(entities), tries_s, 2))
  for e, (subject, sense) in enumerate(entities):
    accepted = 0
    for j in draws_p[e] if distractors else ():
      donor = facts[j]
      key = (subject, donor.predicate, sense)
      if fact_entity[j] == e or donor.predicate in predicates[e] or key in taken:
        continue
      out.append(Fact(subject, sense, donor.predicate, donor.object))
      predicates[e].add(donor.predicate)
      taken.add(key)
      accepted += 1
      if accepted == distractors:
        break
    accepted = 0
    for k, j in enumerate(draws_s[e] if sense_distractors and senses else ()):
      other = senses[j]
      if other == sense or (subject, other) in real_entities:
        continue
      predicate = real_predicates[e][int(picks[e, k, 0] * len(real_predicates[e]))]
      key = (subject, predicate, other)
      if key in taken:
        continue
      donors = by_predicate[predicate]
      out.append(Fact(subject, other, predicate, facts[donors[int(picks[e, k, 1] * len(donors))]].object))
      taken.add(key)
      accepted += 1
      if accepted == sense_distractors:
        break
  return out


def base_from_facts(facts: Sequence[Fact], distractors: int = 4, sense_distractors: int = 1, seed: int = 0,
                    splits: Sequence[str] = ()) -> KgBase:
  """A KgBase of `facts` (deduplicated, in order) plus their distractors."""
  real = list(dict.fromkeys(facts))
  extra = make_distractors(real, distractors, sense_distractors, seed)
  return KgBase(tuple(real) + tuple(extra), len(real), tuple(splits),
                {"distractors": distractors, "sense_distractors": sense_distractors, "seed": seed})


def build_base(data_dir: str | None = None, distractors: int = 4, sense_distractors: int = 1, seed: int = 0,
               splits: Sequence[str] | None = None) -> KgBase:
  """The retrieval base: every fact of every split present (or of `splits`) + distractors.

  distractors / sense_distractors: per entity (S, M); 0 and 0 give the real
  facts only. Records without an answer (a test set's questions) add nothing.
  """
  splits = available_splits(data_dir) if splits is None else list(splits)
  facts = [f for s in splits for f in unique_facts(load_split(s, data_dir, require_answer=False))]
  return base_from_facts(facts, distractors, sense_distractors, seed, splits)


# ---------------------------------------------------------------- tokens

class CharTokenizer:
  """Characters <-> ids of a BERT vocabulary file (one token a line, id = line index)."""

  def __init__(self, tokens: Sequence[str], space_token: str = "[unused1]"):
    self.tokens = list(tokens)
    ids = {t: i for i, t in enumerate(self.tokens)}
    for name in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
      if name not in ids:
        raise ConfigError(f"vocabulary has no {name} token")
    self.pad_id, self.unk_id, self.cls_id, self.sep_id = (ids[n] for n in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"))
    if self.pad_id != 0:
      raise ConfigError(f"vocabulary: [PAD] must be id 0 (it is {self.pad_id})")
    self.mask_id = ids.get("[MASK]", self.unk_id)
    self.space_id = ids.get(space_token, self.unk_id)
    self.char_ids = {t: i for t, i in ids.items() if len(t) == 1}
    self._cache = {}

  @classmethod
  def from_file(cls, path: str, **kwargs) -> CharTokenizer:
    """The tokenizer over vocabulary file `path`; a bad file is one ConfigError naming it (and the line)."""
    tokens = data.read_vocab(path)
    try:
      return cls(tokens, **kwargs)
    except ConfigError as e:
      raise ConfigError(f"vocabulary {path}: {e}") from None

  @property
  def vocab_size(self) -> int:
    return len(self.tokens)

  def char_id(self, ch: str) -> int:
    i = self.char_ids.get(ch)
    if i is None:
      i = self.space_id if ch.isspace() else self.char_ids.get(ch.lower(), self.unk_id)
    return i

  def encode(self, text: str) -> list[int]:
    """One id a character (no [CLS]/[SEP] added)."""
    out = self._cache.get(text)
    if out is None:
      out = [self.char_id(ch) for ch in text]
      if len(self._cache) < 1 << 20:
        self._cache[text] = out
    return list(out)

  def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
    """Text of `ids`: [PAD] dropped, the space token as ' ', '##x' as 'x', other bracketed
    tokens ([SEP], [UNK], ...) as written, or dropped with skip_special."""
    out = []
    for i in ids:
      i = int(i)
      if i == self.pad_id:
        continue
      if i == self.space_id and i != self.unk_id:
        out.append(" ")
        continue
      token = self.tokens[i]
      if token.startswith("##") and len(token) > 2:
        token = token[2:]
      elif skip_special and token.startswith("[") and token.endswith("]") and len(token) > 2:
        continue
      out.append(token)
    return "".join(out)

  def encode_target(self, fact: Fact, order: str = "spm") -> list[int]:
    """`S [SEP] P [SEP] M [SEP]` (order 'spm') or `S [SEP] M [SEP] P [SEP]` ('smp')."""
    out = []
    for field in ORDERS[check_order(order)]:
      out += self.encode(getattr(fact, field))
      out.append(self.sep_id)
    return out

  def decode_target(self, ids: Iterable[int], order: str = "spm") -> tuple[str, str, str] | None:
    """(S, P, M) from a decoded target (up to its third [SEP]; [PAD] ends it); None if incomplete."""
    parts, current = [], []
    for i in ids:
      i = int(i)
      if i == self.pad_id:
        break
      if i == self.sep_id:
        parts.append(self.decode(current))
        current = []
        if len(parts) == 3:
          break
      else:
        current.append(i)
    if len(parts) < 3:
      return None
    named = dict(zip(ORDERS[check_order(order)], parts))
    return named["subject"], named["predicate"], named["sense"]


def check_order(order: str) -> str:
  """'spm' / 'smp' (also 'S,P,M', 'SMP', ...) -> the canonical name; ConfigError otherwise."""
  name = order.lower().replace(",", "").replace(" ", "")
  if name not in ORDERS:
    raise ConfigError(f"target order {order!r} unknown (known: spm = S,P,M; smp = S,M,P)")
  return name


def load_tokenizer(data_dir: str | None = None, path: str | None = None) -> CharTokenizer:
  """The character tokenizer over `path`, or over the data root's BERT-chinese vocabulary
  (`lmsys.data.vocab_path`)."""
  return CharTokenizer.from_file(data.vocab_path(data_dir, path or ""))
