"""Every config: a docstring with its command, `get_config(arg)`, a `smoke` variant that
validates, and (unless another test file already runs it) a smoke run end to end whose
results are checked for content: keys and counts that the smoke config fixes, finite
values, and orderings that must hold.

The runs read FewCLUE / KgCLUE from the fixture data (tests/fixture_data.py), so they pass
with and without the real data.
"""

import json
import math

import jax
import ml_collections
import pytest

from experiments import run as run_lib
from experiments import sweep as sweep_main
from lmsys import claims as claims_lib
from lmsys import config as config_lib
from lmsys.launch import sweep
from tests import fixture_data
from tests.conftest import REPO
from tests.helpers import run_main

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if not p.stem.startswith("_"))
# Smoke-run end to end by their own test files.
RUN_ELSEWHERE = {"mlp", "logreg", "vae",
                 "nsp_bert_pretrain", "nsp_bert"}  # tests/tasks/test_bert_pretrain.py runs both smokes, chained


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_documented_and_validates(name, fixture_data_env):
  path = REPO / "configs" / f"{name}.py"
  source = path.read_text()
  assert source.lstrip().startswith('"""'), f"{name}: no docstring"
  assert f"configs/{name}.py" in source and "python -m experiments.run" in source
  for arg in (None, "smoke"):
    config = config_lib.load_config_file(str(path), arg)
    assert isinstance(config, ml_collections.ConfigDict)
    module = run_lib.load_experiment(config)
    if arg == "smoke":
      module.validate(config)


# Configs with a get_sweep(arg): experiments/sweep.py runs their trials.
SWEPT = sorted(p.stem for p in (REPO / "configs").glob("*.py") if "def get_sweep(" in p.read_text())


def test_configs_whose_notes_call_for_a_scan_define_a_sweep():
  assert {"attention_approx", "logreg", "mlp", "vae"} <= set(SWEPT)


@pytest.mark.parametrize("name", SWEPT)
def test_config_sweep_validates(name, fixture_data_env, monkeypatch):
  """Every trial's keys and types against the config; for :smoke also every trial through the
  runner's own command-line parsing and the experiment's validate() (the default variant's
  data may be absent here)."""
  monkeypatch.chdir(REPO)
  path = f"configs/{name}.py"
  names = sweep.validate(config_lib.load_config_file(path), sweep.load_sweep(path), source=path)
  assert len(names) >= 2
  trials = sweep_main.plan(f"{path}:smoke", "/tmp/unused-sweep-dir", [])
  assert len(trials) >= 2 and len({t["name"] for t in trials}) == len(trials)


# Smoke configs that read FewCLUE / KgCLUE (squareplus through the char LM of attention_lm).
NEEDS_TEXT_DATA = ["attention_approx_lm", "attention_approx", "kgclue", "squareplus"]


@pytest.mark.parametrize("name", NEEDS_TEXT_DATA)
def test_missing_data_is_one_line_before_anything_is_written(name, tmp_path, monkeypatch, capsys):
  """A newcomer without the real data: exit 2 and one line saying what is missing and where to
  get it, before any compute and before the workdir exists."""
  monkeypatch.delenv("LMSYS_DATA_DIR", raising=False)
  workdir = tmp_path / name
  code = run_main([f"--config=configs/{name}.py:smoke", f"--workdir={workdir}"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1, err
  assert "LMSYS_DATA_DIR" in err and "github.com/CLUEbenchmark" in err, err
  assert not workdir.exists()


# ---------------------------------------------------------------- content checks

def _finite(x):
  return x is not None and math.isfinite(x)


def _check_attention_cost(results, c):
  h, d, r = c.num_heads, c.head_dim, c.ffn_ratio
  assert results["shape"] == {"heads": h, "head_dim": d, "ffn_ratio": r}
  checks = results["xla_check"]
  assert [(row["n"], row["kind"]) for row in checks] == [(n, k) for n in c.xla_check_lengths
                                                         for k in ("softmax", "linear")]
  for row in checks:
    assert row["xla_flops"] > 0 and row["counted_flops"] > 0
  if jax.default_backend() == "cpu":
    # XLA's CPU cost analysis counts what the counter counts (other backends fuse and count
    # otherwise: this holds on CPU only, as tests/conftest.py's cpu_only marker says).
    assert results["xla_check_max_deviation"] < 0.05, checks
    for row in checks:  # the note counts the matmuls' multiplications only: < all flops / 2
      assert 0.5 < row["note_ratio"] < 1.0, row

  rows = results["timings"]
  assert [row["n"] for row in rows] == list(c.lengths)  # one timing row per length
  width = h * d
  for row in rows:
    n = row["n"]
    for part in ("attention", "ffn", "layer", "softmax_core", "linear_core_4d"):
      assert _finite(row[f"{part}_seconds"]) and row[f"{part}_seconds"] > 0, (n, part)
      assert 1 <= row[f"{part}_runs"] <= c.max_repeats + 1
    assert h % row["softmax_heads_per_group"] == 0
    # The note's multiplication counts: QK^T and AV take 2 h n^2 d; the Q, K, V, O
    # projections 4 n width^2; the FFN 2 r n width^2.
    assert row["mult_attention_core"] == 2 * h * n * n * d
    assert row["mult_attention"] == 4 * n * width ** 2 + 2 * h * n * n * d
    assert row["mult_ffn"] == 2 * r * n * width ** 2
    assert row["flops_layer"] > 2 * (row["mult_attention"] + row["mult_ffn"])  # plus elementwise work
    assert row["layer_gflops_per_second"] == pytest.approx(row["flops_layer"] / row["layer_seconds"] / 1e9)
  flops_layer = [row["flops_layer"] for row in rows]
  assert flops_layer == sorted(flops_layer)

  crossovers = results["crossovers"]
  note = {"attention_over_ffn": 2 * h * d, "quadratic_over_rest": 6 * h * d, "linear_pays": 16 * d}
  assert set(note) <= set(crossovers)  # other keys may be added
  lo, hi = min(c.lengths), max(c.lengths)
  for name, expected in note.items():
    entry = crossovers[name]
    assert entry["note"] == expected
    for key in ("flop_counter", "measured"):
      assert entry[key] is None or lo <= entry[key] <= hi, (name, key, entry[key])
  # 2hd = 64 lies inside the smoke lengths: the counter finds that crossover, a bit later
  # than the note's (elementwise work in the attention sub-layer is not in the note's count).
  if lo < note["attention_over_ffn"] < hi:
    assert note["attention_over_ffn"] <= crossovers["attention_over_ffn"]["flop_counter"] <= 2 * note["attention_over_ffn"]


def _check_error_rows(rows, c, head_dim):
  expected = ([f"{kind} P={p}" for p in c.orders for kind in ("taylor", "limit")]
              + [f"{family} m={m}" for family in ("favor_iid", "favor_orthogonal") for m in c.favor_dims]
              + ["linear elu+1 (not an exp estimate)"])
  assert [row["method"] for row in rows] == expected
  for row in rows:
    assert _finite(row["kernel_rel_error"]) and row["kernel_rel_error"] >= 0, row
    assert _finite(row["output_rel_error"]) and row["output_rel_error"] >= 0, row
    assert 0 <= row["negative_kernel_fraction"] <= 1 and 0 <= row["negative_normaliser_fraction"] <= 1
    if row["family"].startswith("favor"):
      assert row["feature_dim"] == int(row["method"].split("m=")[1])
    # Positive feature maps and even orders never make the kernel negative.
    order = int(row["method"].split("P=")[1]) if "P=" in row["method"] else None
    if row["family"] in ("favor_iid", "favor_orthogonal", "linear") or (order and order % 2 == 0):
      assert row["negative_kernel_fraction"] == 0 and row["negative_normaliser_fraction"] == 0, row
  assert {row["feature_dim"] for row in rows if row["family"] == "linear"} == {head_dim}
  by_method = {row["method"]: row for row in rows}
  if {1, 2} <= set(c.orders):  # one more Taylor term: a better exp
    assert by_method["taylor P=2"]["kernel_rel_error"] < by_method["taylor P=1"]["kernel_rel_error"]


def _check_rank_rows(rows, n, head_dim, c):
  for row in rows:
    assert row["n"] == n
    assert 1 <= row["numerical_rank"] <= row["rank_bound"] <= n, row
    if row["feature_dim"] is not None:
      assert row["rank_bound"] == min(n, row["feature_dim"])
  ranks = {row["attention"].split()[0]: row for row in rows}
  assert ranks["softmax"]["feature_dim"] is None and ranks["softmax"]["rank_bound"] == n
  assert ranks["linear"]["feature_dim"] == head_dim and ranks["linear"]["numerical_rank"] <= head_dim
  assert ranks["favor"]["numerical_rank"] <= c.rank_favor_dim
  if head_dim < n:  # the cap shows: linear attention's rank is below softmax's
    assert ranks["softmax"]["numerical_rank"] > ranks["linear"]["numerical_rank"]


def _check_attention_approx(results, c):
  random = results["random"]
  assert random["shape"] == dict(c.random)
  _check_error_rows(random["errors"], c, c.random.head_dim)
  _check_rank_rows(random["ranks"], c.random.length, c.random.head_dim, c)

  trained = results["trained"]
  assert trained["context"] == c.context and trained["lm_steps"] == c.train.num_steps
  bits = trained["lm_heldout_bits_per_char"]
  assert _finite(bits) and 0 < bits
  layers = trained["layers"]
  assert sorted(layers) == [f"layer_{i}" for i in range(c.model.num_layers)]
  for layer in layers.values():
    assert _finite(layer["scaled_dot_std"]) and layer["scaled_dot_std"] > 0
    assert layer["scaled_dot_max"] >= layer["scaled_dot_std"]
    _check_error_rows(layer["errors_causal"], c, c.model.head_dim)
    _check_rank_rows(layer["ranks"], c.context, c.model.head_dim, c)

  winners = results["winner_at_equal_dimension"]
  assert set(winners) == {"random", *(f"trained/{name}" for name in layers)}
  for verdicts in winners.values():
    assert len(verdicts) == 2 * len(c.orders)
    for v in verdicts:
      favor_won = v["favor_output_rel_error"] <= v["output_rel_error"]
      assert v["better"] == (f"favor_orthogonal m={v['favor_orthogonal_m']}" if favor_won else v["method"])


def _check_lm_runs(results, c, steps, kinds, contexts):
  corpus = results["corpus"]
  vocab = corpus["vocab_size"]
  assert vocab > 3 and corpus["train_tokens"] > 0 and corpus["heldout_tokens"] > 0
  assert 0 <= corpus["heldout_unk_rate"] < 1
  # Every source read (the runs here read the fixture data), capped by max_documents.
  assert corpus["documents"] == min(c.data.max_documents or math.inf, fixture_data.lm_documents())
  assert corpus["heldout_documents"] == round(0.05 * corpus["documents"])
  runs = results["runs"]
  assert sorted(runs) == sorted(f"{kind}_n{n}" for kind in kinds for n in contexts)  # one per (kind, context)
  for name, run in runs.items():
    assert f"{run['kind']}_n{run['context']}" == name and run["steps"] == steps
    # After training: finite, and below a uniform guess over the vocabulary (+ slack for
    # a few steps of training).
    for key in ("heldout_bits_per_char", "train_bits_per_char"):
      assert _finite(run[key]) and 0 < run[key] < math.log2(vocab) + 0.5, (name, key, run[key], vocab)
    assert _finite(run["train_tokens_per_second"]) and run["train_tokens_per_second"] > 0
    kind = dict(c.kinds[run["kind"]])["kind"]
    assert (run["feature_dim"] is None) == (kind == "softmax")
    # Per held-out window (for paired comparisons): their mean is the trainer's eval value.
    assert len(run["heldout_bits_per_window"]) == c.data.heldout_windows
    assert sum(run["heldout_bits_per_window"]) / c.data.heldout_windows == pytest.approx(run["heldout_bits_per_char"])


def _check_attention_lm(results, c):
  _check_lm_runs(results, c, c.train.num_steps, list(c.kinds), c.contexts)


def _check_jl(results, c):
  tails = results["tails"]
  assert sorted(tails) == sorted(f"n={n},eps={eps}" for n in c.tails.n for eps in c.tails.eps)
  samples = c.tails.samples
  for row in tails.values():
    for lemma in ("norm", "inner"):
      mc, exact, bound = row[f"{lemma}_mc"], row[f"{lemma}_exact"], row[f"{lemma}_bound"]
      assert 0 <= mc <= 1 and 0 <= exact <= 1 and _finite(bound)
      assert exact <= bound, row                      # the lemma's bound holds exactly
      se = math.sqrt(max(exact * (1 - exact), 1 / samples) / samples)
      assert mc <= bound + 3 * se, row                # and for the Monte-Carlo tail within MC error
      assert abs(mc - exact) <= 4 * se, row           # the sampler draws what the algebra says
      assert row[f"{lemma}_mc_excess_se"] == pytest.approx((mc - bound) / se)
      assert row[f"{lemma}_mc_excess_se"] <= 3
    assert row["inner_bound"] == pytest.approx(2 * row["norm_bound"])

  projection = results["projection"]
  assert sorted(projection) == sorted(f"{s},N={num},eps={eps}" for s in c.data.sets
                                      for num, eps, _ in c.projection.cases)
  for row in projection.values():
    num, eps = row["N"], row["eps"]
    assert row["bound_24logN"] == math.ceil(24 * math.log(num) / eps ** 2)
    assert row["bound_16logN"] == math.ceil(16 * math.log(num) / eps ** 2)
    assert row["pairs"] + row["pairs_skipped_too_close"] == num * (num - 1) // 2
    assert 0 <= row["success_at_16logN"] <= 1 and 0 <= row["success_at_24logN"] <= 1
    # The lemma: at 24 log N / eps^2 every pair is kept with probability >= (N-1)/N per trial,
    # so at most one trial in a few may fail (two failures: probability < 3 / N^2).
    assert row["success_at_24logN"] >= 1 - 1 / row["trials"] - 1e-9, row
    if row["success_at_24logN"] == 1.0:
      assert row["worst_distortion_at_24logN"] < eps, row
    assert row["empirical_min_n_median"] <= row["empirical_min_n_max"] <= row["bound_24logN"]

  lsh = results["lsh"]
  assert sorted(lsh) == sorted(f"bits={k}" for k in c.lsh.bits)
  for row in lsh.values():
    assert _finite(row["cosine_rmse"]) and row["cosine_rmse"] > 0
    assert row["angle_rmse"] == pytest.approx(row["angle_rmse_theory"], rel=0.35)
  rmse = [lsh[f"bits={k}"]["angle_rmse"] for k in sorted(c.lsh.bits)]
  assert rmse == sorted(rmse, reverse=True)  # more bits, smaller error

  svd = results["randomized_svd"]
  assert sorted(svd) == sorted(f"q={q},sketch={s}" for q in c.svd.power_iters for s in c.svd.sketch)
  for row in svd.values():
    assert row["rank"] == c.svd.rank
    assert _finite(row["error_over_best"]) and row["error_over_best"] >= 1 - 1e-4  # Eckart-Young
    assert 0 <= row["top_singular_value_rel_error"] < 1

  head = results["head_size"]
  assert sorted(head) == sorted(f"L={length}" for length in c.head.lengths)
  for row in head.values():
    d_min = row["d_min"]
    assert d_min is None or 1 <= d_min <= c.head.max_size
    if d_min is not None:  # the smallest size that fits: it fits, one less does not
      assert row["target_weight_at_d_min"] >= c.head.success_weight
      minus_one = row["target_weight_at_d_min_minus_1"]
      assert minus_one is None or minus_one < c.head.success_weight
    assert row["fits"] >= 1
  assert set(results["timings"]) == {"tails_s", "projection_s", "lsh_svd_s", "head_size_s"}


def _check_squareplus(results, c):
  const = results["constants"]
  assert const["b_min_above_softplus"] == pytest.approx(1.921812, abs=1e-6)  # 4 log^2 2
  assert const["b_min_above_softplus"] == pytest.approx(4 * math.log(2) ** 2, abs=1e-9)
  assert const["minimax_b"] == pytest.approx(1.52382103, abs=1e-7)
  assert const["minimax_max_error"] == pytest.approx(0.075931, abs=1e-6)
  # Equioscillation: the error at x = 0 (softplus above) equals the maximal error.
  assert const["minimax_error_at_x0_closed_form"] == pytest.approx(const["minimax_max_error"], abs=1e-8)
  assert const["b4_curvature_at_0"] == pytest.approx(const["softplus_curvature_at_0"]) == 0.25
  assert const["b4_max_error"] > const["minimax_max_error"]

  speed = results["speed"]
  assert list(speed) == list(c.speed.activations)
  for row in speed.values():
    assert row["forward_ms"] > 0 and row["forward_backward_ms"] > 0
  if "relu" in speed:
    assert speed["relu"]["forward_ratio_to_relu"] == 1.0 == speed["relu"]["forward_backward_ratio_to_relu"]

  mlp = results["mlp"]
  assert list(mlp) == list(c.mlp.activations)
  for row in mlp.values():
    assert row["seeds"] == len(c.mlp.seeds) and row["steps"] == c.mlp.num_steps
    assert 0 <= row["test_accuracy"] <= 1
    # A few steps from a fresh init: not diverged (10 classes: a uniform guess is log 10).
    assert _finite(row["test_loss"]) and row["test_loss"] < math.log(10) + 0.5

  lm = results["attention_lm"]
  assert list(lm) == list(c.attention_lm.activations)
  lm_config = config_lib.load_config_file(str(REPO / c.attention_lm.config), c.attention_lm.variant or None)
  for result in lm.values():
    _check_lm_runs(result, lm_config, c.attention_lm.num_steps, c.attention_lm.kinds, c.attention_lm.contexts)


def _check_kgclue(results, c):
  assert results["order"] == c.data.order and results["eval_split"] == c.data.eval_split
  assert results["train_steps"] == c.train.num_steps
  assert 0 <= results["train_token_accuracy"] <= 1
  base = results["base"]
  # The base holds the facts of every KgCLUE split file present (here the fixture's) + distractors.
  assert 0 < base["real_facts"] <= sum(fixture_data.KGCLUE_LINES.values())
  assert base["facts"] == base["real_facts"] + base["distractors"]
  assert (base["distractors"] > 0) == bool(c.data.distractors or c.data.sense_distractors)
  assert base["vocab_size"] > 4
  rows = results["decode"]
  assert sorted(rows) == sorted(c.decode.runs)  # one row per decoding run
  examples = fixture_data.KGCLUE_LINES[c.data.eval_split]
  for name, row in rows.items():
    beam, constrained, lookahead, distractors = c.decode.runs[name]
    assert (row["beam"], row["constrained"], row["lookahead"], row["distractors"]) == (
        beam, constrained, lookahead, distractors)
    assert row["examples"] == (min(examples, c.data.eval_limit) if c.data.eval_limit else examples)
    assert 0 <= row["em"] <= row["f1"] + 1e-12 <= 1 + 1e-12, row  # an exact match has F1 1
    assert 0 <= row["fact_rate"] <= 1 and row["seconds"] > 0
    if constrained:  # the trie admits facts of the base only
      assert row["fact_rate"] == 1.0, (name, row)


CONTENT_CHECKS = {"attention_cost": _check_attention_cost, "attention_approx": _check_attention_approx,
                  "attention_approx_lm": _check_attention_lm, "jl": _check_jl, "squareplus": _check_squareplus,
                  "kgclue": _check_kgclue}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in RUN_ELSEWHERE])
def test_smoke_run_end_to_end(name, tmp_path, fixture_data_env):
  assert name in CONTENT_CHECKS, f"configs/{name}.py: add a content check of its smoke results here"
  workdir = tmp_path / name
  assert run_main([f"--config=configs/{name}.py:smoke", f"--workdir={workdir}"]) == 0
  # results.json holds no NaN or inf (json writes them as bare NaN / Infinity).
  results = json.loads((workdir / "results.json").read_text(),
                       parse_constant=lambda c: pytest.fail(f"{name}: {c} in results.json"))
  assert (workdir / "config.json").is_file() and (workdir / "metrics.jsonl").is_file()
  assert list((workdir / "figures").glob("*.png")), "no figure written"
  config = config_lib.load_config_file(str(REPO / "configs" / f"{name}.py"), "smoke")
  CONTENT_CHECKS[name](results, config)
  # The note's claims: well-formed records, none judged on a smoke run (lmsys.claims).
  records = json.loads((workdir / "claims.json").read_text())
  assert records, f"{name}: no claims"
  for record in records:
    claims_lib.check_record(record)
    assert record["verdict"] == "not measured", record
  assert json.loads((workdir / "provenance.json").read_text())["status"] == "done"
