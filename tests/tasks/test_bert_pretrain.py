"""Note 5's pretraining data and task (lmsys/tasks/bert_pretrain.py): the corpus leaves labels
and dev text out, pairs and masks follow BERT's recipe, batches are a pure function of
(seed, step), and the smoke pretraining run feeds the zero-shot command."""

import json

import numpy as np
import pytest

from lmsys import config as config_lib
from lmsys import data
from lmsys.data import wordpiece
from lmsys.notes import nsp_bert
from lmsys.tasks import bert_pretrain
from tests import fixture_data
from tests.conftest import REPO
from tests.helpers import run_main


@pytest.mark.parametrize("text, halves", [
    ("今天天气很好。我们去公园吧！好的", ("今天天气很好。", "我们去公园吧！好的")),   # the sentence end nearest the middle
    ("一二三四五，六七八九十", ("一二三四五，", "六七八九十")),                       # else a comma
    ("一二三四五六", ("一二三", "四五六")),                                           # else the middle
    ("好。", None),                                                                   # too short
])
def test_split_halves(text, halves):
  assert bert_pretrain.split_halves(text) == halves


def test_corpus_reads_unlabeled_and_train_text_only(fixture_data_env):
  tasks = nsp_bert.TASKS
  texts = bert_pretrain.read_texts(None, tasks, "train_few_all")
  expected = sum(fixture_data.UNLABELED_LINES.get(t, 0) * len(bert_pretrain.TEXT_FIELDS[t]) for t in tasks)
  expected += sum(fixture_data.few_all_lines(t) * len(bert_pretrain.TEXT_FIELDS[t]) for t in tasks)
  assert len(texts) == expected
  dev = {r[f] for t in tasks for r in data.load_fewclue(t, "dev_few_all") for f in bert_pretrain.TEXT_FIELDS[t]}
  assert not dev & set(texts)                                   # no dev text
  assert not any("#idiom#" in t for t in texts)
  labels = {"Positive", "Negative", "entailment", "contradiction", "neutral"}
  assert not labels & set(texts)


@pytest.fixture(scope="module")
def corpus_and_tokenizer(fixture_data_dir):
  tokenizer = wordpiece.load_tokenizer(str(fixture_data_dir / "vocab" / "bert-base-chinese-vocab.txt"))
  texts = bert_pretrain.read_texts(str(fixture_data_dir), ("eprstmt", "tnews"), "train_few_all")
  halves = [h for h in map(bert_pretrain.split_halves, texts) if h]
  corpus = bert_pretrain.tokenize_halves(tokenizer, halves)
  return corpus, tokenizer, halves


def test_pairs_follow_berts_recipe(corpus_and_tokenizer):
  corpus, tokenizer, halves = corpus_and_tokenizer
  sp = bert_pretrain.specials(tokenizer, corpus)
  assert len(corpus) == len(halves)
  assert corpus.first(3).tolist() == tokenizer.encode(halves[3][0], add_special_tokens=False).ids
  docs = np.arange(2000) % len(corpus)
  length, max_pred = 48, 7
  batch = bert_pretrain.make_pairs(corpus, docs, np.random.default_rng(0), sp, length, max_pred)
  ids, types, mask = batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]
  assert ids.shape == types.shape == mask.shape == (2000, length)
  assert 0.45 < batch["nsp_labels"].mean() < 0.55                # half random second segments
  masked = kept = 0
  for row in range(200):
    n = int(mask[row].sum())
    assert ids[row, 0] == sp.cls and ids[row, n - 1] == sp.sep and (ids[row, n:] == sp.pad).all()
    seps = np.flatnonzero(ids[row, :n] == sp.sep)
    assert len(seps) == 2 and (types[row, :seps[0] + 1] == 0).all() and (types[row, seps[0] + 1:n] == 1).all()
    a = corpus.first(docs[row])
    a_len = seps[0] - 1
    w = batch["mlm_weights"][row].astype(bool)
    positions, targets = batch["mlm_positions"][row][w], batch["mlm_ids"][row][w]
    assert 1 <= len(positions) <= max_pred
    assert not np.isin(positions, [0, seps[0], seps[1]]).any()   # never a special token
    # The targets are the original tokens: A's kept tail (truncation cuts A's start) and B.
    original = np.concatenate([a[len(a) - a_len:], [-1]])
    for p, t in zip(positions, targets):
      if p < seps[0]:
        assert t == original[p - 1]
    if batch["nsp_labels"][row] == 0:                             # IsNext: B is the doc's own second half
      b = corpus.second(docs[row])[:seps[1] - seps[0] - 1]
      unmasked = ~np.isin(np.arange(seps[0] + 1, seps[1]), positions)
      assert (ids[row, seps[0] + 1:seps[1]][unmasked] == b[unmasked]).all()
  # 80 / 10 / 10 over every picked position of the batch.
  w = batch["mlm_weights"].astype(bool)
  now = np.take_along_axis(ids, batch["mlm_positions"], 1)[w]
  target = batch["mlm_ids"][w]
  masked, kept = np.mean(now == sp.mask), np.mean(now == target)
  assert 0.77 < masked < 0.83 and 0.08 < kept < 0.13 and 0.07 < 1 - masked - kept < 0.13
  # 15% of the non-special tokens, capped.
  picked = w.sum(1)
  real = mask.sum(1) - 3
  assert (picked == np.minimum(max_pred, np.maximum(1, np.round(0.15 * real)))).all()


def test_batches_are_a_pure_function_of_seed_and_step(corpus_and_tokenizer):
  corpus, tokenizer, _ = corpus_and_tokenizer
  sp = bert_pretrain.specials(tokenizer, corpus)
  make = lambda seed: bert_pretrain.make_batch_fn(corpus, sp, 16, seed, 48, 7)
  a, b = make(0), make(0)
  for step in (5, 0, 5, 123):
    x, y = a(step), b(step)
    assert all(np.array_equal(x[k], y[k]) for k in x)
  assert not np.array_equal(a(1)["input_ids"], a(2)["input_ids"])
  assert not np.array_equal(make(1)(5)["input_ids"], a(5)["input_ids"])


_run = run_main


@pytest.mark.slow
def test_smoke_pretraining_feeds_the_zero_shot_command(fixture_data_env, tmp_path):
  pre, zero = tmp_path / "pretrain", tmp_path / "nsp"
  assert _run(["--config=configs/nsp_bert_pretrain.py:smoke", f"--workdir={pre}"]) == 0
  config = config_lib.load_config_file(str(REPO / "configs" / "nsp_bert_pretrain.py"), "smoke")
  results = json.loads((pre / "results.json").read_text())
  assert results["steps"] == config.train.num_steps
  assert results["corpus"]["documents"] == results["corpus"]["train_documents"] + results["corpus"]["heldout_documents"]
  for split in ("train", "heldout"):
    for key in ("mlm_accuracy", "nsp_accuracy"):
      assert 0 <= results[split][key] <= 1
  assert np.isfinite(results["train"]["mlm_loss"]) and np.isfinite(results["heldout"]["nsp_loss"])
  assert (pre / "vocab.txt").is_file() and (pre / "figures" / "bert_pretrain.png").is_file()
  assert json.loads((pre / "bert_config.json").read_text())["hidden_size"] == config.model.hidden_size

  assert _run(["--config=configs/nsp_bert.py:smoke", f"--workdir={zero}", f"--config.model.checkpoint={pre}"]) == 0
  out = json.loads((zero / "results.json").read_text())
  assert out["model"]["kind"] == "lmsys_bert_pretrain" and out["model"]["step"] == config.train.num_steps
  assert out["model"]["max_length"] == min(64, config.model.max_position_embeddings)
  assert sorted(out["tasks"]) == sorted(nsp_bert.TASKS)
  for task, row in out["tasks"].items():
    assert row["examples"] == min(12, fixture_data.few_all_lines(task)) and 0 <= row["accuracy"] <= 1
  assert out["average"]["tasks"] == len(nsp_bert.TASKS)
  # The checkpoint the zero-shot run read is the pretraining run's last one.
  cfg, variables, vocab, step = bert_pretrain.load_checkpoint(str(pre))
  assert step == config.train.num_steps and cfg.hidden_size == config.model.hidden_size


@pytest.mark.parametrize("name", ["nsp_bert_pretrain", "nsp_bert"])
def test_missing_data_is_one_line_before_anything_is_written(name, tmp_path, monkeypatch, capsys):
  monkeypatch.delenv("LMSYS_DATA_DIR", raising=False)
  workdir = tmp_path / name
  assert _run([f"--config=configs/{name}.py:smoke", f"--workdir={workdir}"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "LMSYS_DATA_DIR" in err and "github.com/CLUEbenchmark" in err, err
  assert not workdir.exists()
