"""lmsys.data.kgclue on small files the tests write (and on the real data when it is there)."""

import json
import os
import random

import numpy as np
import pytest

from lmsys import data
from lmsys.config import ConfigError
from lmsys.data import kgclue
from lmsys.nn import trie
from lmsys.tasks import kbqa
from tests import fixture_data
from tests.conftest import REAL_DATA_DIR

CHARS = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈"


def _write_split(root, split, records, raw_lines=()):
  path = os.path.join(root, "kgclue", f"{split}.json")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
    for line in raw_lines:
      f.write(line + "\n")
  return path


def _word(rng, lo=2, hi=4):
  return "".join(rng.choice(CHARS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture
def kg_root(tmp_path):
  """train / dev / extra splits (extra: a split a user adds) and test (questions only), + a vocab."""
  rng = random.Random(0)
  subjects = [_word(rng) for _ in range(12)]
  senses = [""] * 6 + [_word(rng, 2, 5) for _ in range(6)]
  predicates = [_word(rng, 2, 2) for _ in range(8)]
  facts = []
  for i, (s, m) in enumerate(zip(subjects, senses)):
    for p in rng.sample(predicates, 2 + i % 3):
      facts.append((s, m, p, _word(rng, 1, 5)))
  facts.append((subjects[0], "另一个意思", predicates[0], "别的"))       # same S, another sense
  facts.append(("郑多彬", "韩国女演员（2000年出生）", "生日", "3月18日"))  # nested parentheses
  facts.append(("完美（中国）有限公司", "", "法定代表人", "古润金"))        # parentheses, no sense
  facts.append(("Stay With Me", "歌曲", "歌手", "太阳"))                 # spaces, capitals

  def record(i, f):
    s, m, p, o = f
    subject = f"{s}（{m}）" if m else s
    return {"id": i, "question": f"{s}的{p}是什么？", "answer": f"{subject} ||| {p} ||| {o}"}

  records = [record(i, f) for i, f in enumerate(facts)]
  _write_split(tmp_path, "train", records[:-10])
  _write_split(tmp_path, "dev", records[-10:] + records[:2])  # two facts also in train
  _write_split(tmp_path, "extra", [record(0, ("新的主语", "", "作者", "某人"))])
  _write_split(tmp_path, "test", [{"id": 0, "question": "谁写的？"}])
  used = "".join(CHARS) + "".join(json.dumps(r, ensure_ascii=False) for r in records) + "新的主语作者某人谁写"
  fixture_data.write_vocab(os.path.join(tmp_path, "vocab"), set(used))
  return {"root": str(tmp_path), "facts": facts + [("新的主语", "", "作者", "某人")]}


# ---------------------------------------------------------------- parsing

@pytest.mark.parametrize("text,subject,sense", [
    ("牛郎织女（中国著名民间故事）", "牛郎织女", "中国著名民间故事"),
    ("龙晶", "龙晶", ""),
    ("郑多彬（韩国女演员（2000年出生））", "郑多彬", "韩国女演员（2000年出生）"),
    ("完美（中国）有限公司", "完美（中国）有限公司", ""),
    ("摩羯（北京）公司（传媒）", "摩羯（北京）公司", "传媒"),
    ("Stay With Me（太阳(Bigbang)《RISE》专辑歌曲）", "Stay With Me", "太阳(Bigbang)《RISE》专辑歌曲"),
    ("0+1=1(I Promise You)", "0+1=1(I Promise You)", ""),        # half-width: no sense
    ("坏的）", "坏的）", ""),                                       # unbalanced
    ("坏的（a（b）", "坏的（a", "b"),                               # the last balanced group
    ("（全是括号）", "（全是括号）", ""),                           # nothing before the group
    ("空的（）", "空的（）", ""),                                   # empty sense
    (" 星光 （歌曲） ", "星光", "歌曲"),
])
def test_split_subject(text, subject, sense):
  assert kgclue.split_subject(text) == (subject, sense)


def test_parse_answer():
  assert kgclue.parse_answer("龙晶（游戏） ||| 繁体 ||| 龍晶") == kgclue.Fact("龙晶", "游戏", "繁体", "龍晶")
  fact = kgclue.parse_answer("a（b（c）） ||| p ||| o")
  assert fact.full_subject == "a（b（c））" and fact.key == ("a", "p", "b（c）")
  for bad in ("a ||| b", "a ||| b ||| c ||| d", "a |||  ||| c", "abc"):
    with pytest.raises(ValueError):
      kgclue.parse_answer(bad)


def test_load_split_and_available_splits(kg_root):
  root = kg_root["root"]
  assert kgclue.available_splits(root) == ["train", "dev", "extra", "test"]
  train = kgclue.load_split("train", root)
  assert all(isinstance(e, kgclue.Example) and e.fact for e in train)
  assert train[0].id == 0 and train[0].question.endswith("？")
  test = kgclue.load_split("test", root, require_answer=False)
  assert test == [kgclue.Example(0, "谁写的？", None)]
  with pytest.raises(ConfigError, match=r"test\.json, line 1: .*no 'answer'"):
    kgclue.load_split("test", root)
  with pytest.raises(ConfigError, match=r"split file not found: .*nope\.json.*train, dev, extra, test"):
    kgclue.load_split("nope", root)


@pytest.mark.parametrize("line,why", [
    (json.dumps({"id": 9, "question": "问", "answer": "只有 ||| 两部分"}, ensure_ascii=False), "3 parts|2 parts"),
    (json.dumps({"id": 9, "question": "问", "answer": "a ||| b ||| c ||| d"}, ensure_ascii=False), "4 parts"),
    (json.dumps({"id": 9, "answer": "a ||| b ||| c"}), "question"),
    ('{"id": 9, "question": "问", "answer": ', "malformed record"),  # broken JSON (lmsys.data)
])
def test_malformed_line_names_file_and_line(tmp_path, line, why):
  good = {"id": 0, "question": "问", "answer": "a ||| b ||| c"}
  path = _write_split(tmp_path, "train", [good, good], raw_lines=["", line, json.dumps(good)])
  # Lines: 1, 2 good; 3 blank; 4 malformed.
  with pytest.raises(ConfigError, match=rf"{os.path.basename(path)}, line 4: .*({why})"):
    kgclue.load_split("train", str(tmp_path))
  with pytest.raises(ConfigError, match="line 4"):
    kgclue.build_base(str(tmp_path))


def test_missing_data_is_a_config_error(tmp_path, monkeypatch):
  monkeypatch.delenv("LMSYS_DATA_DIR", raising=False)
  with pytest.raises(ConfigError, match="kgclue"):
    kgclue.build_base(str(tmp_path))
  with pytest.raises(ConfigError, match="LMSYS_DATA_DIR"):
    kgclue.load_split("train")


def test_data_dir_from_environment(kg_root, monkeypatch):
  monkeypatch.setenv("LMSYS_DATA_DIR", kg_root["root"])
  assert kgclue.available_splits() == ["train", "dev", "extra", "test"]
  assert len(kgclue.load_tokenizer().tokens) > 100


# ---------------------------------------------------------------- the base

def test_base_holds_every_fact_of_every_split_once(kg_root):
  base = kgclue.build_base(kg_root["root"], distractors=0, sense_distractors=0)
  want = [kgclue.Fact(*f) for f in kg_root["facts"]]
  assert base.num_real == len(base) == len(want) == len(set(want))
  assert set(base.facts) == set(want)
  assert base.facts[-1] == kgclue.Fact("新的主语", "", "作者", "某人")  # the extra split, last
  assert base.splits == ("train", "dev", "extra", "test")
  only_train = kgclue.build_base(kg_root["root"], distractors=0, sense_distractors=0, splits=["train"])
  assert only_train.num_real < base.num_real


def test_lookup(kg_root):
  base = kgclue.build_base(kg_root["root"])
  for s, m, p, o in kg_root["facts"]:
    assert base.lookup(s, p, m) == o
    assert not base.is_distractor(base.index(s, p, m))
  assert base.lookup("郑多彬", "生日", "韩国女演员（2000年出生）") == "3月18日"
  assert base.lookup("郑多彬", "生日") is None and base.lookup("无", "无", "") is None
  for i, f in enumerate(base.facts):  # keys are unique: every fact is found under its own key
    assert base.index(*f.key) == i and base.lookup(*f.key) == f.object


def test_distractors_deterministic_and_never_real(kg_root):
  root = kg_root["root"]
  base = kgclue.build_base(root, distractors=3, sense_distractors=2, seed=5)
  again = kgclue.build_base(root, distractors=3, sense_distractors=2, seed=5)
  other = kgclue.build_base(root, distractors=3, sense_distractors=2, seed=6)
  assert base.facts == again.facts and base.facts != other.facts
  assert base.without_distractors().facts == base.real_facts
  real = base.real_facts
  real_keys = {f.key for f in real}
  entities = {(f.subject, f.sense) for f in real}
  real_predicates = {}
  for f in real:
    real_predicates.setdefault((f.subject, f.sense), set()).add(f.predicate)
  senses = {f.sense for f in real if f.sense}
  distractors = base.distractors
  assert len(distractors) > len(real)
  keys = [f.key for f in distractors]
  assert len(set(keys)) == len(keys) and not set(keys) & real_keys
  by_kind = {"predicate": 0, "sense": 0}
  for f in distractors:
    if (f.subject, f.sense) in entities:  # a predicate distractor: a new predicate, borrowed (P, O)
      assert f.predicate not in real_predicates[(f.subject, f.sense)]
      assert any(r.predicate == f.predicate and r.object == f.object for r in real)
      by_kind["predicate"] += 1
    else:  # a sense distractor: a real subject, another entity's sense, a real predicate of the subject
      assert f.sense in senses and any(r.subject == f.subject for r in real)
      assert any(f.predicate in ps for (s, _), ps in real_predicates.items() if s == f.subject)
      assert any(r.predicate == f.predicate and r.object == f.object for r in real)
      by_kind["sense"] += 1
  assert by_kind["predicate"] and by_kind["sense"]
  per_entity = {}
  for f in distractors:
    per_entity[f.subject] = per_entity.get(f.subject, 0) + 1
  assert max(per_entity.values()) <= 5 * (3 + 2)
  with pytest.raises(ConfigError):
    kgclue.build_base(root, distractors=-1)


# ---------------------------------------------------------------- tokens and the trie

def test_tokenizer(kg_root):
  root = kg_root["root"]
  tok = kgclue.load_tokenizer(root)
  assert tok.vocab_size == len(tok.tokens)
  assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)
  assert kgclue.load_tokenizer(path=data.vocab_path(root)).tokens == tok.tokens
  assert data.vocab_path(root) == os.path.join(root, "vocab", "bert-base-chinese-vocab.txt")
  ids = tok.encode("天地 玄黄")
  assert len(ids) == 5 and ids[2] == tok.space_id != tok.unk_id
  assert tok.decode(ids) == "天地 玄黄"
  assert tok.encode("龘") == [tok.unk_id] and tok.decode(tok.encode("天龘")) == "天[UNK]"
  assert tok.decode([tok.cls_id, *tok.encode("天"), tok.sep_id, 0, 0], skip_special=True) == "天"
  upper_only = kgclue.CharTokenizer([t for t in tok.tokens if not ("A" <= t <= "Z" and len(t) == 1)])
  assert upper_only.encode("Ab") == upper_only.encode("ab")  # lowercased when the vocab lacks capitals
  fact = kgclue.Fact("天地", "宇宙", "日月", "盈")
  spm, smp = tok.encode_target(fact, "spm"), tok.encode_target(fact, "S,M,P")
  sep = tok.sep_id
  assert spm == tok.encode("天地") + [sep] + tok.encode("日月") + [sep] + tok.encode("宇宙") + [sep]
  assert smp == tok.encode("天地") + [sep] + tok.encode("宇宙") + [sep] + tok.encode("日月") + [sep]
  assert tok.decode_target(spm + [0, 0]) == ("天地", "日月", "宇宙")
  assert tok.decode_target(smp, "smp") == ("天地", "日月", "宇宙")
  assert tok.decode_target(spm[:-1]) is None
  no_sense = tok.encode_target(kgclue.Fact("天", "", "地", "x"))
  assert no_sense[-2:] == [sep, sep] and tok.decode_target(no_sense) == ("天", "地", "")
  with pytest.raises(ConfigError, match="order"):
    tok.encode_target(fact, "pms")
  with pytest.raises(ConfigError, match="vocabulary file not found"):
    kgclue.load_tokenizer(path=os.path.join(root, "nope.txt"))


@pytest.mark.parametrize("order", ["spm", "smp"])
def test_every_fact_is_in_the_trie(kg_root, order):
  root = kg_root["root"]
  base = kgclue.build_base(root, distractors=3, sense_distractors=1)
  tok = kgclue.load_tokenizer(root)
  t = kbqa.build_base_trie(base, tok, order)
  seqs = kbqa.target_sequences(base, tok, order)
  assert int((t.value >= 0).sum()) == len(base)  # no two facts share a target here
  for i, s in enumerate(seqs):
    node = trie.walk(t, s)
    assert trie.contains(t, s) and int(t.value[node]) == i
    assert kbqa.fact_at_node(base, t, node) == base.facts[i]
    assert trie.walk(t, s + [tok.pad_id, tok.pad_id]) == node  # [PAD] after the end stays
    assert trie.walk(t, s[:-1] + [tok.sep_id, tok.sep_id]) == trie.DEAD
  assert kbqa.fact_at_node(base, t, trie.ROOT) is None and kbqa.fact_at_node(base, t, trie.DEAD) is None
  # The mask after a subject: exactly the first tokens of what may follow it.
  subject = kg_root["facts"][0][0]
  node = trie.walk(t, tok.encode(subject) + [tok.sep_id])
  mask = np.asarray(trie.next_token_mask(trie.to_device(t), np.array([node]), tok.vocab_size))[0]
  field = "predicate" if order == "spm" else "sense"
  follow = {tok.encode(getattr(f, field))[0] if getattr(f, field) else tok.sep_id
            for f in base.facts if f.subject == subject}
  assert set(np.flatnonzero(mask).tolist()) == follow


def test_real_base():
  if REAL_DATA_DIR is None or not os.path.isdir(os.path.join(REAL_DATA_DIR, "kgclue")):
    pytest.skip("no real KgCLUE data ($LMSYS_DATA_DIR/kgclue)")
  assert kgclue.available_splits(REAL_DATA_DIR)[:2] == ["train", "dev"]
  dev = kgclue.load_split("dev", REAL_DATA_DIR)
  assert len(dev) == 2000 and all(e.fact for e in dev)
  base = kgclue.build_base(REAL_DATA_DIR)
  assert base.num_real >= 20000 and len(base) > base.num_real
  tok = kgclue.load_tokenizer(REAL_DATA_DIR)
  t = kbqa.build_base_trie(base, tok)
  seqs = kbqa.target_sequences(base, tok)
  # Characters outside the vocabulary ([UNK]) merge a few targets; every target is still in the trie.
  nodes = [trie.walk(t, s) for s in seqs[:: max(1, len(seqs) // 5000)]]
  assert all(n >= 0 and t.value[n] >= 0 for n in nodes)
  assert int((t.value >= 0).sum()) >= len(base) - 100
  for e in dev[:50]:
    assert base.lookup(*e.fact.key) == e.fact.object
