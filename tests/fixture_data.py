"""A tiny, format-faithful copy of the real-data layout, written into a directory for tests.

`write_fixture_data(root)` writes what lmsys reads from `$LMSYS_DATA_DIR` (see the data
folder's README: FewCLUE, KgCLUE and the BERT vocabulary), in the real files' formats
(one JSON object a line, `ensure_ascii=False`, the same fields and field types) but with
a few dozen to a few hundred lines of deterministic text drawn from a fixed character set:

  fewclue/<task>/{train_few_all,dev_few_all,train_0..4,dev_0..4}.json for the nine tasks
  (the few_all files are the union of the five folds, as in FewCLUE);
  fewclue/{eprstmt,tnews,bustm,chid,cluewsc}/unlabeled.json, as in the real data (cluewsc's
  is empty; iflytek, csldcp, ocnli and csl have none);
  fewclue/tnews/label_index2en2zh.json (the 15 real label codes, with the real gaps at 105
  and 111), fewclue/csldcp/labels_all.txt; iflytek lines carry `label` (int) / `label_des`;
  kgclue/{train,dev}.json: {"id", "question", "answer": "S ||| P ||| O"};
  vocab/bert-base-chinese-vocab.txt ([PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103 as
  in the real file, then every character used) and vocab/bert-base-chinese-config.json.

The classification tasks are learnable: each class has characters of its own mixed into
common text, so a classifier on these files does better than chance. Every label is
present in every few_all split. Nothing here is copied from the real files.
"""

from __future__ import annotations

import json
import os
import random

# Common characters (general text) and a pool from which each class draws its own few.
COMMON = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同"
          "工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理"
          "起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义")
CLASS_POOL = ("山川河湖海江雨雪风云花草树木鸟鱼虫马牛羊猪狗猫鸡鸭龙虎兔蛇猴鼠金银铜铁石玉"
              "红黄蓝绿白黑紫青春夏秋冬东西南北酸甜苦辣香臭冷热晴阴早晚爸妈哥姐弟妹叔姨爷奶"
              "车船桥路灯窗门墙床桌椅碗筷杯盘刀笔纸书画歌舞琴棋诗词剑盾弓箭")
# Characters used twice in all (once in each unlabeled file that the char LM reads): below
# its min_count=3, so they map to <unk>.
RARE = "鑫淼焱垚犇骉"
PUNCT = "，。？！"

TNEWS_LABELS = [  # code, description, Chinese name: FewCLUE's 15 classes, codes with gaps
    ("100", "news_story", "故事"), ("101", "news_culture", "文化"), ("102", "news_entertainment", "娱乐"),
    ("103", "news_sports", "体育"), ("104", "news_finance", "财经"), ("106", "news_house", "房产"),
    ("107", "news_car", "汽车"), ("108", "news_edu", "教育"), ("109", "news_tech", "科技"),
    ("110", "news_military", "军事"), ("112", "news_travel", "旅游"), ("113", "news_world", "国际"),
    ("114", "news_stock", "股票"), ("115", "news_agriculture", "农业"), ("116", "news_game", "电竞")]
EPRSTMT_LABELS = ["Negative", "Positive"]
IFLYTEK_CLASSES = 12      # labels 0..11 (the real set has 119); the loader takes max + 1
CSLDCP_LABELS = ["材料科学与工程", "作物学", "口腔医学", "药学", "教育学", "地质学/地质资源与地质工程",
                 "计算机科学与技术", "数学"]

# Lines per few_all split of each classification task (a multiple of the class count and of 5).
PER_CLASS = {"eprstmt": 20, "tnews": 5, "iflytek": 5, "csldcp": 5}
NUM_CLASSES = {"eprstmt": len(EPRSTMT_LABELS), "tnews": len(TNEWS_LABELS),
               "iflytek": IFLYTEK_CLASSES, "csldcp": len(CSLDCP_LABELS)}
PAIR_TASK_LINES = 20      # bustm, ocnli, csl, cluewsc, chid: lines per few_all split
UNLABELED_LINES = {"eprstmt": 300, "tnews": 300, "bustm": 60, "chid": 20, "cluewsc": 0}
KGCLUE_LINES = {"train": 300, "dev": 40}
SPLITS = ("train_few_all", "dev_few_all")
FOLDS = 5


def lm_documents() -> int:
  """Documents of the char-LM corpus (lmsys.data.char_corpus): unlabeled `sentence`s + KgCLUE questions."""
  return UNLABELED_LINES["eprstmt"] + UNLABELED_LINES["tnews"] + KGCLUE_LINES["train"]


def few_all_lines(task: str) -> int:
  """Lines in each of train_few_all / dev_few_all of `task`."""
  return PER_CLASS[task] * NUM_CLASSES[task] if task in PER_CLASS else PAIR_TASK_LINES


def _dump(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")


class _Text:
  """Deterministic sentences from COMMON plus optional topic characters."""

  def __init__(self, seed):
    self.rng = random.Random(seed)

  def sentence(self, lo=8, hi=24, topic="", topic_share=0.35):
    n = self.rng.randint(lo, hi)
    chars = []
    for _ in range(n):
      if topic and self.rng.random() < topic_share:
        chars.append(self.rng.choice(topic))
      else:
        chars.append(self.rng.choice(COMMON))
    cut = self.rng.randint(3, max(3, n - 3))
    return "".join(chars[:cut]) + "，" + "".join(chars[cut:]) + self.rng.choice("。？！")

  def word(self, lo=2, hi=4, pool=COMMON):
    return "".join(self.rng.choice(pool) for _ in range(self.rng.randint(lo, hi)))


def _topics(num_classes, seed):
  """Disjoint groups of 4 class characters for each class."""
  pool = list(CLASS_POOL)
  random.Random(seed).shuffle(pool)
  assert 4 * num_classes <= len(pool)
  return ["".join(pool[4 * c: 4 * c + 4]) for c in range(num_classes)]


def _balanced(task, seed):
  """Per few_all split, labels 0..C-1 each PER_CLASS[task] times, in a shuffled order."""
  rng = random.Random(seed)
  out = {}
  for split in SPLITS:
    labels = [c for c in range(NUM_CLASSES[task]) for _ in range(PER_CLASS[task])]
    rng.shuffle(labels)
    out[split] = labels
  return out


def _classification_records(task, split, labels, text, topics):
  records = []
  for i, c in enumerate(labels):
    if task == "eprstmt":
      records.append({"id": i, "sentence": text.sentence(topic=topics[c]), "label": EPRSTMT_LABELS[c]})
    elif task == "tnews":
      code, desc, _ = TNEWS_LABELS[c]
      keywords = ",".join(text.word(pool=topics[c] + COMMON) for _ in range(text.rng.randint(0, 3)))
      records.append({"label": int(code), "label_desc": desc, "sentence": text.sentence(topic=topics[c]),
                      "keywords": keywords, "id": 1000 * SPLITS.index(split) + i})
    elif task == "iflytek":
      records.append({"label": c, "label_des": f"类别{c}", "sentence": text.sentence(20, 60, topic=topics[c]),
                      "id": i})
    elif task == "csldcp":
      records.append({"content": text.sentence(30, 80, topic=topics[c]), "label": CSLDCP_LABELS[c],
                      "id": 1000 * SPLITS.index(split) + i})
  return records


def _pair_records(task, split, text):
  rng = text.rng
  records = []
  for i in range(PAIR_TASK_LINES):
    if task == "bustm":
      s1 = text.sentence(5, 12)
      s2 = s1[:-1] + text.word(1, 2) if i % 2 else text.sentence(5, 12)
      records.append({"id": i, "sentence1": s1, "sentence2": s2, "label": str(i % 2)})
    elif task == "ocnli":
      labels = ("entailment", "neutral", "contradiction")
      label = labels[i % 3]
      votes = [None] * 5 if split == "train_few_all" else [labels[(i + (j == 4)) % 3] for j in range(5)]
      records.append({"level": ("easy", "medium", "hard")[rng.randrange(3)], "sentence1": text.sentence(10, 30),
                      "sentence2": text.sentence(5, 15), "label": label,
                      **{f"label{j}": votes[j] for j in range(5)},
                      "genre": ("news", "gov", "lit", "tv", "phone")[rng.randrange(5)],
                      "prem_id": f"news_{1000 + i}", "id": i})
    elif task == "csl":
      abst = text.sentence(40, 90)
      keyword = [text.word(2, 4) for _ in range(rng.randint(3, 5))]
      records.append({"id": i, "abst": abst, "keyword": keyword, "label": str(i % 2)})
    elif task == "cluewsc":
      example = _wsc_example(text)
      records.append({"target": example["target"], "idx": i, "label": ("true", "false")[i % 2],
                      "text": example["text"]})
    elif task == "chid":
      records.append(_chid_example(text, 24 + i, answer=i % 7))
  return records


def _wsc_example(text):
  """A text with a noun span and a later pronoun span at the indices the target names."""
  noun = text.word(2, 3)
  pronoun = text.rng.choice("他她它")
  head, middle, tail = text.sentence(4, 10), text.sentence(4, 10), text.sentence(3, 8)
  body = head + noun + middle + pronoun + tail
  target = {"span2_index": len(head) + len(noun) + len(middle), "span1_index": len(head),
            "span1_text": noun, "span2_text": pronoun}
  return {"target": target, "text": body}


def _chid_example(text, record_id, answer=None):
  candidates = [text.word(4, 4) for _ in range(7)]
  content = text.sentence(10, 30) + "#idiom#" + text.sentence(10, 30)
  record = {"id": record_id, "candidates": candidates, "content": content}
  if answer is not None:
    record["answer"] = answer
  return record


def _folds(records):
  """FewCLUE's train_k/dev_k: few_all is the union of five folds."""
  size = -(-len(records) // FOLDS)
  return [records[k * size:(k + 1) * size] for k in range(FOLDS)]


def write_fixture_data(root) -> dict:
  """Writes the fixture data root into `root` (created if needed); returns what it wrote:
  {"fewclue": {task: {split: lines}}, "num_classes": {task: C}, "kgclue": {split: lines},
   "vocab_size": n, "root": root}."""
  root = str(root)
  summary = {"fewclue": {}, "num_classes": dict(NUM_CLASSES), "kgclue": {}, "root": root}
  used = set()

  def put(task, split, records):
    _dump(os.path.join(root, "fewclue", task, f"{split}.json"), records)
    summary["fewclue"].setdefault(task, {})[split] = len(records)
    used.update(ch for record in records for ch in json.dumps(record, ensure_ascii=False))

  for seed, task in enumerate(("eprstmt", "tnews", "iflytek", "csldcp")):
    text = _Text(100 + seed)
    topics = _topics(NUM_CLASSES[task], seed)
    labels = _balanced(task, seed)
    for split in SPLITS:
      records = _classification_records(task, split, labels[split], text, topics)
      put(task, split, records)
      for k, fold in enumerate(_folds(records)):
        put(task, f"{split.split('_')[0]}_{k}", fold)

  for seed, task in enumerate(("bustm", "ocnli", "csl", "cluewsc", "chid")):
    text = _Text(200 + seed)
    for split in SPLITS:
      records = _pair_records(task, split, text)
      put(task, split, records)
      for k, fold in enumerate(_folds(records)):
        put(task, f"{split.split('_')[0]}_{k}", fold)

  text = _Text(300)
  for task, lines in UNLABELED_LINES.items():
    if task in ("eprstmt", "tnews"):
      records = [{"sentence": text.sentence(), "id": i} for i in range(lines)]
      for i, ch in enumerate(RARE):  # each rare character once per file: twice in all
        records[i]["sentence"] = records[i]["sentence"][:-1] + ch + records[i]["sentence"][-1]
      if task == "tnews":
        records = [{"sentence": r["sentence"], "keywords": text.word() if i % 2 else "", "id": r["id"]}
                   for i, r in enumerate(records)]
    elif task == "bustm":
      records = [{"id": i, "sentence1": text.sentence(5, 12), "sentence2": text.sentence(5, 12)}
                 for i in range(lines)]
    elif task == "chid":
      records = [_chid_example(text, 2444 + i) for i in range(lines)]
    else:
      records = []
    put(task, "unlabeled", records)

  tnews_dir = os.path.join(root, "fewclue", "tnews")
  with open(os.path.join(tnews_dir, "label_index2en2zh.json"), "w", encoding="utf-8") as f:
    f.write("\n".join(json.dumps({"label": code, "label_desc": desc, "label_zh": zh}, ensure_ascii=False)
                      for code, desc, zh in TNEWS_LABELS))  # the real file has no final newline
  used.update("".join(zh for _, _, zh in TNEWS_LABELS))
  with open(os.path.join(root, "fewclue", "csldcp", "labels_all.txt"), "w", encoding="utf-8") as f:
    f.write("".join(name + "\n" for name in CSLDCP_LABELS))

  text = _Text(400)
  for split, lines in KGCLUE_LINES.items():
    records = []
    for i in range(lines):
      subject = text.word(2, 4)
      if i % 5 == 0:
        subject += f"（{text.word(3, 6)}）"  # a sense in full-width parentheses
      predicate, obj = text.word(2, 2), text.word(2, 5)
      name = subject.split("（")[0]
      question = text.rng.choice((f"你知道{name}的{predicate}是什么吗？", f"{name}的{predicate}是什么？",
                                  f"{name}有哪些{predicate}"))
      records.append({"id": i, "question": question, "answer": f"{subject} ||| {predicate} ||| {obj}"})
    _dump(os.path.join(root, "kgclue", f"{split}.json"), records)
    summary["kgclue"][split] = len(records)
    used.update(ch for r in records for ch in r["question"] + r["answer"])

  summary["vocab_size"] = write_vocab(os.path.join(root, "vocab"), used)
  return summary


def write_vocab(directory, characters) -> int:
  """bert-base-chinese-vocab.txt with the real special-token ids, and a matching config."""
  os.makedirs(directory, exist_ok=True)
  tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"]
  ascii_tokens = [chr(c) for c in range(33, 127)]
  cjk = sorted(ch for ch in set(characters) if ord(ch) > 127 and not ch.isspace())
  tokens += ascii_tokens + cjk + ["##" + ch for ch in "0123456789"]
  with open(os.path.join(directory, "bert-base-chinese-vocab.txt"), "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in tokens))
  config = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 256,
            "max_position_embeddings": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
            "type_vocab_size": 2, "vocab_size": len(tokens)}
  with open(os.path.join(directory, "bert-base-chinese-config.json"), "w", encoding="utf-8") as f:
    json.dump(config, f, indent=2)
  return len(tokens)


if __name__ == "__main__":
  import sys
  print(json.dumps(write_fixture_data(sys.argv[1]), ensure_ascii=False, indent=1))


def write_tiny_tfds(root) -> str:
  """Prepares the TFDS dataset `tiny_lmsys` (array_record) under `root`: train 10 / test 3
  records of a 3x2 uint8 image filled with 20 * i and label i % 4. Skips the calling test
  where tensorflow_datasets (the tfds extra) is not installed."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")

  class TinyLmsys(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    # No checksum file to look up next to this module (etils' lookup wants importlib_resources).
    url_infos = None

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(3, 2), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=4)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(10), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
      for i in range(n):
        yield i, {"image": np.full((3, 2), 20 * i, np.uint8), "label": i % 4}

  TinyLmsys(data_dir=str(root), file_format="array_record").download_and_prepare()
  return str(root)
