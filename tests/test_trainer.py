"""The shared trainer: exact resume after kill -9, multi-device equality, NaN guard."""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmsys import analysis, checkpoint, data, metrics, trainer
from lmsys import config as config_lib
from lmsys.launch import local
from lmsys.tasks import classification
from tests.conftest import REPO
from tests.helpers import leaves, run_cli, wait_for_line

MLP_CONFIG = str(REPO / "configs" / "mlp.py")



# Runs `python -m experiments.run ARGS` with one change: right after the checkpoint at step
# HOLD is committed, the process says so on stdout and blocks (reading stdin) until killed.
# So the kill lands after that checkpoint and before the end, whatever the machine's speed.
_HOLD_AFTER_CHECKPOINT = r"""
import sys
from lmsys import checkpoint
hold_at = int(sys.argv[1])
save = checkpoint.save
def save_then_hold(mngr, step, state, meta):
  save(mngr, step, state, meta)
  if step == hold_at:
    mngr.wait_until_finished()
    print("holding after checkpoint", step, flush=True)
    sys.stdin.read()  # blocks: the parent kills this process here
checkpoint.save = save_then_hold
from experiments import run
sys.exit(run.main(sys.argv[2:]))
"""




@pytest.mark.slow
def test_kill_9_then_resume_is_bitwise_equal(tmp_path):
  args = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=600",
          "--config.train.checkpoint_every=50", "--config.train.eval_every=600",
          "--config.train.log_every=50", "--config.model.hidden=(64,64)"]
  ref = run_cli(args + [f"--workdir={tmp_path / 'ref'}"])
  assert ref.returncode == 0, ref.stderr

  workdir, hold_at = tmp_path / "killed", 150
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  with open(tmp_path / "killed.stderr", "w") as stderr:
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_AFTER_CHECKPOINT, str(hold_at), *args,
                             f"--workdir={workdir}"], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    try:
      held = wait_for_line(proc, "holding after checkpoint", timeout=300)
      assert held and proc.poll() is None, (
          f"the run never held at step {hold_at}: {(tmp_path / 'killed.stderr').read_text()[-2000:]}")
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait()
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert analysis.load_run(str(workdir)).checkpoint_steps()[-1] == hold_at  # killed mid-run

  resumed = run_cli(args + [f"--workdir={workdir}"])
  assert resumed.returncode == 0, resumed.stderr
  a = analysis.load_run(str(tmp_path / "ref")).restore()
  b = analysis.load_run(str(workdir)).restore()
  for x, y in zip(leaves(a), leaves(b), strict=True):
    assert x.dtype == y.dtype and np.array_equal(x, y)
  res_a = analysis.load_run(str(tmp_path / "ref")).results["digits"]
  res_b = analysis.load_run(str(workdir)).results["digits"]
  assert res_a["test_accuracy"] == res_b["test_accuracy"] and res_a["test_loss"] == res_b["test_loss"]
  # It resumed from step 150 rather than starting over: each logged step appears once.
  steps = analysis.load_run(str(workdir)).metrics.query("split == 'train'")["step"].tolist()
  assert steps == list(range(50, 601, 50))


@pytest.mark.slow
def test_eight_devices_match_one_device(tmp_path):
  args = ["--config=configs/mlp.py:smoke", "--config.train.batch_size=32",
          "--config.train.num_steps=30", "--config.train.log_every=1"]
  one = run_cli(args + [f"--workdir={tmp_path / 'one'}"], env={"XLA_FLAGS": "--xla_force_host_platform_device_count=1"})
  eight = run_cli(args + [f"--workdir={tmp_path / 'eight'}"],
                  env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
  assert one.returncode == 0 and eight.returncode == 0, one.stderr + eight.stderr
  loss = lambda d: analysis.load_run(str(d)).metrics.query("split == 'train'")["loss"].to_numpy()
  l1, l8 = loss(tmp_path / "one"), loss(tmp_path / "eight")
  assert len(l1) == len(l8) == 30
  np.testing.assert_allclose(l1, l8, rtol=1e-5, atol=1e-6)


def test_nan_in_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
  config = config_lib.load_config_file(MLP_CONFIG, "smoke")
  config.train.num_steps, config.train.checkpoint_every, config.train.log_every = 40, 10, 5
  dataset, train_x, _ = classification.load_standardized(config, config.data.name)
  clean = data.make_batch_fn({"x": train_x, "y": dataset["train"]["y"]}, config.train.batch_size, config.seed)

  def poisoned(step):
    batch = clean(step)
    if step == 13:
      batch = {**batch, "x": np.full_like(batch["x"], np.nan)}
    return batch

  import jax.numpy as jnp

  from lmsys.models.mlp import MLP
  model = MLP(hidden=(32,), num_classes=10)
  workdir = str(tmp_path)
  with metrics.Writer(workdir) as writer:
    with pytest.raises(trainer.NonFiniteLossError, match="step 13"):
      trainer.train(config, workdir, writer,
                    init_fn=lambda rng: model.init(rng, jnp.zeros((1, 64)))["params"],
                    loss_fn=classification.make_loss_fn(model), batch_fn=poisoned)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10]
  params = checkpoint.restore_raw(ckpt_dir)[0]["params"]
  assert all(np.isfinite(x).all() for x in leaves(params))


def test_a_nan_the_replay_does_not_reproduce_is_still_an_error_that_says_so(tmp_path):
  # The trainer finds the first bad step by replaying from the last checkpoint; a fault that
  # does not recur (here a batch poisoned only the first time step 13 is built) must still stop
  # the run, with the step where the loss was seen and no invented parameter path.
  config = config_lib.load_config_file(MLP_CONFIG, "smoke")
  config.train.num_steps, config.train.checkpoint_every, config.train.log_every = 40, 10, 5
  dataset, train_x, _ = classification.load_standardized(config, config.data.name)
  clean = data.make_batch_fn({"x": train_x, "y": dataset["train"]["y"]}, config.train.batch_size, config.seed)
  built = []

  def poisoned_once(step):
    batch = clean(step)
    built.append(step)
    if step == 13 and built.count(13) == 1:
      batch = {**batch, "x": np.full_like(batch["x"], np.nan)}
    return batch

  import jax.numpy as jnp

  from lmsys.models.mlp import MLP
  model = MLP(hidden=(32,), num_classes=10)
  with metrics.Writer(str(tmp_path)) as writer:
    with pytest.raises(trainer.NonFiniteLossError) as e:
      trainer.train(config, str(tmp_path), writer,
                    init_fn=lambda rng: model.init(rng, jnp.zeros((1, 64)))["params"],
                    loss_fn=classification.make_loss_fn(model), batch_fn=poisoned_once)
  assert "non-finite loss at step 13" in str(e.value), e.value
  assert "did not reproduce it" in str(e.value) and "last good checkpoint: step 10" in str(e.value)
  assert built.count(13) == 2  # the replay ran over the step again
  assert checkpoint.checkpoint_steps(os.path.join(str(tmp_path), "checkpoints")) == [10]


def _trajectory(tx, params, grads):
  """Parameters after each of len(grads) updates of `tx`."""
  import optax
  state, out = tx.init(params), []
  for g in grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(params)
  return out


def _optimizer_case(**fields):
  opt = config_lib.optimizer_defaults(learning_rate=0.1)
  opt.update(fields)
  return opt


# Gradients alternating between norms far above the clip norm (10 x 100) and below it (0.5),
# parameters far from 0 so that decay moves them, over 12 steps of a 3-step warmup and a
# cosine decay to 0 at step 12.
_STEPS, _WARMUP, _PEAK, _DECAY, _CLIP = 12, 3, 0.1, 0.2, 1.0


def _inputs():
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=5) + 2.0, jnp.float32), "b": jnp.asarray([-3.0], jnp.float32)}
  grads = [{"w": jnp.asarray(rng.normal(size=5) * (100.0 if t % 2 == 0 else 0.2), jnp.float32),
            "b": jnp.asarray([(-1.0) ** t * (50.0 if t % 2 == 0 else 0.1)], jnp.float32)}
           for t in range(_STEPS)]
  return params, grads


def test_sgd_schedule_clip_and_decay_follow_their_definitions():
  """SGD by hand (float64): p <- p - lr_t (clip(g) + decay p); lr_t warms up linearly from 0
  to the peak, then follows a half cosine to 0 at num_steps. Dropping any of the three fails."""
  params, grads = _inputs()
  tx = trainer.make_optimizer(_optimizer_case(name="sgd", schedule="cosine", warmup_steps=_WARMUP,
                                              weight_decay=_DECAY, grad_clip_norm=_CLIP), _STEPS)
  got = _trajectory(tx, params, grads)

  p = {k: np.asarray(v, np.float64) for k, v in params.items()}
  for t, g in enumerate(grads):
    if t < _WARMUP:
      lr = _PEAK * t / _WARMUP
    else:
      lr = _PEAK * 0.5 * (1 + np.cos(np.pi * (t - _WARMUP) / (_STEPS - _WARMUP)))
    norm = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in g.values()))
    scale = min(1.0, _CLIP / norm)
    p = {k: p[k] - lr * (scale * np.asarray(g[k], np.float64) + _DECAY * p[k]) for k in p}
    for k in p:
      np.testing.assert_allclose(got[t][k], p[k], rtol=2e-5, atol=1e-6, err_msg=f"step {t}, {k}")
  # The case is sensitive: the warmup starts at lr 0, and both clipping and decay move the result.
  np.testing.assert_array_equal(got[0]["w"], params["w"])
  assert not np.allclose(got[-1]["w"], params["w"], atol=1e-2)


@pytest.mark.parametrize("name,schedule", [("adamw", "cosine"), ("adam", "warmup_constant")])
def test_optimizer_matches_optax_chain(name, schedule):
  """The trainer's optimizer equals the optax chain the config describes, step by step:
  clip_by_global_norm, then the optimizer with the schedule and decoupled weight decay
  (adamw's own weight_decay; adam takes none, so the config's decay is 0 there)."""
  import optax
  params, grads = _inputs()
  decay = _DECAY if name == "adamw" else 0.0
  opt = _optimizer_case(name=name, schedule="cosine" if schedule == "cosine" else "constant",
                        warmup_steps=_WARMUP, weight_decay=decay, grad_clip_norm=_CLIP)
  if schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, _PEAK, _WARMUP, _STEPS)
  else:
    lr = optax.join_schedules([optax.linear_schedule(0.0, _PEAK, _WARMUP), optax.constant_schedule(_PEAK)],
                              [_WARMUP])
  inner = optax.adamw(lr, weight_decay=decay) if name == "adamw" else optax.adam(lr)
  expected = _trajectory(optax.chain(optax.clip_by_global_norm(_CLIP), inner), params, grads)
  got = _trajectory(trainer.make_optimizer(opt, _STEPS), params, grads)
  for t in range(_STEPS):
    for k in params:
      np.testing.assert_allclose(got[t][k], expected[t][k], rtol=1e-6, atol=1e-7, err_msg=f"step {t}, {k}")
  # Each ingredient changes this trajectory, so leaving one out could not pass.
  variants = {"no clipping": optax.chain(inner),
              "no schedule": optax.chain(optax.clip_by_global_norm(_CLIP),
                                         optax.adamw(_PEAK, weight_decay=decay) if name == "adamw"
                                         else optax.adam(_PEAK))}
  if decay:
    variants["no decay"] = optax.chain(optax.clip_by_global_norm(_CLIP), optax.adamw(lr, weight_decay=0.0))
  for what, tx in variants.items():
    other = _trajectory(tx, params, grads)
    assert not np.allclose(other[-1]["w"], expected[-1]["w"], rtol=1e-4, atol=1e-6), what
  assert isinstance(trainer.make_optimizer(config_lib.load_config_file(MLP_CONFIG).optimizer, 10),
                    optax.GradientTransformation)


@pytest.mark.slow
def test_two_local_hosts_match_one_host(tmp_path):
  """jax.distributed on localhost: 2 processes x 1 device == 1 process x 2 devices."""
  args = ["--config=configs/mlp.py:smoke", "--config.train.batch_size=32",
          "--config.train.num_steps=20", "--config.train.log_every=1"]
  hosts = local.launch_local(args + [f"--workdir={tmp_path / 'hosts'}"], num_processes=2, cwd=str(REPO))
  assert all(r.returncode == 0 for r in hosts), hosts[0].stderr[-2000:] + hosts[1].stderr[-2000:]
  single = run_cli(args + [f"--workdir={tmp_path / 'single'}"],
                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert single.returncode == 0, single.stderr
  loss = lambda d: analysis.load_run(str(d)).metrics.query("split == 'train'")["loss"].to_numpy()
  np.testing.assert_allclose(loss(tmp_path / "hosts"), loss(tmp_path / "single"), rtol=1e-5, atol=1e-6)
  assert analysis.load_run(str(tmp_path / "hosts")).checkpoint_steps() == [10, 20]


def test_keep_checkpoints_prunes_to_the_last_ones(tmp_path):
  """train.keep_checkpoints=2 with checkpoints every 2 of 10 steps: only steps 8 and 10 remain,
  also after a resumed run adds more."""
  import jax.numpy as jnp
  import ml_collections
  config = ml_collections.ConfigDict({"seed": 0})
  config.train = config_lib.train_defaults(num_steps=10, batch_size=2, log_every=5, eval_every=10,
                                           checkpoint_every=2, keep_checkpoints=2, progress_bar=False)
  config.optimizer = config_lib.optimizer_defaults(name="sgd", learning_rate=0.1)

  def run(num_steps):
    config.train.num_steps = num_steps
    with metrics.Writer(str(tmp_path), tensorboard=False) as writer:
      return trainer.train(config, str(tmp_path), writer,
                           init_fn=lambda rng: {"w": jnp.zeros(3)},
                           loss_fn=lambda p, batch, rng: (jnp.mean((p["w"] - batch["x"]) ** 2), {}),
                           batch_fn=lambda step: {"x": np.full((2, 3), float(step), np.float32)})

  ckpt_dir = str(tmp_path / "checkpoints")
  assert run(10).step == 10
  assert checkpoint.checkpoint_steps(ckpt_dir) == [8, 10]
  assert sorted(d for d in os.listdir(ckpt_dir) if d.isdigit()) == ["10", "8"]  # pruned, not hidden
  assert run(14).step == 14
  assert checkpoint.checkpoint_steps(ckpt_dir) == [12, 14]


def _toy_config(num_steps):
  """w (3 numbers) fitted to the step number; logs every 5 steps, checkpoints every 5, keeps 2."""
  import ml_collections
  config = ml_collections.ConfigDict({"seed": 0})
  config.train = config_lib.train_defaults(num_steps=num_steps, batch_size=2, log_every=5, eval_every=5,
                                           checkpoint_every=5, keep_checkpoints=2, progress_bar=False)
  config.optimizer = config_lib.optimizer_defaults(name="sgd", learning_rate=0.1)
  return config


def _train_toy(workdir, num_steps):
  with metrics.Writer(workdir) as writer:
    return trainer.train(_toy_config(num_steps), workdir, writer,
                         init_fn=lambda rng: {"w": jnp.zeros(3)},
                         loss_fn=lambda p, batch, rng: (jnp.mean((p["w"] - batch["x"]) ** 2), {}),
                         batch_fn=lambda step: {"x": np.full((2, 3), float(step), np.float32)},
                         eval_fn=lambda params: {"w0": params["w"][0]})


@pytest.mark.parametrize("kind", ["epath", "str"])
def test_a_workdir_given_as_an_epath_path_or_a_string_trains_and_resumes(tmp_path, kind):
  """The trainer, its checkpoints and the metrics writer reach the workdir through etils.epath
  (gs://... on a cloud machine); here a local one, as an epath.Path and as a string."""
  from etils import epath
  workdir = epath.Path(tmp_path / "run") if kind == "epath" else str(tmp_path / "run")
  assert _train_toy(workdir, 10).step == 10
  ckpt_dir = tmp_path / "run" / "checkpoints"
  assert checkpoint.checkpoint_steps(ckpt_dir) == [5, 10]
  assert os.listdir(tmp_path / "run" / "tensorboard")
  resumed = _train_toy(workdir, 15)
  assert resumed.step == 15 and checkpoint.checkpoint_steps(ckpt_dir) == [10, 15]
  rows = analysis.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
  assert rows.query("split == 'train'")["step"].tolist() == [5, 10, 15]
  assert rows.query("split == 'compile'")["step"].tolist() == [0, 10]  # the second run resumed at 10
  # 15 SGD steps (lr 0.1) on the mean of (w_j - s)^2 over a 2 x 3 batch of s = 0..14: the gradient
  # is 2 * 2 (w_j - s) / 6, so w <- w - 0.1 * (2/3) (w - s) = (14 w + s) / 15 (by hand, float64).
  w = 0.0
  for step in range(15):
    w = (14 * w + step) / 15
  np.testing.assert_allclose(np.asarray(resumed.params["w"]), [w] * 3, rtol=1e-5)
  state, meta, step = checkpoint.restore_raw(epath.Path(ckpt_dir) if kind == "epath" else str(ckpt_dir))
  assert step == 15 and int(state["step"]) == 15 and meta["num_steps"] == 15
  metrics.write_json(epath.Path(tmp_path / "run") / "results.json" if kind == "epath"
                     else str(tmp_path / "run" / "results.json"), {"w": np.float32(w)})
  assert json.loads((tmp_path / "run" / "results.json").read_text()) == {"w": float(np.float32(w))}


def test_the_metrics_writer_reaches_a_gs_workdir_through_epath_only(tmp_path, monkeypatch):
  """A `gs://` workdir (no network: etils' own mock sends epath's gs:// calls to a local folder).
  Every file the writer, write_json and save_figure touch goes through epath: nothing is
  written under a local folder named `gs:`, as os.path functions given the URI would do."""
  from etils import epath
  bucket = tmp_path / "bucket"
  monkeypatch.chdir(tmp_path)

  def local(path):
    text = os.fspath(path)
    return str(bucket / text[len("gs://"):]) if text.startswith("gs://") else path

  def redirected(original, path, *args, **kwargs):
    return original(local(path), *[local(a) if isinstance(a, (str, os.PathLike)) else a for a in args], **kwargs)

  names = ["copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove", "rename", "replace",
           "rmtree", "stat", "walk"]
  with epath.testing.mock_epath(**{name: redirected for name in names}):
    workdir = "gs://lmsys-test/run"
    with metrics.Writer(workdir, tensorboard=False) as writer:
      for step in (1, 2, 3):
        writer.write(step, "train", {"loss": 1.0 / step})
      assert writer.rewind(lambda row: row["step"] > 1) == 2
      writer.write(2, "train", {"loss": 0.25})
    with epath.Path(workdir, "metrics.jsonl").open("a") as f:
      f.write('{"step": 3, "spl')  # a line cut short by a kill
    with metrics.Writer(workdir, tensorboard=False) as writer:
      writer.write(3, "eval", {"loss": 0.5})
    metrics.write_json(f"{workdir}/results.json", {"loss": np.float32(0.5)})
    fig = metrics.pyplot().figure()
    assert metrics.save_figure(fig, workdir, "curve") == f"{workdir}/figures/curve.png"
  run = bucket / "lmsys-test" / "run"
  rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  assert rows == [{"step": 1, "split": "train", "loss": 1.0}, {"step": 2, "split": "train", "loss": 0.25},
                  {"step": 3, "split": "eval", "loss": 0.5}]
  assert json.loads((run / "results.json").read_text()) == {"loss": 0.5}
  assert (run / "figures" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert sorted(os.listdir(tmp_path)) == ["bucket"]  # no local `gs:` folder


def test_parameter_overview_counts_and_bytes_per_top_level_module():
  params = {"Dense_0": {"kernel": jnp.zeros((3, 4), jnp.float32), "bias": jnp.zeros((4,), jnp.float32)},
            "Embed": {"embedding": jax.ShapeDtypeStruct((10, 2), jnp.bfloat16)}}
  lines = trainer.parameter_overview(params).splitlines()
  # Dense_0: 12 + 4 = 16 float32 parameters = 64 bytes; Embed: 20 bfloat16 = 40 bytes.
  assert lines[1].split() == ["Dense_0", "16", "64"]
  assert lines[2].split() == ["Embed", "20", "40"]
  assert lines[3].split() == ["total", "36", "104"]


def test_progress_line_for_a_log_file():
  progress = trainer.Progress(total=3000, initial=0, name="", bar=False)
  progress.loss = 2.3142
  assert progress.line(120, 1.7) == "step 120/3000 (4%) 1.7 steps/s eta 28m loss 2.314"
  progress.close()
  named = trainer.Progress(total=10, initial=0, name="vae", bar=False)
  assert named.line(5, float("nan")) == "vae: step 5/10 (50%)"
  named.close()


@pytest.mark.slow
def test_a_run_whose_stderr_is_not_a_terminal_logs_progress_devices_parameters_and_a_trace(tmp_path):
  workdir = tmp_path / "w"
  result = run_cli(["--config=configs/mlp.py:smoke", f"--workdir={workdir}", "--config.train.profile_steps=3"])
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  config = config_lib.load_config_file(str(REPO / "configs" / "mlp.py"), "smoke")
  steps = [l for l in lines if " step " in f" {l}" and f"/{config.train.num_steps} (" in l]
  # one line per log step (and at least one a minute): the smoke run logs every log_every steps
  assert len(steps) >= config.train.num_steps // config.train.log_every, lines
  assert any(l.split()[0] == "total" for l in lines) and any("cpu" in l and "process" in l for l in lines), lines
  traces = [f for _, _, files in os.walk(workdir / "profile") for f in files]
  assert any(f.endswith(".xplane.pb") for f in traces), traces
