"""Note 5's zero-shot protocol (lmsys/notes/nsp_bert.py), tested without any model: scorers whose answer
is known, the pair order of every task, the rank cut and its thresholds; then the BERT scorer
(one compilation, batches of whole examples) and the whole zero-shot command on a random
Hugging Face `BertForPreTraining` saved to a temporary directory."""

import json
import os

import numpy as np
import pytest

from lmsys import data
from lmsys.config import ConfigError
from lmsys.data import wordpiece
from lmsys.notes import nsp_bert
from tests import fixture_data, helpers
from tests.helpers import run_main


def _records(task, split="dev_few_all"):
  return data.load_fewclue(task, split)


# ---------------------------------------------------------------- pairs and label texts

def test_label_texts_come_from_the_data(fixture_data_env):
  tnews = nsp_bert.label_texts("tnews", None, ("dev_few_all",))
  assert list(tnews) == [code for code, _, _ in fixture_data.TNEWS_LABELS]  # fewclue_label_names' order
  # The released classification code's words (utils.py: 文化 … 证券 农业 电竞 民生), by code.
  assert list(tnews.values()) == ["民生", "文化", "娱乐", "体育", "财经", "房产", "汽车", "教育", "科技", "军事",
                                  "旅游", "国际", "证券", "农业", "电竞"]
  file_words = nsp_bert.label_texts("tnews", None, ("dev_few_all",), tnews_labels="file")
  assert file_words["100"] == "故事" and file_words["114"] == "股票"          # label_index2en2zh.json
  assert {k: v for k, v in file_words.items() if k not in ("100", "114")} == \
      {k: v for k, v in tnews.items() if k not in ("100", "114")}
  assert list(nsp_bert.label_texts("csldcp", None, ())) == fixture_data.CSLDCP_LABELS
  iflytek = nsp_bert.label_texts("iflytek", None, ("train_few_all", "dev_few_all"))
  assert iflytek == {str(c): f"类别{c}" for c in range(fixture_data.IFLYTEK_CLASSES)}
  assert nsp_bert.label_texts("eprstmt", None, ()) == {"Negative": "这次买的东西很差", "Positive": "这次买的东西很好"}


# One record of each task and its pairs as the released scripts build them (is_pre and the
# pattern of each: nsp_bert_classification.py, nsp_bert_sentence_pair.py,
# nsp_bert_coreference_resolution.py, nsp_bert_cloze_style.py), written out by hand.
WSC_TEXT = "刀光一闪，那舌头象一只受惊的老鼠从受刑人的嘴巴和行刑人的手之间跳出来，看那样子，它是想往天上去的。"


def test_tnews_pairs_are_the_released_prompt_then_the_headline(fixture_data_env):
  record = {"label": 114, "label_desc": "news_stock", "sentence": "沪指今日收涨", "keywords": "", "id": 1}
  pairs, labels = nsp_bert.build_pairs("tnews", [record], nsp_bert.label_texts("tnews", None, ()))
  assert pairs[0][12] == ("这是一则证券新闻", "沪指今日收涨") and labels.tolist() == [12]
  assert pairs[0][0] == ("这是一则民生新闻", "沪指今日收涨")
  assert pairs[0][3] == ("这是一则体育新闻", "沪指今日收涨")


def test_sentence_pair_tasks_put_sentence2_first_and_csl_the_abstract_first():
  bustm = [{"id": 0, "sentence1": "话说有时候我就有点难过", "sentence2": "有时候我就有点难过", "label": "1"},
           {"id": 1, "sentence1": "我想买个手机", "sentence2": "今天下雨了", "label": "0"}]
  pairs, labels = nsp_bert.build_pairs("bustm", bustm)
  assert pairs == [[("有时候我就有点难过", "话说有时候我就有点难过")], [("今天下雨了", "我想买个手机")]]
  assert labels.tolist() == [1, 0]
  # Unbalanced on purpose: a permuted label order changes the labels.
  ocnli = [{"sentence1": "村里还有一个土地庙,里面也装饰得十分气派", "sentence2": "村里只有一个土地庙", "label": "contradiction"},
           {"sentence1": "他去了北京", "sentence2": "他去过北京", "label": "entailment"},
           {"sentence1": "他去了北京", "sentence2": "他喜欢北京", "label": "entailment"},
           {"sentence1": "他去了北京", "sentence2": "他在北京住了三年", "label": "neutral"}]
  pairs, labels = nsp_bert.build_pairs("ocnli", ocnli)
  assert pairs[0] == [("村里只有一个土地庙", "村里还有一个土地庙,里面也装饰得十分气派")]
  assert labels.tolist() == [0, 2, 2, 1]                   # contradiction 0, neutral 1, entailment 2
  csl = [{"id": 0, "abst": "归责原则是环境侵权制度的核心", "keyword": ["归责原则", "环境侵权"], "label": "1"}]
  pairs, labels = nsp_bert.build_pairs("csl", csl)
  assert pairs == [[("归责原则是环境侵权制度的核心", "归责原则,环境侵权")]] and labels.tolist() == [1]


def test_cluewsc_puts_the_span_first_then_the_text_with_the_pattern():
  record = {"target": {"span2_index": 40, "span1_index": 6, "span1_text": "舌头", "span2_text": "它"},
            "idx": 0, "label": "true", "text": WSC_TEXT}
  pairs, labels = nsp_bert.build_pairs("cluewsc", [record, {**record, "label": "false"}])
  assert pairs[0] == [("舌头", WSC_TEXT + "上文中它是指")] and labels.tolist() == [1, 0]
  pairs, _ = nsp_bert.build_pairs("cluewsc", [record], cluewsc_order="text_first")
  assert pairs[0] == [(WSC_TEXT + "上文中它是指", "舌头")]


def test_chid_puts_the_candidate_first_at_the_blank():
  record = {"id": 1500, "candidates": ["画蛇添足", "脸红耳赤", "雪中送炭", "喜上眉梢", "坚如盘石", "草木皆兵", "小巧玲珑"],
            "content": "有时候我给你#idiom#,但你却愿我家破人亡?", "answer": 2}
  pairs, labels = nsp_bert.build_pairs("chid", [record])
  assert pairs[0][2] == ("雪中送炭", "有时候我给你,但你却愿我家破人亡?", 6) and labels.tolist() == [2]
  assert [p[0] for p in pairs[0]] == record["candidates"]
  pairs, _ = nsp_bert.build_pairs("chid", [record], chid="text_first")
  assert pairs[0][2] == ("有时候我给你,但你却愿我家破人亡?", "雪中送炭")


def test_soft_position_ids_follow_the_released_cloze_code():
  # [CLS] c1..c4 [SEP] b1 b2 b3 a1 [SEP], read as [CLS] [SEP] b1 b2 b3 c1..c4 a1 [SEP].
  assert nsp_bert.soft_position_ids(4, 3, 1) == [0, 5, 6, 7, 8, 1, 2, 3, 4, 9, 10]
  assert nsp_bert.soft_position_ids(4, 0, 2) == [0, 2, 3, 4, 5, 1, 6, 7, 8]
  # Nothing after the blank: the code gives the last [SEP] the id after the text's last token,
  # which is the candidate's first id.
  assert nsp_bert.soft_position_ids(4, 3, 0) == [0, 5, 6, 7, 8, 1, 2, 3, 4, 5]


def test_chid_pairs_are_encoded_with_their_soft_positions(fixture_data_env):
  tokenizer = wordpiece.load_tokenizer(os.path.join(fixture_data_env, "vocab", "bert-base-chinese-vocab.txt"))
  enc = nsp_bert.encode_for_scoring(tokenizer, [("雪中送炭", "我给你吧", 3), ("我给你吧", "雪中送炭")], 16)
  assert enc["position_ids"][0].tolist() == [0, 5, 6, 7, 8, 1, 2, 3, 4, 9, 10, 0, 0, 0, 0, 0]
  assert enc["position_ids"][1].tolist() == list(range(16))            # a plain pair: 0 .. L - 1
  assert enc["token_type_ids"][0].tolist() == [0] * 6 + [1] * 5 + [0] * 5
  assert "position_ids" not in nsp_bert.encode_for_scoring(tokenizer, [("我给你吧", "雪中送炭")], 16)


def test_long_texts_are_cropped_so_the_blank_and_the_pattern_survive():
  content = "甲" * 300 + "#idiom#" + "乙" * 300
  pairs, _ = nsp_bert.build_pairs("chid", [{"candidates": ["一二三四"] * 7, "content": content, "answer": 0}],
                                  max_length=64)
  first, text, blank = pairs[0][0]
  assert first == "一二三四" and len(text) == 64 - 3 - 4 and text[:blank] == "甲" * blank
  assert set(text[blank:]) == {"乙"} and abs(blank - len(text) // 2) <= 1    # a window around the blank
  record = {"target": {"span1_text": "舌头", "span2_text": "它", "span1_index": 0, "span2_index": 5},
            "text": "丙" * 200, "label": "true"}
  (first, second), = nsp_bert.build_pairs("cluewsc", [record], max_length=64)[0][0]
  assert first == "舌头" and second.endswith("上文中它是指") and len(first) + len(second) == 64 - 3


def test_max_length_is_the_released_scripts_unless_set():
  assert nsp_bert.task_max_length("tnews", 0, 512) == 256 and nsp_bert.task_max_length("bustm", 0, 512) == 256
  assert nsp_bert.task_max_length("chid", 0, 512) == 128 and nsp_bert.task_max_length("cluewsc", 0, 512) == 128
  assert nsp_bert.task_max_length("tnews", 128, 512) == 128 and nsp_bert.task_max_length("tnews", 0, 64) == 64


def test_protocol_choices_default_to_the_released_code():
  assert nsp_bert.check_protocol(None) == {"tnews_labels": "released", "cluewsc_order": "span_first",
                                           "chid": "soft_positions", "thresholds": "released"}
  assert nsp_bert.check_protocol({"thresholds": "midpoint"})["thresholds"] == "midpoint"
  with pytest.raises(ConfigError, match="config key 'protocol.chid'"):
    nsp_bert.check_protocol({"chid": "idiom_last"})
  with pytest.raises(ConfigError, match="config key 'protocol.order'"):
    nsp_bert.check_protocol({"order": "x"})


def test_a_label_outside_the_label_list_names_the_record(fixture_data_env):
  records = _records("tnews")[:3]
  records[2] = {**records[2], "label": 999}
  with pytest.raises(ConfigError, match=r"tnews/dev\.json, record 3: label '999'"):
    nsp_bert.build_pairs("tnews", records, nsp_bert.label_texts("tnews", None, ()), split="dev")


# ---------------------------------------------------------------- mappings

def _oracle_scorer(gold_second_texts, wrong=False):
  """log P(IsNext) = 0 for the pair that holds the gold text, -1 elsewhere (or the reverse)."""
  def scorer(pairs):
    return np.array([[(0.0 if (p in gold_second_texts[i]) != wrong else -1.0) for p in example]
                     for i, example in enumerate(pairs)])
  return scorer


def test_candidates_contrast_follows_the_scorer(fixture_data_env):
  records = _records("tnews")
  names = nsp_bert.label_texts("tnews", None, ())
  gold = [{(f"这是一则{names[str(r['label'])]}新闻", r["sentence"])} for r in records]
  right = nsp_bert.zero_shot_task("tnews", _oracle_scorer(gold), records, names)
  assert right.accuracy == 1.0 and right.mapping == "candidates" and right.candidates == len(names)
  wrong = nsp_bert.zero_shot_task("tnews", _oracle_scorer(gold, wrong=True), records, names)
  assert wrong.accuracy == 0.0
  chid = _records("chid")
  gold = [{(r["candidates"][r["answer"]], r["content"].replace("#idiom#", ""), r["content"].index("#idiom#"))}
          for r in chid]
  assert nsp_bert.zero_shot_task("chid", _oracle_scorer(gold), chid).accuracy == 1.0


def test_rank_cut_makes_equal_groups_the_last_taking_the_rest():
  scores = np.array([5.0, 0.0, 9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0])
  # C = 3 over N = 10: groups of 3, 3 and 4 by ascending score.
  assert nsp_bert.rank_cut(scores, 3).tolist() == [1, 0, 2, 0, 2, 0, 2, 1, 2, 1]
  assert np.bincount(nsp_bert.rank_cut(scores, 3)).tolist() == [3, 3, 4]
  assert nsp_bert.rank_cut(scores, 2).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
  with pytest.raises(ConfigError, match="cannot make 3 groups"):
    nsp_bert.fit_thresholds(np.array([1.0, 2.0]), 3)


def test_thresholds_as_released_are_each_groups_top_score_and_equal_moves_up():
  scores = np.array([5.0, 0.0, 9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0])
  released = nsp_bert.fit_thresholds(scores, 3)              # groups {0, 1, 2}, {3, 4, 5}, {6 .. 9}
  assert released.tolist() == [2.0, 5.0]
  # The released loop: label 0; while label < C - 1 and not score < thresholds[label]: label += 1.
  assert nsp_bert.apply_thresholds(np.array([-1.0, 1.9, 2.0, 3.0, 5.0, 5.5, 100.0]), released).tolist() == \
      [0, 0, 1, 1, 2, 2, 2]
  midpoint = nsp_bert.fit_thresholds(scores, 3, "midpoint")
  assert midpoint.tolist() == [2.5, 5.5]
  assert nsp_bert.apply_thresholds(np.array([-1.0, 2.0, 3.0, 5.5, 100.0]), midpoint).tolist() == [0, 0, 1, 2, 2]
  assert nsp_bert.apply_thresholds(scores, midpoint).tolist() == nsp_bert.rank_cut(scores, 3).tolist()


def test_baselines():
  labels = np.array([0, 0, 0, 1])
  assert nsp_bert.baselines("eprstmt", labels, 2) == {"majority": 0.75, "random": 0.5}


# ---------------------------------------------------------------- the batched scorer

def test_scorer_batches_whole_examples_with_one_shape(fixture_data_env):
  tokenizer = wordpiece.load_tokenizer(os.path.join(fixture_data_env, "vocab", "bert-base-chinese-vocab.txt"))
  records = _records("tnews")[:23]
  names = nsp_bert.label_texts("tnews", None, ())
  pairs, _ = nsp_bert.build_pairs("tnews", records, names)
  shapes = []

  def token_count(params, ids, types, mask):  # a fake model: the pair's length in tokens
    shapes.append(ids.shape)
    return mask.sum(-1).astype(np.float32) + params

  scores = nsp_bert.make_scorer(token_count, 0.5, tokenizer, max_length=64, batch_pairs=100, progress=False)(pairs)
  enc = wordpiece.encode_pairs(tokenizer, [a for e in pairs for a, _ in e], [b for e in pairs for _, b in e], 64)
  assert scores.shape == (23, 15)
  np.testing.assert_array_equal(scores, enc["attention_mask"].sum(1).reshape(23, 15) + 0.5)
  per_call = 100 // 15                                     # whole examples: 6 examples, 90 pairs a call
  assert len(shapes) == -(-23 // per_call) and len(set(shapes)) == 1
  assert shapes[0][0] == per_call * 15 and shapes[0][1] % 16 == 0 and shapes[0][1] <= 64


def test_bert_scorer_compiles_once_per_task(fixture_data_env):
  import jax

  from lmsys.models import bert
  vocab = os.path.join(fixture_data_env, "vocab", "bert-base-chinese-vocab.txt")
  tokenizer = wordpiece.load_tokenizer(vocab)
  cfg = bert.BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
  variables = bert.init_params(cfg, jax.random.key(0))
  log_prob = nsp_bert.bert_log_prob_fn(bert.BertForPreTraining(cfg))
  pairs, _ = nsp_bert.build_pairs("eprstmt", _records("eprstmt")[:13], nsp_bert.label_texts("eprstmt", None, ()))
  with helpers.xla_compilations() as names:
    scores = nsp_bert.make_scorer(log_prob, variables, tokenizer, 64, batch_pairs=8, progress=False)(pairs)
  assert names.count("log_prob") == 1                      # a ragged last batch is padded, not recompiled
  assert scores.shape == (13, 2) and np.all(scores <= 0) and np.all(np.isfinite(scores))
  # The same pairs one at a time give the same log P(IsNext).
  enc = wordpiece.encode_pairs(tokenizer, [pairs[12][1][0]], [pairs[12][1][1]], 64)
  one = log_prob(variables, enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
  np.testing.assert_allclose(scores[12, 1], np.asarray(one)[0], atol=1e-5)


# ---------------------------------------------------------------- the zero-shot command

_run = run_main


@pytest.fixture(scope="module")
def hf_bert_dir(tmp_path_factory, fixture_data_dir):
  """A random transformers BertForPreTraining (2 layers, hidden 32) with the fixture vocab."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  directory = tmp_path_factory.mktemp("hf_bert")
  vocab = fixture_data_dir / "vocab" / "bert-base-chinese-vocab.txt"
  size = sum(1 for line in vocab.read_text(encoding="utf-8").splitlines() if line)
  torch.manual_seed(0)
  config = transformers.BertConfig(vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=128)
  model = transformers.BertForPreTraining(config).eval()
  model.save_pretrained(directory)
  (directory / "vocab.txt").write_text(vocab.read_text(encoding="utf-8"), encoding="utf-8")
  return directory, model


@pytest.mark.slow
def test_zero_shot_command_on_a_hugging_face_checkpoint(hf_bert_dir, fixture_data_env, tmp_path):
  """The whole command with --config.model.checkpoint=<HF directory>; its accuracies equal the
  protocol run on torch's own NSP logits for the same pairs."""
  import torch
  directory, model = hf_bert_dir
  workdir = tmp_path / "nsp"
  assert _run(["--config=configs/nsp_bert.py:smoke", f"--workdir={workdir}", f"--config.model.checkpoint={directory}",
               "--config.data.eval_limit=0", "--config.model.max_length=128"]) == 0
  results = json.loads((workdir / "results.json").read_text())
  assert results["model"]["kind"] == "hugging_face" and results["model"]["max_length"] == 128
  assert sorted(results["tasks"]) == sorted(nsp_bert.TASKS)
  assert (workdir / "figures" / "nsp_bert.png").is_file()
  tokenizer = wordpiece.load_tokenizer(str(directory / "vocab.txt"))

  def torch_scorer(pairs):  # ChID's soft positions go to transformers' position_ids
    enc = nsp_bert.encode_for_scoring(tokenizer, [p for e in pairs for p in e], 128)
    with torch.no_grad():
      out = model(**{key: torch.tensor(value, dtype=torch.long) for key, value in enc.items()})
    return torch.log_softmax(out.seq_relationship_logits, -1)[:, 0].numpy().reshape(len(pairs), -1)

  for task in nsp_bert.TASKS:
    row = results["tasks"][task]
    records = data.load_fewclue(task, "dev_few_all")
    names = nsp_bert.label_texts(task, None, ("train_few_all", "dev_few_all"))
    want = nsp_bert.zero_shot_task(task, torch_scorer, records, names, records if task in nsp_bert.SAMPLE_TASKS else None)
    if task in nsp_bert.CANDIDATE_TASKS:
      assert row["accuracy"] == pytest.approx(want.accuracy, abs=1.5 / len(records)), task  # a near-tie at most
    else:  # ranks of near-equal random-model scores may swap a neighbour
      assert abs(row["accuracy"] - want.accuracy) <= 2.5 / len(records), task
    assert row["examples"] == len(records)
    assert row["random"] == pytest.approx(1 / row["candidates"])
    assert row["top_prediction_share"] == pytest.approx(np.bincount(want.predictions).max() / len(records),
                                                        abs=2.5 / len(records))
    assert 0 < row["majority"] <= 1 and row["paper_bert_base"] == nsp_bert.PAPER_BERT_BASE[task] / 100


def test_missing_eval_split_is_one_error_before_anything_is_written(fixture_data_env, tmp_path, capsys):
  workdir = tmp_path / "nsp"
  assert _run(["--config=configs/nsp_bert.py:smoke", f"--workdir={workdir}",
               "--config.data.eval_split=test_public"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "data.eval_split" in err and "test_public.json" in err, err
  assert not workdir.exists()


def test_bad_checkpoint_is_one_error(fixture_data_env, tmp_path, capsys):
  workdir = tmp_path / "nsp"
  assert _run(["--config=configs/nsp_bert.py:smoke", f"--workdir={workdir}",
               f"--config.model.checkpoint={tmp_path}"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "model.checkpoint" in err, err
  assert not workdir.exists()
