"""Note 5's zero-shot protocol (lmsys/notes/nsp_bert.py), tested without any model: scorers whose answer
is known, the pair order of every task, the rank cut and its thresholds; then the BERT scorer
(one compilation, batches of whole examples) and the whole zero-shot command on a random
Hugging Face `BertForPreTraining` saved to a temporary directory."""

import json
import os

import numpy as np
import pytest

from lmsys import data
from lmsys.data import wordpiece
from lmsys.notes import nsp_bert
from lmsys.config import ConfigError
from tests import fixture_data
from tests.helpers import run_main


def _records(task, split="dev_few_all"):
  return data.load_fewclue(task, split)


# ---------------------------------------------------------------- pairs and label texts

def test_label_texts_come_from_the_data(fixture_data_env):
  tnews = nsp_bert.label_texts("tnews", None, ("dev_few_all",))
  assert list(tnews) == [code for code, _, _ in fixture_data.TNEWS_LABELS]  # fewclue_label_names' order
  assert list(tnews.values()) == [zh for _, _, zh in fixture_data.TNEWS_LABELS]
  assert list(nsp_bert.label_texts("csldcp", None, ())) == fixture_data.CSLDCP_LABELS
  iflytek = nsp_bert.label_texts("iflytek", None, ("train_few_all", "dev_few_all"))
  assert iflytek == {str(c): f"类别{c}" for c in range(fixture_data.IFLYTEK_CLASSES)}
  assert nsp_bert.label_texts("eprstmt", None, ()) == {"Negative": "这次买的东西很差", "Positive": "这次买的东西很好"}


def test_single_sentence_tasks_put_the_prompt_first(fixture_data_env):
  records = _records("tnews")
  names = nsp_bert.label_texts("tnews", None, ())
  pairs, labels = nsp_bert.build_pairs("tnews", records, names)
  assert len(pairs) == len(records) and all(len(p) == len(names) for p in pairs)
  for example, record, label in zip(pairs, records, labels):
    assert [first for first, _ in example] == [f"这是一则{zh}新闻" for zh in names.values()]
    assert all(second == record["sentence"] for _, second in example)
    assert list(names)[label] == str(record["label"])  # the label indexes the candidates
  pairs, labels = nsp_bert.build_pairs("eprstmt", _records("eprstmt"), nsp_bert.label_texts("eprstmt", None, ()))
  assert pairs[0][0][0] == "这次买的东西很差" and pairs[0][1][0] == "这次买的东西很好"
  assert [("Negative", "Positive")[i] for i in labels] == [r["label"] for r in _records("eprstmt")]
  pairs, _ = nsp_bert.build_pairs("csldcp", _records("csldcp"), nsp_bert.label_texts("csldcp", None, ()))
  assert pairs[0][0] == (f"这是一篇{fixture_data.CSLDCP_LABELS[0]}类论文", _records("csldcp")[0]["content"])


def test_csl_chid_cluewsc_put_the_text_first_and_pairs_follow_the_paper(fixture_data_env):
  csl = _records("csl")
  pairs, labels = nsp_bert.build_pairs("csl", csl)
  assert pairs[0] == [(csl[0]["abst"], ",".join(csl[0]["keyword"]))]
  assert labels.tolist() == [int(r["label"]) for r in csl]

  chid = _records("chid")
  pairs, labels = nsp_bert.build_pairs("chid", chid)
  for example, record in zip(pairs, chid):
    assert [second for _, second in example] == record["candidates"]       # the idiom after the text
    assert all(first == record["content"].replace("#idiom#", "") for first, _ in example)
  assert labels.tolist() == [r["answer"] for r in chid]

  wsc = _records("cluewsc")
  pairs, labels = nsp_bert.build_pairs("cluewsc", wsc)
  t = wsc[0]["target"]
  assert pairs[0] == [(wsc[0]["text"] + f"上文中{t['span2_text']}是指", t["span1_text"])]
  assert labels.tolist() == [int(r["label"] == "true") for r in wsc]      # false < true

  ocnli = _records("ocnli")
  pairs, labels = nsp_bert.build_pairs("ocnli", ocnli)
  assert pairs[0] == [(ocnli[0]["sentence2"], ocnli[0]["sentence1"])]     # the paper's order
  assert [nsp_bert.SAMPLE_LABELS["ocnli"][i] for i in labels] == [r["label"] for r in ocnli]


def test_long_texts_are_cropped_so_the_blank_and_the_pattern_survive():
  content = "甲" * 300 + "#idiom#" + "乙" * 300
  pairs, _ = nsp_bert.build_pairs("chid", [{"candidates": ["一二三四"] * 7, "content": content, "answer": 0}],
                             max_length=64)
  text = pairs[0][0][0]
  assert len(text) == 64 - 3 - 4 and "甲" in text and "乙" in text         # a window around the blank
  record = {"target": {"span1_text": "舌头", "span2_text": "它", "span1_index": 0, "span2_index": 5},
            "text": "丙" * 200, "label": "true"}
  (first, second), = nsp_bert.build_pairs("cluewsc", [record], max_length=64)[0][0]
  assert first.endswith("上文中它是指") and len(first) + len(second) == 64 - 3


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
  gold = [{(r["content"].replace("#idiom#", ""), r["candidates"][r["answer"]])} for r in chid]
  assert nsp_bert.zero_shot_task("chid", _oracle_scorer(gold), chid).accuracy == 1.0


def test_rank_cut_makes_equal_groups_the_last_taking_the_rest():
  scores = np.array([5.0, 0.0, 9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0])
  # C = 3 over N = 10: groups of 3, 3 and 4 by ascending score.
  assert nsp_bert.rank_cut(scores, 3).tolist() == [1, 0, 2, 0, 2, 0, 2, 1, 2, 1]
  assert np.bincount(nsp_bert.rank_cut(scores, 3)).tolist() == [3, 3, 4]
  assert nsp_bert.rank_cut(scores, 2).tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
  thresholds = nsp_bert.fit_thresholds(scores, 3)
  assert thresholds.tolist() == [2.5, 5.5]                                   # midpoints on dev
  assert nsp_bert.apply_thresholds(scores, thresholds).tolist() == nsp_bert.rank_cut(scores, 3).tolist()
  assert nsp_bert.apply_thresholds(np.array([-1.0, 3.0, 5.5, 100.0]), thresholds).tolist() == [0, 1, 2, 2]
  with pytest.raises(ConfigError, match="cannot make 3 groups"):
    nsp_bert.fit_thresholds(np.array([1.0, 2.0]), 3)


def test_samples_contrast_fixes_thresholds_on_dev_and_applies_them(fixture_data_env):
  dev, train = _records("ocnli"), _records("ocnli", "train_few_all")
  order = nsp_bert.SAMPLE_LABELS["ocnli"]

  def scorer_for(records, offset):
    # A score that grows with the label (contradiction < neutral < entailment), no ties,
    # shifted on the second split: only fixed thresholds notice the shift.
    by_pair = {(r["sentence2"], r["sentence1"]): order.index(r["label"]) + 1e-3 * i + offset
               for i, r in enumerate(records)}
    return lambda pairs: np.array([[by_pair[example[0]]] for example in pairs], np.float64)

  same = nsp_bert.zero_shot_task("ocnli", scorer_for(dev, 0.0), dev, threshold_records=dev)
  truth = np.array([order.index(r["label"]) for r in dev])
  # A perfect ranking: the rank cut errs only where the equal group sizes differ from the
  # class counts (fixture: 6, 7, 7 of 20 against groups of 6, 6, 8: one neutral falls in the
  # top group).
  assert np.bincount(truth).tolist() == [6, 7, 7]
  assert same.accuracy == pytest.approx(19 / 20) and same.threshold_split_accuracy == same.accuracy
  assert same.predictions.tolist() == nsp_bert.rank_cut(scorer_for(dev, 0.0)(nsp_bert.build_pairs("ocnli", dev)[0])[:, 0], 3).tolist()
  # The thresholds label dev as its rank cut does.
  dev_scores = scorer_for(dev, 0.0)(nsp_bert.build_pairs("ocnli", dev)[0])[:, 0]
  assert nsp_bert.apply_thresholds(dev_scores, np.array(same.thresholds)).tolist() == same.predictions.tolist()

  def both(pairs):  # dev pairs score as dev, train pairs shifted up by 10
    dev_pairs = {(r["sentence2"], r["sentence1"]) for r in dev}
    return np.concatenate([scorer_for(dev, 0.0)([e]) if e[0] in dev_pairs else scorer_for(train, 10.0)([e])
                           for e in pairs])
  shifted = nsp_bert.zero_shot_task("ocnli", both, train, threshold_records=dev)
  # Thresholds fixed on dev (below 3) put every shifted train example in the top group.
  assert (shifted.predictions == 2).all()
  assert shifted.accuracy == pytest.approx(np.mean([r["label"] == "entailment" for r in train]))


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
  scores = nsp_bert.make_scorer(log_prob, variables, tokenizer, 64, batch_pairs=8, progress=False)(pairs)
  assert log_prob._cache_size() == 1                       # a ragged last batch is padded, not recompiled
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

  def torch_scorer(pairs):
    enc = wordpiece.encode_pairs(tokenizer, [a for e in pairs for a, _ in e], [b for e in pairs for _, b in e], 128)
    with torch.no_grad():
      out = model(input_ids=torch.tensor(enc["input_ids"], dtype=torch.long),
                  token_type_ids=torch.tensor(enc["token_type_ids"], dtype=torch.long),
                  attention_mask=torch.tensor(enc["attention_mask"], dtype=torch.long))
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
