"""Records transformers' outputs for a tiny random BERT, and compares lmsys's BERT with it live.

  pip install -e ".[hf]" -c constraints.txt            # torch + transformers
  python scripts/record_bert_reference.py              # rewrite tests/testdata/bert_tiny/, then compare
  python scripts/record_bert_reference.py --check      # compare only: the recorded files against
                                                       # transformers now, and lmsys against both

tests/models/test_bert_recorded.py checks lmsys's BERT and WordPiece against the recorded
outputs, so the default test suite needs neither torch nor transformers. What is recorded in
tests/testdata/bert_tiny/:
- `config.json`, `model.safetensors`: transformers' `BertForPreTraining.save_pretrained` of a
  random BERT (hidden 32, 2 layers, 4 heads). Every parameter is drawn at scale 0.2 (LayerNorm
  scales around 1), not BERT's init (std 0.02, zero biases, unit LayerNorms), so that a swapped
  bias, a missing tanh or a wrong LayerNorm moves the logits far beyond the tests' tolerance.
- `vocab.txt`: BERT-base-Chinese's special-token ids, ASCII, the sentences' characters.
- `reference.npz`: transformers' BertTokenizer (`tokenizers`-backed) ids for the sentence pairs
  at max_length 24 (longest-first truncation, padded) and at 64 (untruncated), the pure-Python
  BertTokenizerLegacy's ids at 64 (an implementation independent of `tokenizers`), and the
  model's MLM logits, NSP logits and log P(IsNext) for the max_length-24 batch.
- `reference.json`: the sentence pairs, the lengths, and the versions that produced the files.

Exit code 1 (and one line naming the largest difference) when lmsys and transformers disagree
beyond 1e-4, or, with --check, when transformers no longer gives the recorded outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "testdata", "bert_tiny")
SENTENCE_PAIRS = [("这次买的东西很好", "物流很快，包装完好，客服态度也不错。"), ("这是一则体育新闻", "比赛"),
                  ("今天天气好", "我们去公园散步吧"), ("ABC是什么", "")]
SHORT, LONG = 24, 64      # max_length: with truncation (the model's batch), without
ATOL = 1e-4
HF_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=32)


def write_vocab(path: str) -> int:
  """A vocabulary with BERT-base-Chinese's special-token ids; returns its size."""
  tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokens += [chr(c) for c in range(33, 127)]
  tokens += sorted({ch for a, b in SENTENCE_PAIRS for ch in a + b if ord(ch) > 127})
  tokens += ["##" + ch for ch in "0123456789"]
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in tokens))
  return len(tokens)


def tokenize(directory: str) -> dict[str, np.ndarray]:
  """transformers' tokenizers on SENTENCE_PAIRS: {'<kind>_<max_length>_<field>': int32 [B, L]}."""
  from transformers.models import bert as hf  # pylint: disable=g-import-not-at-top
  vocab = os.path.join(directory, "vocab.txt")
  firsts, seconds = [a for a, _ in SENTENCE_PAIRS], [b for _, b in SENTENCE_PAIRS]
  out = {}
  for kind, cls, max_length in (("fast", hf.BertTokenizer, SHORT), ("fast", hf.BertTokenizer, LONG),
                                ("slow", hf.BertTokenizerLegacy, LONG)):
    encoded = cls(vocab, do_lower_case=True)(
        firsts, seconds, max_length=max_length, truncation="longest_first", padding="max_length",
        return_token_type_ids=True, return_attention_mask=True)
    for field in ("input_ids", "token_type_ids", "attention_mask"):
      out[f"{kind}_{max_length}_{field}"] = np.asarray(encoded[field], np.int32)
  return out


def model_batch(arrays) -> dict[str, np.ndarray]:
  """The model's input: the fast tokenizer's ids at max_length SHORT."""
  return {f: arrays[f"fast_{SHORT}_{f}"] for f in ("input_ids", "token_type_ids", "attention_mask")}


def transformers_outputs(directory: str, batch) -> dict[str, np.ndarray]:
  """transformers' BertForPreTraining loaded from the local `directory`, on `batch`: float32 logits and log P(IsNext)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  model = transformers.BertForPreTraining.from_pretrained(directory).eval()  # network-ok: a local directory the script just wrote; nothing is fetched
  with torch.no_grad():
    out = model(**{k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()})
  nsp = out.seq_relationship_logits
  return {"mlm_logits": out.prediction_logits.numpy(), "nsp_logits": nsp.numpy(),
          "is_next_log_prob": torch.log_softmax(nsp, -1)[:, 0].numpy()}


def lmsys_outputs(directory: str, batch) -> dict[str, np.ndarray]:
  """lmsys's BERT, loaded from the same directory, on `batch`."""
  from lmsys.models import bert, hf_bert  # pylint: disable=g-import-not-at-top
  config, params = hf_bert.load_hf_bert(directory)
  mlm, nsp = bert.BertForPreTraining(config).apply(
      params, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
  return {"mlm_logits": np.asarray(mlm), "nsp_logits": np.asarray(nsp),
          "is_next_log_prob": np.asarray(bert.is_next_log_prob(nsp))}


def lmsys_token_ids(directory: str) -> dict[str, np.ndarray]:
  """lmsys's WordPiece on SENTENCE_PAIRS at both lengths, keyed like `tokenize`'s (kind 'lmsys')."""
  from lmsys.data import wordpiece  # pylint: disable=g-import-not-at-top
  tokenizer = wordpiece.load_tokenizer(os.path.join(directory, "vocab.txt"))
  out = {}
  for max_length in (SHORT, LONG):
    encoded = wordpiece.encode_pairs(tokenizer, [a for a, _ in SENTENCE_PAIRS],
                                     [b for _, b in SENTENCE_PAIRS], max_length)
    for field, value in encoded.items():
      out[f"lmsys_{max_length}_{field}"] = value
  return out


def differences(ours, reference, names) -> dict[str, float]:
  """{name: max |ours - reference|} (inf where the shapes differ)."""
  return {n: (float(np.abs(ours[n] - reference[n]).max()) if ours[n].shape == reference[n].shape
              else float("inf")) for n in names}


def record(directory: str) -> None:
  """Writes a fresh random model, its vocabulary, tokenizer ids and outputs to `directory`."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  vocab_size = write_vocab(os.path.join(directory, "vocab.txt"))
  torch.manual_seed(0)
  model = transformers.BertForPreTraining(transformers.BertConfig(vocab_size=vocab_size, **HF_CONFIG))
  with torch.no_grad():
    for name, p in model.named_parameters():
      p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "LayerNorm.weight" in name else 0.0))
  model.save_pretrained(directory)
  arrays = tokenize(directory)
  arrays.update(transformers_outputs(directory, model_batch(arrays)))
  np.savez_compressed(os.path.join(directory, "reference.npz"), **arrays)
  meta = {"sentence_pairs": SENTENCE_PAIRS, "max_lengths": [SHORT, LONG], "model": HF_CONFIG,
          "vocab_size": vocab_size, "torch": torch.__version__,
          "transformers": transformers.__version__, "written_by": "scripts/record_bert_reference.py"}
  with open(os.path.join(directory, "reference.json"), "w", encoding="utf-8") as f:
    json.dump(meta, f, ensure_ascii=False, indent=1)
    f.write("\n")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--check", action="store_true",
                      help="compare only; write nothing (default: rewrite the recorded files first)")
  parser.add_argument("--out", default=OUT_DIR, help="the recorded files' folder (default %(default)s)")
  args = parser.parse_args(argv)
  if not args.check:
    with tempfile.TemporaryDirectory() as tmp:  # written whole, then moved in: no half-written folder
      record(tmp)
      os.makedirs(args.out, exist_ok=True)
      for name in os.listdir(tmp):
        os.chmod(os.path.join(tmp, name), 0o644)
        os.replace(os.path.join(tmp, name), os.path.join(args.out, name))
    print(f"wrote {args.out}: " + ", ".join(
        f"{n} {os.path.getsize(os.path.join(args.out, n)):,} bytes" for n in sorted(os.listdir(args.out))))

  recorded = dict(np.load(os.path.join(args.out, "reference.npz")))
  batch = model_batch(recorded)
  outputs = ("mlm_logits", "nsp_logits", "is_next_log_prob")
  live = {**tokenize(args.out), **transformers_outputs(args.out, batch)}
  ours = lmsys_outputs(args.out, batch)
  ids = lmsys_token_ids(args.out)
  checks = {}
  # lmsys against transformers now (the live comparison), and transformers now against the record.
  checks.update({f"lmsys vs transformers: {k}": v for k, v in differences(ours, live, outputs).items()})
  checks.update({f"transformers vs recorded: {k}": v
                 for k, v in differences(live, recorded, sorted(recorded)).items()})
  for kind, max_length in (("fast", SHORT), ("fast", LONG), ("slow", LONG)):
    for field in ("input_ids", "token_type_ids", "attention_mask"):
      ref = {"x": live[f"{kind}_{max_length}_{field}"]}
      checks[f"lmsys vs {kind} tokenizer: {field} at {max_length}"] = differences(
          {"x": ids[f"lmsys_{max_length}_{field}"]}, ref, ["x"])["x"]
  for name, diff in checks.items():
    print(f"{'ok  ' if diff <= ATOL else 'FAIL'} {name}: max |diff| {diff:.2e}")
  worst = max(checks, key=checks.get)
  if checks[worst] > ATOL:
    print(f"error: {worst} differs by {checks[worst]:.3g} (> {ATOL})", file=sys.stderr)
    return 1
  print(f"all {len(checks)} comparisons within {ATOL}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
