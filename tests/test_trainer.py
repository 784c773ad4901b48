"""The shared trainer: exact resume after kill -9, multi-device equality, NaN guard."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import mlp as mlp_experiment
from lmsys import analysis, checkpoint, config as config_lib, data, metrics, trainer
from tests.conftest import REPO
from tests.helpers import run_cli

MLP_CONFIG = str(REPO / "configs" / "mlp.py")


def _leaves(tree):
  import jax
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_kill_9_then_resume_is_bitwise_equal(tmp_path):
  args = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=600",
          "--config.train.checkpoint_every=50", "--config.train.eval_every=600",
          "--config.train.log_every=50", "--config.model.hidden=(64,64)"]
  ref = run_cli(args + [f"--workdir={tmp_path / 'ref'}"])
  assert ref.returncode == 0, ref.stderr

  workdir = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args, f"--workdir={workdir}"],
                          cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt = workdir / "checkpoints"
  deadline = time.time() + 120
  while time.time() < deadline:
    steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()] if ckpt.is_dir() else []
    if any(s >= 100 for s in steps) or proc.poll() is not None:
      break
    time.sleep(0.02)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
  killed_at = max(analysis.load_run(str(workdir)).checkpoint_steps())
  assert 0 < killed_at < 600

  resumed = run_cli(args + [f"--workdir={workdir}"])
  assert resumed.returncode == 0, resumed.stderr
  a = analysis.load_run(str(tmp_path / "ref")).restore()
  b = analysis.load_run(str(workdir)).restore()
  for x, y in zip(_leaves(a), _leaves(b)):
    assert x.dtype == y.dtype and np.array_equal(x, y)
  res_a = analysis.load_run(str(tmp_path / "ref")).results["digits"]
  res_b = analysis.load_run(str(workdir)).results["digits"]
  assert res_a["test_accuracy"] == res_b["test_accuracy"] and res_a["test_loss"] == res_b["test_loss"]


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
  mlp_experiment.validate(config)
  dataset, train_x, _ = mlp_experiment._dataset(config)
  clean = data.make_batch_fn({"x": train_x, "y": dataset["train"]["y"]}, config.train.batch_size, config.seed)

  def poisoned(step):
    batch = clean(step)
    if step == 13:
      batch = {**batch, "x": np.full_like(batch["x"], np.nan)}
    return batch

  from lmsys.models.mlp import MLP
  import jax.numpy as jnp
  model = MLP(hidden=(32,), num_classes=10)
  workdir = str(tmp_path)
  with metrics.Writer(workdir) as writer:
    with pytest.raises(trainer.NonFiniteLossError, match="step 13"):
      trainer.train(config, workdir, writer,
                    init_fn=lambda rng: model.init(rng, jnp.zeros((1, 64)))["params"],
                    loss_fn=mlp_experiment.make_loss_fn(model), batch_fn=poisoned)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10]
  params = checkpoint.restore_raw(ckpt_dir)[0]["params"]
  assert all(np.isfinite(x).all() for x in _leaves(params))


def test_optimizer_by_name_schedule_clip_and_decay():
  import jax.numpy as jnp
  import optax
  opt = config_lib.load_config_file(MLP_CONFIG).optimizer
  opt.name, opt.schedule, opt.warmup_steps, opt.weight_decay, opt.grad_clip_norm = "sgd", "cosine", 5, 0.1, 1.0
  tx = trainer.make_optimizer(opt, num_steps=20)
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  updates, _ = tx.update({"w": jnp.full(3, 100.0)}, state, params)
  # step 0 of warmup: learning rate 0, so no movement at all
  np.testing.assert_allclose(updates["w"], 0.0)
  assert isinstance(trainer.make_optimizer(config_lib.load_config_file(MLP_CONFIG).optimizer, 10),
                    optax.GradientTransformation)


def test_two_local_hosts_match_one_host(tmp_path):
  """jax.distributed on localhost: 2 processes x 1 device == 1 process x 2 devices."""
  sys.path.insert(0, str(REPO / "scripts"))
  import launch_multihost  # pylint: disable=g-import-not-at-top
  args = ["--config=configs/mlp.py:smoke", "--config.train.batch_size=32",
          "--config.train.num_steps=20", "--config.train.log_every=1"]
  hosts = launch_multihost.launch(args + [f"--workdir={tmp_path / 'hosts'}"], num_processes=2)
  assert all(r.returncode == 0 for r in hosts), hosts[0].stderr[-2000:] + hosts[1].stderr[-2000:]
  single = run_cli(args + [f"--workdir={tmp_path / 'single'}"],
                   env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert single.returncode == 0, single.stderr
  loss = lambda d: analysis.load_run(str(d)).metrics.query("split == 'train'")["loss"].to_numpy()
  np.testing.assert_allclose(loss(tmp_path / "hosts"), loss(tmp_path / "single"), rtol=1e-5, atol=1e-6)
  assert analysis.load_run(str(tmp_path / "hosts")).checkpoint_steps() == [10, 20]
