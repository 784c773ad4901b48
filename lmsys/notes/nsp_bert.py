"""Note 5 (kexue 8671; arXiv 2109.03564): NSP-BERT, zero-shot classification through Next
Sentence Prediction, on the FewCLUE tasks, as the paper's released code (github.com/sunyilgdx/NSP-BERT)
runs them.

Every example becomes text pairs `[CLS] first [SEP] second [SEP]` scored by one number, the
NSP head's log P(IsNext). Two mappings from scores to labels:

- candidates contrast (eprstmt, tnews, iflytek, csldcp, chid): one pair per candidate label
  (its prompt, `TEMPLATES`, filled with the label's word); the prediction is the candidate
  whose pair has the highest P(IsNext). Single-sentence tasks put the prompt first
  (`[CLS] prompt [SEP] text [SEP]`, the released `IS_PRE` and last pattern of each task).
- samples contrast (ocnli, bustm, csl, cluewsc): one pair per example, no label text. All
  examples of the threshold split (dev) are ranked by P(IsNext) and cut into C groups of
  N // C (the last group takes the remainder), lowest scores -> the first label of
  `SAMPLE_LABELS[task]`, highest -> the last (ocnli: contradiction < neutral < entailment, the
  released label ids). The threshold split itself is labelled by that rank cut; any other
  split by C - 1 thresholds fixed on it: as released, threshold g is the highest score of group
  g and a score at or above it moves up (`thresholds="released"`), or the midpoint between
  neighbouring groups' boundary scores (`"midpoint"`, lmsys's earlier rule).

Pairs (first segment + second segment), as the released scripts build them:
  eprstmt  [这次买的东西很差 | 这次买的东西很好] + review
  tnews    这是一则{word}新闻 + headline   (words: the classification code's list, 证券 for
           news_stock and 民生 for news_story; tnews_labels="file": the label file's 股票, 故事)
  iflytek  这是一款{label_des}类软件 + description      (the records' label_des = the code's list)
  csldcp   这是一篇{label}类论文 + abstract              (csldcp/labels_all.txt)
  chid     candidate idiom + content without the blank, the idiom given the position ids of
           the blank ("soft positions", `soft_position_ids`); chid="text_first": content +
           idiom with plain positions (the note's order)
  csl      abstract + keywords joined by ","
  cluewsc  span1 (the candidate referent) + text 上文中{pronoun}是指 (pattern 1, is_pre=True);
           cluewsc_order="text_first": the two swapped
  ocnli, bustm  sentence2 + sentence1
Lengths: the released classification and sentence-pair scripts read 256 tokens a pair, the
cloze (chid) and coreference (cluewsc) scripts 128 (`RELEASED_MAX_LENGTH`); the paper used 128;
never more than the model's positions. Texts longer than the window are cropped by characters
so that the ChID blank's context and the CLUEWSC pattern survive; the rest is WordPiece's
longest-first truncation.

Scoring is model-free here: `zero_shot_task` takes any `scorer(pairs [N][K]) -> [N, K]`.
`make_scorer` builds the BERT one: every candidate of a batch of examples in one jitted call,
padded batches through `lmsys.data.map_batches` (one compilation per task), a tqdm bar over
examples. Run: configs/nsp_bert.py.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from lmsys import claims, data, metrics, timing
from lmsys.config import ConfigError

CANDIDATE_TASKS = ("eprstmt", "tnews", "iflytek", "csldcp", "chid")
SAMPLE_TASKS = ("ocnli", "bustm", "csl", "cluewsc")
TASKS = ("eprstmt", "tnews", "iflytek", "csldcp", "bustm", "ocnli", "csl", "cluewsc", "chid")

# Prompt per candidate label: "{}" is the label's text.
TEMPLATES = {"tnews": "这是一则{}新闻", "iflytek": "这是一款{}类软件", "csldcp": "这是一篇{}类论文"}
EPRSTMT_PROMPTS = {"Negative": "这次买的东西很差", "Positive": "这次买的东西很好"}
CLUEWSC_PATTERN = "上文中{}是指"
# Samples contrast: labels in order of increasing P(IsNext).
SAMPLE_LABELS = {"ocnli": ("contradiction", "neutral", "entailment"), "bustm": ("0", "1"),
                 "csl": ("0", "1"), "cluewsc": ("false", "true")}
CHID_BLANK = "#idiom#"

# The released classification code's TNEWS words, by the label file's label_desc (utils.py of
# sunyilgdx/NSP-BERT lists them for its relabelled copy of the task, story last).
TNEWS_RELEASED_WORDS = {"news_culture": "文化", "news_entertainment": "娱乐", "news_sports": "体育",
                        "news_finance": "财经", "news_house": "房产", "news_car": "汽车", "news_edu": "教育",
                        "news_tech": "科技", "news_military": "军事", "news_travel": "旅游", "news_world": "国际",
                        "news_stock": "证券", "news_agriculture": "农业", "news_game": "电竞", "news_story": "民生"}
# Tokens a pair in the released scripts (classification and sentence pairs: 256; cloze and
# coreference: 128, the paper's length for every task).
RELEASED_MAX_LENGTH = {"eprstmt": 256, "tnews": 256, "iflytek": 256, "csldcp": 256, "bustm": 256, "ocnli": 256,
                       "csl": 256, "chid": 128, "cluewsc": 128}
# Protocol choices: the first of each is the released code's (the default).
PROTOCOL_CHOICES = {"tnews_labels": ("released", "file"), "cluewsc_order": ("span_first", "text_first"),
                    "chid": ("soft_positions", "text_first"), "thresholds": ("released", "midpoint")}

# The paper's zero-shot accuracy (%) with a BERT-base (FewCLUE; the note's table).
PAPER_BERT_BASE = {"eprstmt": 86.9, "csldcp": 47.6, "tnews": 51.0, "iflytek": 41.6, "ocnli": 37.4,
                   "bustm": 63.4, "csl": 64.4, "chid": 52.0, "cluewsc": 59.4}
PAPER_AVERAGE = 55.96


def check_protocol(protocol) -> dict:
  """The protocol choices of config section `protocol` (a mapping), completed with the released
  defaults; ConfigError naming the key on an unknown choice."""
  out = {key: choices[0] for key, choices in PROTOCOL_CHOICES.items()}
  for key, value in dict(protocol or {}).items():
    if key not in PROTOCOL_CHOICES:
      raise ConfigError(f"config key 'protocol.{key}': unknown (known: {', '.join(PROTOCOL_CHOICES)})")
    if value not in PROTOCOL_CHOICES[key]:
      raise ConfigError(f"config key 'protocol.{key}': {value!r} is not one of {', '.join(PROTOCOL_CHOICES[key])}")
    out[key] = value
  return out


def task_max_length(task: str, max_length: int, model_positions: int) -> int:
  """Tokens a pair for `task`: max_length, or the released script's length where it is 0, never
  more than the model's positions."""
  return min(max_length or RELEASED_MAX_LENGTH[task], model_positions)


def mapping(task: str) -> str:
  if task in CANDIDATE_TASKS:
    return "candidates"
  if task in SAMPLE_TASKS:
    return "samples"
  raise ConfigError(f"unknown FewCLUE task {task!r} (known: {', '.join(TASKS)})")


# ---------------------------------------------------------------- labels and files

def needed_files(task: str) -> list[str]:
  """Label files a task's zero-shot run reads besides its split files."""
  return {"tnews": ["label_index2en2zh.json"], "csldcp": ["labels_all.txt"]}.get(task, [])


def label_texts(task: str, data_dir: str | None, splits: Sequence[str],
                tnews_labels: str = "released") -> dict[str, str]:
  """{label as in the records: the text the prompt shows} for a candidates-contrast task, in
  the fixed label order of `lmsys.data.fewclue_label_names` (chid has none: its candidates
  are per example). tnews_labels: "released" (`TNEWS_RELEASED_WORDS`, by label_desc) or
  "file" (the label file's label_zh)."""
  if task == "eprstmt":
    return dict(EPRSTMT_PROMPTS)
  directory = data.fewclue_dir(task, data_dir)
  if task == "tnews":
    path = os.path.join(directory, "label_index2en2zh.json")
    rows = data.read_json_lines(path)
    if tnews_labels == "file":
      return {str(r["label"]): r["label_zh"] for r in rows}
    unknown = [r.get("label_desc") for r in rows if r.get("label_desc") not in TNEWS_RELEASED_WORDS]
    if unknown:
      raise ConfigError(f"{path}: label_desc {unknown[0]!r} has no word in the released code's list")
    return {str(r["label"]): TNEWS_RELEASED_WORDS[r["label_desc"]] for r in rows}
  if task == "csldcp":
    return {name: name for name in data.fewclue_label_names(task, data_dir)}
  if task == "iflytek":  # no label file: the names are the records' label_des
    seen = {}
    for split in splits:
      for r in data.load_fewclue(task, split, data_dir):
        seen.setdefault(str(r["label"]), r.get("label_des"))
    names = data.fewclue_label_names(task, data_dir, tuple(splits))
    missing = [n for n in names if not seen.get(n)]
    if missing:
      raise ConfigError(f"fewclue/iflytek: no label_des for labels {missing[:5]} in {', '.join(splits)}")
    return {n: seen[n] for n in names}
  return {}


def _label(task: str, record: dict, index: int, split: str) -> str:
  key = "answer" if task == "chid" else "label"
  if key not in record:
    raise ConfigError(f"fewclue/{task}/{split}.json, record {index + 1}: no {key!r} field")
  return str(record[key])


# ---------------------------------------------------------------- pairs

def _crop_around(text: str, start: int, budget: int) -> tuple[str, int]:
  """(at most `budget` characters of `text` centred on position `start`, the window's offset)."""
  if len(text) <= budget:
    return text, 0
  lo = min(max(0, start - budget // 2), len(text) - budget)
  return text[lo:lo + budget], lo


def soft_position_ids(num_first: int, num_before: int, num_after: int) -> list[int]:
  """Position ids of `[CLS] candidate [SEP] before after [SEP]` for NSP-BERT's ChID, as the
  released cloze code (is_pre, is_soft_pos): the text is read as `[CLS] [SEP] before candidate
  after [SEP]`, so the candidate sits at the positions of the blank it fills.

  Args:
    num_first: tokens of the candidate; num_before / num_after: tokens of the text before and
      after the blank.
  Returns:
    one id a token, [CLS] first: [0, candidate 2 + num_before .., 1, before 2 .., after
    2 + num_before + num_first .., the last id + 1].
  """
  ids = [0] + [2 + num_before + j for j in range(num_first)] + [1]
  ids += [ids[-1] + j + 1 for j in range(num_before)]
  ids += [ids[-1] + num_first + j + 1 for j in range(num_after)]
  return ids + [ids[-1] + 1]


def build_pairs(task: str, records: list[dict], names: dict[str, str] | None = None,
                max_length: int = 128, split: str = "", cluewsc_order: str = "span_first",
                chid: str = "soft_positions") -> tuple[list[list[tuple]], np.ndarray]:
  """(pairs [N][K], labels int [N]) for `task`; a pair is (first, second) texts, or for ChID
  with soft positions (first, second, blank): `blank` is the character offset in `second`
  where `first` belongs (`soft_position_ids`).

  Candidates contrast: K candidates per example, label = the index of the true one among
  them; samples contrast: K = 1, label = the index in SAMPLE_LABELS[task]. `names` is
  `label_texts(...)` for the label-set tasks. `max_length` (tokens) only guides the character
  crops that keep the blank (chid) and the pattern (cluewsc) inside the model's window.
  cluewsc_order and chid: `PROTOCOL_CHOICES` (the released code's by default).
  """
  pairs, labels = [], []
  if task in ("eprstmt", "tnews", "iflytek", "csldcp"):
    if not names:
      raise ConfigError(f"fewclue/{task}: no label names")
    template = TEMPLATES.get(task, "{}")
    prompts = [template.format(text) for text in names.values()]
    index = {label: i for i, label in enumerate(names)}
    for i, r in enumerate(records):
      text = data.fewclue_text(task, r)
      pairs.append([(prompt, text) for prompt in prompts])
      label = _label(task, r, i, split)
      if label not in index:
        raise ConfigError(f"fewclue/{task}/{split}.json, record {i + 1}: label {label!r} not in the label list")
      labels.append(index[label])
  elif task == "chid":
    for i, r in enumerate(records):
      content, candidates = r.get("content", ""), r.get("candidates") or []
      if CHID_BLANK not in content or not candidates:
        raise ConfigError(f"fewclue/chid/{split}.json, record {i + 1}: no {CHID_BLANK} blank or no candidates")
      budget = max(8, max_length - 3 - max(len(c) for c in candidates))
      blank = content.index(CHID_BLANK)
      text, lo = _crop_around(content.replace(CHID_BLANK, ""), blank, budget)
      if chid == "soft_positions":
        pairs.append([(candidate, text, blank - lo) for candidate in candidates])
      else:
        pairs.append([(text, candidate) for candidate in candidates])
      labels.append(int(_label(task, r, i, split)))
  elif task in SAMPLE_TASKS:
    order = {label: k for k, label in enumerate(SAMPLE_LABELS[task])}
    for i, r in enumerate(records):
      if task in ("ocnli", "bustm"):
        pair = (r["sentence2"], r["sentence1"])
      elif task == "csl":
        pair = (r["abst"], ",".join(r["keyword"]))
      else:  # cluewsc
        target = r["target"]
        pattern = CLUEWSC_PATTERN.format(target["span2_text"])
        budget = max(8, max_length - 3 - len(target["span1_text"]) - len(pattern))
        text = r["text"][-budget:] + pattern
        pair = (target["span1_text"], text) if cluewsc_order == "span_first" else (text, target["span1_text"])
      pairs.append([pair])
      label = _label(task, r, i, split)
      if label not in order:
        raise ConfigError(f"fewclue/{task}/{split}.json, record {i + 1}: label {label!r} not one of "
                          f"{', '.join(SAMPLE_LABELS[task])}")
      labels.append(order[label])
  else:
    mapping(task)
  if pairs and len({len(p) for p in pairs}) != 1:
    raise ConfigError(f"fewclue/{task}/{split}.json: examples have different numbers of candidates "
                      f"({sorted({len(p) for p in pairs})})")
  return pairs, np.asarray(labels, np.int64)


# ---------------------------------------------------------------- mappings

def candidates_predict(scores: np.ndarray) -> np.ndarray:
  """Candidates contrast: the candidate with the highest log P(IsNext), per example."""
  return np.argmax(scores, axis=-1)


def rank_cut(scores: np.ndarray, num_labels: int) -> np.ndarray:
  """Samples contrast: rank by score, cut into num_labels groups of N // C (the last takes
  the remainder); group g (ascending scores) -> label g. Ties are broken by position."""
  scores = np.asarray(scores).reshape(-1)
  order = np.argsort(scores, kind="stable")
  size = len(scores) // num_labels
  groups = np.minimum(np.arange(len(scores)) // max(size, 1), num_labels - 1)
  predictions = np.empty(len(scores), np.int64)
  predictions[order] = groups
  return predictions


def fit_thresholds(scores: np.ndarray, num_labels: int, rule: str = "released") -> np.ndarray:
  """The C - 1 thresholds of the rank cut of `scores` (dev) for `apply_thresholds`.

  rule "released": threshold g is the highest score of group g (the released sentence-pair
  and coreference code; a score equal to it is labelled g + 1); "midpoint": halfway between
  the highest score of group g and the lowest of group g + 1.
  """
  scores = np.sort(np.asarray(scores, np.float64).reshape(-1))
  size = len(scores) // num_labels
  if size < 1:
    raise ConfigError(f"samples contrast: {len(scores)} threshold examples cannot make {num_labels} groups")
  cuts = np.arange(1, num_labels) * size
  if rule == "released":
    return scores[cuts - 1]
  if rule == "midpoint":
    return (scores[cuts - 1] + scores[cuts]) / 2
  raise ConfigError(f"threshold rule {rule!r} unknown (known: released, midpoint)")


def apply_thresholds(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
  """Label = the number of thresholds at or below the score (0 .. C - 1): a score moves past a
  threshold it equals, as the released code's `if logit < threshold: break` loop."""
  return np.searchsorted(np.asarray(thresholds), np.asarray(scores).reshape(-1), side="right")


# ---------------------------------------------------------------- one task

@dataclasses.dataclass
class TaskResult:
  task: str
  mapping: str
  accuracy: float
  predictions: np.ndarray
  labels: np.ndarray
  candidates: int
  thresholds: list[float] | None = None
  threshold_split_accuracy: float | None = None


def zero_shot_task(task: str, scorer: Callable, eval_records: list[dict], names: dict | None = None,
                   threshold_records: list[dict] | None = None, max_length: int = 128,
                   eval_split: str = "", threshold_split: str = "", protocol: dict | None = None) -> TaskResult:
  """Zero-shot predictions and accuracy of `task` on `eval_records`.

  `scorer(pairs [N][K]) -> float [N, K]` is log P(IsNext) (any monotone score works). Samples
  contrast fixes its thresholds on `threshold_records` (dev; the same list may be passed as
  both, and is then scored once). `protocol`: `check_protocol`'s choices (None: the released
  code's).
  """
  protocol = check_protocol(protocol)
  build = lambda records, names, split: build_pairs(task, records, names, max_length, split,
                                                   protocol["cluewsc_order"], protocol["chid"])
  pairs, labels = build(eval_records, names, eval_split)
  scores = np.asarray(scorer(pairs))
  if mapping(task) == "candidates":
    predictions = candidates_predict(scores)
    return TaskResult(task, "candidates", float(np.mean(predictions == labels)), predictions, labels,
                      candidates=len(pairs[0]))
  num_labels = len(SAMPLE_LABELS[task])
  if threshold_records is None or threshold_records is eval_records:
    dev_scores, dev_labels = scores, labels
  else:
    dev_pairs, dev_labels = build(threshold_records, None, threshold_split)
    dev_scores = np.asarray(scorer(dev_pairs))
  thresholds = fit_thresholds(dev_scores, num_labels, protocol["thresholds"])
  dev_predictions = rank_cut(dev_scores, num_labels)
  dev_accuracy = float(np.mean(dev_predictions == dev_labels))
  # On the threshold split itself the rank cut is the prediction (as the paper's dev numbers;
  # it also settles ties at a boundary); any other split goes through the fixed thresholds.
  predictions = dev_predictions if dev_scores is scores else apply_thresholds(scores, thresholds)
  return TaskResult(task, "samples", float(np.mean(predictions == labels)), predictions, labels,
                    candidates=num_labels, thresholds=[float(t) for t in thresholds],
                    threshold_split_accuracy=dev_accuracy)


def baselines(task: str, labels: np.ndarray, candidates: int) -> dict[str, float]:
  """majority: predicting the most frequent label of the evaluated split itself (the best
  constant guess, so an upper bound on it); random: the expected accuracy of a uniform guess."""
  counts = collections.Counter(labels.tolist())
  return {"majority": counts.most_common(1)[0][1] / len(labels), "random": 1.0 / candidates}


# ---------------------------------------------------------------- one task of a run

def check_task_files(task: str, data_config) -> None:
  """The files a task reads are all there (nothing is read): its eval split, its threshold
  split (samples contrast) and its label lists; a ConfigError naming the config key otherwise."""
  d = data_config
  try:
    directory = data.fewclue_dir(task, d.data_dir or None)
  except ConfigError as e:
    raise ConfigError(f"config key 'data.data_dir': {e}") from None
  splits = {"data.eval_split": d.eval_split, **({"data.threshold_split": d.threshold_split}
                                                 if mapping(task) == "samples" else {})}
  for key, split in splits.items():
    if not os.path.isfile(path := os.path.join(directory, f"{split}.json")):
      raise ConfigError(f"config key '{key}': fewclue/{task} has no {split}.json ({path!r})")
  for name in needed_files(task):
    if not os.path.isfile(path := os.path.join(directory, name)):
      raise ConfigError(f"fewclue/{task}: label file not found: {path!r}")


def evaluate_task(task: str, data_config, make_task_scorer: Callable[[str, int], Callable], protocol: dict,
                  max_length: int, model_positions: int) -> dict:
  """One task of a zero-shot run: its records, predictions, accuracy and baselines.

  Args:
    task: a FewCLUE task (`TASKS`).
    data_config: the config's `data` section (data_dir, eval_split, threshold_split, eval_limit).
    make_task_scorer: `(task, pair length) -> scorer` (e.g. `make_scorer` over one model).
    protocol: `check_protocol`'s choices.
    max_length: the config key `model.max_length` (0: the released scripts' lengths).
    model_positions: the model's position embeddings (no pair is longer).

  Returns:
    The task's row: accuracy, the majority and random baselines (`baselines`), the paper's
    BERT-base accuracy, the evaluated examples, the share of the most-predicted label (1 / C
    for a balanced predictor, 1.0 for one that always picks the same candidate: a prompt bias),
    pairs scored per second, and a paired bootstrap interval of accuracy minus the majority
    label's; for samples contrast also the thresholds and the threshold split's accuracy.
  """
  d = data_config
  limit = lambda records: records[:d.eval_limit] if d.eval_limit else records
  eval_records = limit(data.load_fewclue(task, d.eval_split, d.data_dir or None))
  threshold_records = None
  if mapping(task) == "samples":
    threshold_records = (eval_records if d.threshold_split == d.eval_split else
                         limit(data.load_fewclue(task, d.threshold_split, d.data_dir or None)))
  label_splits = tuple(dict.fromkeys([d.eval_split, "train_few_all", "dev_few_all"])) if task == "iflytek" else (
      d.eval_split,)
  names = label_texts(task, d.data_dir or None, label_splits, protocol["tnews_labels"])
  length = task_max_length(task, max_length, model_positions)
  with timing.Stopwatch() as watch:
    result = zero_shot_task(task, make_task_scorer(task, length), eval_records, names, threshold_records, length,
                            d.eval_split, d.threshold_split, protocol)
  separate = threshold_records is not None and threshold_records is not eval_records
  scored = len(eval_records) + (len(threshold_records) if separate else 0)
  majority = result.labels == np.bincount(result.labels).argmax()
  row = {"accuracy": result.accuracy, **baselines(task, result.labels, result.candidates),
         "paper_bert_base": PAPER_BERT_BASE[task] / 100, "mapping": result.mapping,
         "examples": len(eval_records), "candidates": result.candidates, "max_length": length,
         "top_prediction_share": float(np.bincount(result.predictions).max() / len(result.predictions)),
         "pairs_per_second": scored * (result.candidates if result.mapping == "candidates" else 1) / watch.seconds,
         "seconds": watch.seconds,
         "minus_majority_interval": claims.paired_bootstrap(result.predictions == result.labels, majority)}
  if result.thresholds is not None:
    row.update(threshold_split_accuracy=result.threshold_split_accuracy, thresholds=result.thresholds)
  return row


def figure(rows: dict[str, dict]):
  """Bars per task: our accuracy, the majority and random baselines, the paper's BERT-base."""
  plt = metrics.pyplot()
  tasks = list(rows)
  fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(tasks)), 3.6))
  x = np.arange(len(tasks))
  for i, (key, label) in enumerate((("accuracy", "ours"), ("majority", "majority"), ("random", "random"),
                                    ("paper_bert_base", "paper (BERT-base)"))):
    ax.bar(x + (i - 1.5) * 0.2, [rows[t][key] for t in tasks], 0.2, label=label)
  ax.set_xticks(x, tasks, rotation=25, ha="right")
  ax.set_ylim(0, 1)
  ax.set_ylabel("accuracy")
  ax.set_title("NSP-BERT zero-shot accuracy (FewCLUE)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  return fig


# ---------------------------------------------------------------- the BERT scorer

def encode_for_scoring(tokenizer, pairs: list[tuple], max_length: int) -> dict[str, np.ndarray]:
  """WordPiece arrays of a flat list of pairs (`build_pairs`' tuples): input_ids,
  token_type_ids, attention_mask int32 [P, max_length], plus position_ids where some pair has a
  blank (its `soft_position_ids`; 0 .. L - 1 for the others, 0 on padding)."""
  from lmsys.data import wordpiece  # pylint: disable=g-import-not-at-top
  enc = wordpiece.encode_pairs(tokenizer, [p[0] for p in pairs], [p[1] for p in pairs], max_length)
  blanks = [p[2] if len(p) > 2 else None for p in pairs]
  if all(b is None for b in blanks):
    return enc
  positions = np.broadcast_to(np.arange(max_length, dtype=np.int32), enc["input_ids"].shape).copy()
  soft = [i for i, b in enumerate(blanks) if b is not None]
  before = tokenizer.encode_batch([pairs[i][1][:blanks[i]] for i in soft], add_special_tokens=False)
  for i, encoding in zip(soft, before):
    real = enc["attention_mask"][i].astype(bool)
    num_first = int((real & (enc["token_type_ids"][i] == 0)).sum()) - 2        # [CLS] first [SEP]
    num_second = int((real & (enc["token_type_ids"][i] == 1)).sum()) - 1       # second [SEP]
    num_before = min(int(sum(encoding.attention_mask)), num_second)
    ids = soft_position_ids(num_first, num_before, num_second - num_before)
    positions[i, :len(ids)] = ids
    positions[i, len(ids):] = 0
  enc["position_ids"] = positions
  return enc


def make_scorer(log_prob_fn: Callable, params, tokenizer, max_length: int = 128, batch_pairs: int = 256,
                desc: str = "nsp", progress: bool | None = None) -> Callable:
  """pairs [N][K] -> log P(IsNext) float32 [N, K] from a BERT.

  `log_prob_fn(params, input_ids, token_type_ids, attention_mask[, position_ids]) -> [rows]`
  (jitted by the caller; position_ids only for pairs with a blank, `encode_for_scoring`).
  Each call scores max(1, batch_pairs // K) examples with all their K candidates; the last
  batch is padded (map_batches), so each task compiles once. The sequence length is the
  longest encoded pair of the task, rounded up to 16, at most max_length.
  """
  def scorer(pairs):
    num, k = len(pairs), len(pairs[0])
    enc = encode_for_scoring(tokenizer, [p for example in pairs for p in example], max_length)
    used = int(enc["attention_mask"].sum(1).max())
    length = min(max_length, -(-used // 16) * 16)
    arrays = {key: np.asarray(v)[:, :length].reshape(num, k, length) for key, v in enc.items()}
    per_call = max(1, batch_pairs // k)
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=num, desc=desc, unit="ex", disable=not show, dynamic_ncols=True) as bar:
      def score_batch(batch, offset):
        flat = {key: v.reshape(-1, length) for key, v in batch.items()}
        extra = {"position_ids": flat["position_ids"]} if "position_ids" in flat else {}
        out = log_prob_fn(params, flat["input_ids"], flat["token_type_ids"], flat["attention_mask"], **extra)
        bar.update(min(per_call, num - offset))
        return {"score": np.asarray(out, np.float32).reshape(-1, k)}
      return data.map_batches(score_batch, arrays, min(per_call, num))["score"]

  return scorer


def bert_log_prob_fn(model) -> Callable:
  """A jitted (params, ids, types, mask, position_ids=None) -> log P(IsNext) [rows] for a
  BertForPreTraining. Only the NSP output is returned, so XLA drops the unused MLM head."""
  import jax  # pylint: disable=g-import-not-at-top

  from lmsys.models import bert  # pylint: disable=g-import-not-at-top

  @jax.jit
  def log_prob(params, input_ids, token_type_ids, attention_mask, position_ids=None):
    _, nsp_logits = model.apply(params, input_ids, token_type_ids, attention_mask, deterministic=True,
                                position_ids=position_ids)
    return bert.is_next_log_prob(nsp_logits)
  return log_prob
