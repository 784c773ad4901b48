"""Reliability of the trainer (issue 11, docs/reliability.md): corrupt checkpoints, kills at any
moment, SIGTERM/SIGINT, non-finite gradients and parameters, a full disk.

Bad input files are in tests/data/test_bad_files.py; the workdir lock in tests/test_workdir_lock.py.
"""

import asyncio
import contextlib
import gc
import glob
import json
import logging
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lmsys import analysis, checkpoint, data, metrics, trainer
from lmsys import config as config_lib
from lmsys.launch import local
from lmsys.tasks import classification
from tests.conftest import REPO
from tests.helpers import leaves, run_cli

MLP_CONFIG = str(REPO / "configs" / "mlp.py")
# configs/mlp.py:smoke trained 30 steps, checkpoints at 10, 20, 30.
SMOKE_30 = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=30"]



def _assert_bitwise_equal(a, b):
  for x, y in zip(leaves(a), leaves(b), strict=True):
    assert x.dtype == y.dtype and np.array_equal(x, y)


def _smoke_config(num_steps=30):
  config = config_lib.load_config_file(MLP_CONFIG, "smoke")
  config.train.num_steps = num_steps
  return config


def _train_in_process(workdir, config):
  """The runner's code path (experiments/mlp.py -> classification.train_mlp), without a subprocess."""
  with metrics.Writer(str(workdir)) as writer:
    return classification.train_mlp(config, str(workdir), writer)


def _train_steps(workdir, split="train"):
  frame = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  return frame.query(f"split == '{split}'")["step"].tolist()


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
  """A finished smoke run (checkpoints 10, 20, 30) as the runner writes it; tests copy it."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  config = _smoke_config(30)
  os.makedirs(workdir)
  metrics.write_json(str(workdir / "config.json"), config_lib.to_json_dict(config))
  _train_in_process(workdir, config)
  return workdir


def _copy(trained_workdir, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained_workdir, workdir)
  return workdir


# ---------------------------------------------------------------- orbax's decisions

def test_the_manager_saves_at_its_cadence_the_last_step_and_on_request_and_keeps_the_newest(tmp_path):
  """checkpoint.manager's save-decision policies (no force=True anywhere) and LatestN retention."""
  import jax.numpy as jnp
  stop = []
  mngr = checkpoint.manager(tmp_path / "ckpt", keep=2, save_every=10, final_step=25, stop_requested=lambda: bool(stop))
  saved = []
  for step in range(1, 31):
    stop[:] = [signal.SIGTERM] if step == 17 else []  # a stop asked at step 17 only
    if mngr.should_save(step):
      assert checkpoint.save(mngr, step, {"w": jnp.full(2, float(step))}, {"step": step})
      saved.append(step)
  checkpoint.wait(mngr)
  stop[:] = [signal.SIGTERM]
  assert not checkpoint.save(mngr, 30, {"w": jnp.zeros(2)}, {})  # saved already: orbax declines
  mngr.close()
  assert saved == [10, 17, 20, 25, 30]
  assert checkpoint.checkpoint_steps(tmp_path / "ckpt") == [25, 30]
  state, meta, step = checkpoint.restore_raw(tmp_path / "ckpt")
  assert step == 30 and meta == {"step": 30} and state["w"].tolist() == [30.0, 30.0]


# ---------------------------------------------------------------- corrupt or partial checkpoints

def _truncate_arrays(step_dir):
  files = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*"))
  assert files
  for path in files:
    os.truncate(path, 10)


def _delete(*relative):
  def corrupt(step_dir):
    for rel in relative:
      path = os.path.join(step_dir, rel)
      assert os.path.exists(path), path
      shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  return corrupt


CORRUPTIONS = {
    "truncated_arrays": _truncate_arrays,
    "deleted_array_files": _delete("state/ocdbt.process_0"),
    "deleted_state_metadata": _delete("state/_METADATA", "state/manifest.ocdbt"),
    "deleted_meta": _delete("meta/metadata"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_unreadable_latest_checkpoint_falls_back_and_is_moved_aside(trained_workdir, tmp_path, capfd, corruption):
  workdir = _copy(trained_workdir, tmp_path)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  reference = checkpoint.restore_raw(ckpt_dir, 30)[0]["params"]
  CORRUPTIONS[corruption](os.path.join(ckpt_dir, "30"))

  _train_in_process(workdir, _smoke_config(30))  # resumes: must fall back to step 20 and redo 21..30

  err = capfd.readouterr().err
  warnings = [line for line in err.splitlines() if line.startswith("warning: checkpoint step 30")]
  assert len(warnings) == 1 and "unreadable" in warnings[0] and "resuming from step 20" in warnings[0], err[-3000:]
  moved = glob.glob(os.path.join(ckpt_dir, "corrupt", "30-*"))
  assert len(moved) == 1 and os.listdir(moved[0])  # kept, not deleted
  # orbax lists only the real checkpoints (the re-saved 30 is a new, readable one) ...
  assert checkpoint.manager(ckpt_dir, read_only=True).all_steps() == [10, 20, 30]
  # ... and retraining 21..30 from step 20 gives the lost step-30 parameters back, bitwise.
  _assert_bitwise_equal(checkpoint.restore_raw(ckpt_dir, 30)[0]["params"], reference)
  assert _train_steps(workdir) == [5, 10, 15, 20, 25, 30]  # rows after step 20 rewritten, not doubled


@pytest.mark.slow
def test_no_readable_checkpoint_is_one_error_and_nothing_is_moved(trained_workdir, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  for step in (10, 20, 30):
    _truncate_arrays(os.path.join(ckpt_dir, str(step)))
  result = run_cli(SMOKE_30 + [f"--workdir={workdir}"])
  assert result.returncode == 1, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "no readable checkpoint" in errors[0], result.stderr[-3000:]
  assert all(f"step {s}:" in errors[0] for s in (10, 20, 30))
  # No traceback through lmsys (orbax may print "Exception ignored in: <coroutine ...>" for the
  # failed reads of its own background tasks; docs/reliability.md, Limits).
  assert not [line for line in result.stderr.splitlines() if "File" in line and "/lmsys/" in line]
  assert not os.path.exists(os.path.join(ckpt_dir, "corrupt"))  # maybe systematic: nothing moved
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10, 20, 30]


def test_notebook_restore_falls_back_without_moving(trained_workdir, tmp_path, capfd):
  workdir = _copy(trained_workdir, tmp_path)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  expected = checkpoint.restore_raw(ckpt_dir, 20)[0]["params"]
  _truncate_arrays(os.path.join(ckpt_dir, "30"))
  params = analysis.load_run(str(workdir)).restore()
  _assert_bitwise_equal(params, expected)
  assert "warning: checkpoint step 30" in capfd.readouterr().err
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10, 20, 30]  # read-only: nothing moved


# ---------------------------------------------------------------- metrics rows on resume

def test_cut_last_metrics_line_and_rows_after_the_checkpoint_are_rewritten_once(trained_workdir, tmp_path):
  workdir = _copy(trained_workdir, tmp_path)
  path = os.path.join(workdir, "metrics.jsonl")
  reference = analysis.read_metrics(path)
  # A run killed after its step-20 checkpoint: rows up to 25 written, then a line cut mid-write.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "30"))
  with open(path) as f:
    rows = [json.loads(line) for line in f]
  with open(path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows if r["step"] <= 25)
    f.write('{"step": 30, "split": "train", "accur')
  assert _train_steps(workdir) == [5, 10, 15, 20, 25]  # read_metrics skips the cut line

  _train_in_process(workdir, _smoke_config(30))
  with open(path) as f:
    resumed = [json.loads(line) for line in f]  # every line parses: the cut line is gone
  assert _train_steps(workdir) == [5, 10, 15, 20, 25, 30]
  assert _train_steps(workdir, "eval") == [10, 20, 30]
  assert [r["step"] for r in resumed if r["split"] == "compile"] == [0, 20]
  losses = analysis.read_metrics(path).query("split == 'train'")["loss"].tolist()
  assert losses == reference.query("split == 'train'")["loss"].tolist()  # same values, bitwise


# ---------------------------------------------------------------- kills at any moment

KILL_ARGS = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=600", "--config.train.log_every=5",
             "--config.train.checkpoint_every=20", "--config.train.eval_every=40",
             "--config.train.keep_checkpoints=2"]


def _pending_steps(ckpt_dir):
  """Steps of the saves not committed (orbax's temporary directories, found through its public API)."""
  import orbax.checkpoint as ocp
  return sorted(ocp.step.step_from_checkpoint_name(p.get().name) for p in ocp.step.all_temporary_paths(ckpt_dir))


def _saving(ckpt_dir):
  return bool(_pending_steps(ckpt_dir)) if os.path.isdir(ckpt_dir) else False


def _run_and_kill(args, workdir, delay, during_save):
  """Starts the runner; SIGKILLs it `delay` s into training, or at the first save in flight after it."""
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  start_size = os.path.getsize(metrics_path) if os.path.exists(metrics_path) else 0
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args, f"--workdir={workdir}"],
                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  try:
    # Training has begun once metrics.jsonl grows (compile row; startup and compile take most
    # of a run's time, so a delay counted from the start would rarely land in training).
    while proc.poll() is None and not (os.path.exists(metrics_path) and os.path.getsize(metrics_path) > start_size):
      time.sleep(0.002)
    deadline = time.time() + delay
    while proc.poll() is None and time.time() < deadline:
      time.sleep(0.001)
    while during_save and proc.poll() is None and not _saving(ckpt_dir):
      time.sleep(0.0005)
    if proc.poll() is None:
      saving = _saving(ckpt_dir)
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait()
      return "killed during a save" if saving else "killed"
    return "finished"
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.mark.slow
def test_sigkill_at_ten_random_moments_then_resume_is_bitwise_equal(tmp_path):
  ref = run_cli(KILL_ARGS + [f"--workdir={tmp_path / 'ref'}"])
  assert ref.returncode == 0, ref.stderr
  ref_rows = analysis.read_metrics(str(tmp_path / "ref" / "metrics.jsonl"))
  ref_time = max(ref_rows.query("split == 'train'")["step"]) / ref_rows.query("split == 'train'")[
      "steps_per_second"].iloc[-1]  # seconds of training, as measured by the uninterrupted run

  workdir = tmp_path / "killed"
  rng = random.Random(11)
  outcomes = []
  for i in range(10):
    # Half of the kills at a uniformly random moment of training, half at the first save in
    # flight after one (orbax's temporary directory exists): kills land in saves for sure.
    # Each run gets at most 1/20 of the training time before its kill, so ten runs cannot
    # finish it (a resumed run also redoes the steps after its last checkpoint).
    outcomes.append(_run_and_kill(KILL_ARGS, workdir, rng.uniform(0, ref_time / 20), during_save=i % 2 == 1))
  print("kill outcomes:", outcomes)
  assert "finished" not in outcomes and outcomes.count("killed during a save") >= 5, outcomes
  final = run_cli(KILL_ARGS + [f"--workdir={workdir}"])
  assert final.returncode == 0, final.stderr

  _assert_bitwise_equal(analysis.load_run(str(workdir)).restore(), analysis.load_run(str(tmp_path / "ref")).restore())
  rows = analysis.read_metrics(str(workdir / "metrics.jsonl"))
  for split in ("train", "eval"):
    got, want = rows.query(f"split == '{split}'"), ref_rows.query(f"split == '{split}'")
    assert got["step"].tolist() == want["step"].tolist()  # every logged step exactly once, in order
    assert got["loss"].tolist() == want["loss"].tolist()  # and the same values, bitwise
  compile_steps = rows.query("split == 'compile'")["step"].tolist()
  assert len(compile_steps) == len(set(compile_steps))


# ---------------------------------------------------------------- SIGTERM / SIGINT

@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_at_the_current_step_then_resume(tmp_path, signum):
  workdir = tmp_path / "run"
  args = ["--config=configs/mlp.py:smoke", "--config.train.num_steps=1000000",
          "--config.train.checkpoint_every=1000000", "--config.train.eval_every=1000000"]
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  proc = subprocess.Popen([sys.executable, "-m", "experiments.run", *args, f"--workdir={workdir}"],
                          cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and 10 not in _train_steps_or_empty(workdir):
      time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read()
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 128 + signum, stderr
  lines = [l for l in stderr.splitlines() if l.startswith("stopped:")]
  assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
  ckpt_dir = os.path.join(workdir, "checkpoints")
  steps = checkpoint.checkpoint_steps(ckpt_dir)
  assert len(steps) == 1 and f"stopped at step {steps[0]};" in lines[0] and ckpt_dir in lines[0]
  assert signal.Signals(signum).name in lines[0]
  stopped = steps[0]
  # The saved state is the state after exactly `stopped` steps (compare with a fresh run).
  _train_in_process(tmp_path / "ref", _smoke_config(stopped))
  _assert_bitwise_equal(checkpoint.restore_raw(ckpt_dir)[0]["params"],
                        checkpoint.restore_raw(os.path.join(tmp_path, "ref", "checkpoints"))[0]["params"])
  # Rerunning resumes from it (num_steps may change on resume).
  resumed = run_cli(args[:1] + [f"--config.train.num_steps={stopped + 7}", *args[2:], f"--workdir={workdir}"])
  assert resumed.returncode == 0, resumed.stderr
  rows = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert rows.query("split == 'compile'")["step"].tolist() == [0, stopped]
  train_steps = rows.query("split == 'train'")["step"].tolist()
  assert len(train_steps) == len(set(train_steps)) and train_steps[-1] == stopped + 7


@pytest.mark.slow
def test_sigterm_to_one_of_two_hosts_stops_both_at_the_same_step_then_resume(tmp_path):
  """2 local processes joined by jax.distributed; SIGTERM to process 1 only (JAX's preemption
  notice): both save the same step, at the preemption sync point, and stop; both restarted
  resume from it and end on the parameters of an uninterrupted 2-process run."""
  started = time.perf_counter()
  workdir = tmp_path / "run"
  args = ["--config=configs/mlp.py:smoke", "--config.train.batch_size=32", "--config.train.num_steps=1000000",
          "--config.train.checkpoint_every=1000000", "--config.train.eval_every=1000000"]
  procs = local.start_local(args + [f"--workdir={workdir}"], 2, cwd=str(REPO), stdout=subprocess.DEVNULL)
  stderr = [[], []]
  readers = [threading.Thread(target=lambda i=i: stderr[i].extend(procs[i].stderr), daemon=True) for i in range(2)]
  for reader in readers:  # drained as it comes: a full pipe would block a process, and its peer with it
    reader.start()
  try:
    deadline = time.time() + 180
    while time.time() < deadline and all(p.poll() is None for p in procs) and 10 not in _train_steps_or_empty(workdir):
      time.sleep(0.01)
    assert all(p.poll() is None for p in procs), "".join(stderr[0] + stderr[1])[-3000:]
    os.kill(procs[1].pid, signal.SIGTERM)
    for proc in procs:
      proc.wait(timeout=120)
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  for reader in readers:
    reader.join(timeout=10)
  logs = ["".join(lines) for lines in stderr]
  assert [p.returncode for p in procs] == [128 + signal.SIGTERM] * 2, logs[0][-2000:] + logs[1][-2000:]
  stops = [[line for line in log.splitlines() if line.startswith("stopped:")] for log in logs]
  assert all(len(lines) == 1 for lines in stops) and "Traceback" not in logs[0] + logs[1], logs
  steps = checkpoint.checkpoint_steps(workdir / "checkpoints")
  assert len(steps) == 1, steps
  stopped = steps[0]
  for lines in stops:  # each process: the same step, the one saved, and why
    assert f"SIGTERM (a preemption notice, synchronised over the 2 processes): stopped at step {stopped};" \
        in lines[0], lines
  stop_seconds = time.perf_counter() - started

  more = [args[0], args[1], f"--config.train.num_steps={stopped + 7}", *args[3:]]
  resumed = local.launch_local(more + [f"--workdir={workdir}"], 2, cwd=str(REPO), timeout=300)
  assert all(r.returncode == 0 for r in resumed), resumed[0].stderr[-2000:] + resumed[1].stderr[-2000:]
  rows = analysis.read_metrics(os.path.join(workdir, "metrics.jsonl"))
  assert rows.query("split == 'compile'")["step"].tolist() == [0, stopped]  # resumed at `stopped`
  reference = local.launch_local(more + [f"--workdir={tmp_path / 'ref'}"], 2, cwd=str(REPO), timeout=300)
  assert all(r.returncode == 0 for r in reference), reference[0].stderr[-2000:]
  _assert_bitwise_equal(checkpoint.restore_raw(workdir / "checkpoints")[0]["params"],
                        checkpoint.restore_raw(tmp_path / "ref" / "checkpoints")[0]["params"])
  print(f"SIGTERM to one of 2 hosts: both stopped at step {stopped}, {stop_seconds:.1f} s after the start; "
        f"test wall time {time.perf_counter() - started:.1f} s")


def _train_steps_or_empty(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  return _train_steps(str(workdir)) if os.path.exists(path) and os.path.getsize(path) else []


# ---------------------------------------------------------------- non-finite gradients and parameters

def _train_poisoned(workdir, config, poison_term, extra_params=None):
  """The smoke MLP on digits whose loss gets `poison_term(params, poison)` added; poison = step 13.

  `extra_params` are added to the MLP's parameters (used by the poison term only).
  """
  import jax.numpy as jnp

  from lmsys.models.mlp import MLP
  dataset, train_x, _ = classification.load_standardized(config, config.data.name)
  clean = data.make_batch_fn({"x": train_x, "y": dataset["train"]["y"]}, config.train.batch_size, config.seed)
  model = MLP(hidden=(32,), num_classes=10)
  base_loss = classification.make_loss_fn(model)
  extra = dict(extra_params or {})

  def loss_fn(params, batch, rng):
    loss, aux = base_loss({k: v for k, v in params.items() if k not in extra}, batch, rng)
    return loss + poison_term(params, batch["poison"].max()), aux

  with metrics.Writer(str(workdir)) as writer:
    trainer.train(config, str(workdir), writer,
                  init_fn=lambda rng: {**model.init(rng, jnp.zeros((1, 64)))["params"], **extra},
                  loss_fn=loss_fn, batch_fn=lambda step: {**clean(step), "poison": np.full(
                      config.train.batch_size, step == 13, np.float32)})


def _nan_gradient_only(params, poison):
  """0 in value at every step; at the poisoned step its gradient w.r.t. Dense_1/kernel is NaN."""
  import jax.numpy as jnp
  w = params["Dense_1"]["kernel"]
  inner = jnp.sqrt(jnp.where(poison > 0, w - 100.0, w ** 2 + 1.0)) * 0.0  # sqrt(<0): NaN slope
  return jnp.where(poison > 0, 0.0, inner.sum())


def _overflowing_update(params, poison):
  """0 in value, a finite gradient (-3e38) for `scale` at the poisoned step: with SGD at lr 0.1
  the update takes `scale` (3.3e38) past float32's largest value, to inf."""
  import jax
  scale = params["scale"]
  return poison * -3e38 * (scale - jax.lax.stop_gradient(scale))


def test_nonfinite_gradient_names_step_and_parameter_and_keeps_checkpoint(tmp_path):
  config = _smoke_config(40)
  config.train.checkpoint_every, config.train.log_every = 10, 5
  with pytest.raises(trainer.NonFiniteLossError) as e:
    _train_poisoned(tmp_path, config, _nan_gradient_only)
  assert "non-finite gradient at step 13" in str(e.value), e.value
  # Only Dense_1/kernel's gradient was NaN at step 13 (by the boundary at 15 every parameter is).
  assert "first non-finite gradient: params/Dense_1/kernel;" in str(e.value)
  assert "last good checkpoint: step 10" in str(e.value)
  ckpt_dir = os.path.join(tmp_path, "checkpoints")
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10]
  assert all(np.isfinite(x).all() for x in leaves(checkpoint.restore_raw(ckpt_dir)[0]["params"]))


def test_nonfinite_parameter_names_step_and_parameter(tmp_path):
  import jax.numpy as jnp
  config = _smoke_config(40)
  config.train.checkpoint_every, config.train.log_every = 10, 5
  config.optimizer.name, config.optimizer.learning_rate = "sgd", 0.1
  with pytest.raises(trainer.NonFiniteLossError) as e:
    _train_poisoned(tmp_path, config, _overflowing_update, {"scale": jnp.float32(3.3e38)})
  assert "non-finite parameter at step 13" in str(e.value), e.value
  assert "first non-finite parameter: params/scale;" in str(e.value)
  assert checkpoint.checkpoint_steps(os.path.join(tmp_path, "checkpoints")) == [10]


def _nan_gradient_of_unused(params, poison):
  """0 in value at every step, whatever `unused` holds; its gradient is NaN at the poisoned step.

  After that step `unused` is NaN but the loss never depends on it: only the
  trainer's parameter check at a boundary can see it.
  """
  import jax.numpy as jnp
  u = params["unused"]
  hidden = jnp.sqrt(jnp.where(poison > 0, u - 100.0, 1.0)).sum() * 0.0
  return jnp.where(poison > 0, 0.0, hidden)


def test_nonfinite_parameter_the_loss_never_sees_is_caught_before_the_next_save(tmp_path):
  import jax.numpy as jnp
  config = _smoke_config(40)
  config.train.checkpoint_every, config.train.log_every = 10, 5
  with pytest.raises(trainer.NonFiniteLossError) as e:
    _train_poisoned(tmp_path, config, _nan_gradient_of_unused, {"unused": jnp.ones((3,), jnp.float32)})
  # Found by the replay from the step-10 checkpoint: the step and the leaf, not just "by step 15".
  assert "non-finite gradient at step 13" in str(e.value), e.value
  assert "first non-finite gradient: params/unused;" in str(e.value)
  ckpt_dir = os.path.join(tmp_path, "checkpoints")
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10]
  assert all(np.isfinite(x).all() for x in leaves(checkpoint.restore_raw(ckpt_dir)[0]["params"]))


# ---------------------------------------------------------------- a full disk, a failing write
#
# Faults are injected at the file-system level (a tmpfs too small for the second checkpoint, a
# file-size limit), never by patching orbax, so the tests hold across orbax versions. Hidden
# (512, 512): ~3.6 MB a checkpoint (params + Adam moments), one array file of ~2 MB.

BIG = ["--config.model.hidden=(512,512)"]
FILE_LIMIT = 1 << 20  # RLIMIT_FSIZE: the checkpoint's array file does not fit, metrics files do


@contextlib.contextmanager
def _file_size_limit(nbytes):
  """Writes by this process (all its threads) that would grow a file past `nbytes` fail with EFBIG.

  Python ignores SIGXFSZ, so the write returns the error instead of killing the process.
  """
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def _reports_kept_by_nobody():
  """No log records and the default unraisable hook (prints, keeps nothing), as in a run."""
  hook, sys.unraisablehook = sys.unraisablehook, sys.__unraisablehook__
  logging.disable(logging.CRITICAL)
  try:
    yield
  finally:
    logging.disable(logging.NOTSET)
    sys.unraisablehook = hook


def _assert_intact_at_10(ckpt_dir):
  assert checkpoint.checkpoint_steps(ckpt_dir) == [10]
  assert _pending_steps(ckpt_dir) == [20]  # never committed
  state, _, step = checkpoint.restore_raw(ckpt_dir)
  assert step == 10 and int(state["step"]) == 10
  assert all(np.isfinite(x).all() for x in leaves(state["params"]))


def _assert_one_error_line_last(result, *fragments):
  """Exit 1; the last stderr line is the run's only `error:` line; nothing reported after it."""
  lines = result.stderr.rstrip("\n").splitlines()
  assert result.returncode == 1, result.stderr[-3000:]
  errors = [line for line in lines if line.startswith("error:")]
  assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
  assert "checkpoint save of step 20 failed" in errors[0] and "last intact checkpoint: step 10" in errors[0]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  assert "never retrieved" not in result.stderr


@pytest.mark.slow
def test_failed_checkpoint_write_keeps_previous_checkpoint(tmp_path):
  config = _smoke_config(10)
  config.model.hidden, config.train.checkpoint_every = (512, 512), 10
  _train_in_process(tmp_path, config)  # checkpoint 10, written without a limit
  config.train.num_steps = 30
  before = {id(f) for f in _futures_of_closed_loops()}
  # As in the runner, reports are printed and dropped: pytest's log and unraisable-exception
  # capture would keep them, and through their tracebacks orbax's frames and futures.
  with _reports_kept_by_nobody():
    with _file_size_limit(FILE_LIMIT), pytest.raises(checkpoint.CheckpointSaveError) as e:
      _train_in_process(tmp_path, config)  # resumes from 10; the save at 20 fails mid-write
    message = str(e.value)
    assert e.value.__cause__ is None and e.value.__context__ is None  # holds nothing of orbax's
    del e
    # Once the error is dropped, orbax's failed asyncio work finishes and is collected (the
    # runner waits for this, checkpoint.settle_failed_saves, before its error line): none of it
    # is kept alive to report itself later.
    deadline = time.monotonic() + 30
    while [f for f in _futures_of_closed_loops() if id(f) not in before] and time.monotonic() < deadline:
      time.sleep(0.01)
  assert not [f for f in _futures_of_closed_loops() if id(f) not in before]
  assert "checkpoint save of step 20 failed" in message and "[Errno 27] File too large (writing " in message
  assert "last intact checkpoint: step 10" in message
  _assert_intact_at_10(os.path.join(tmp_path, "checkpoints"))


def _futures_of_closed_loops():
  """asyncio futures and tasks alive (after a collection) whose event loop is closed."""
  gc.collect()
  return [o for o in gc.get_objects() if isinstance(o, asyncio.Future) and o.get_loop().is_closed()]


@pytest.fixture(scope="module")
def checkpointed_at_10(tmp_path_factory):
  """A run of 10 steps with hidden (512, 512) and its one checkpoint (10), as the runner writes it."""
  workdir = tmp_path_factory.mktemp("big") / "run"
  result = run_cli(SMOKE_30[:1] + BIG + ["--config.train.num_steps=10", "--config.train.checkpoint_every=10",
                                         f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(2))
def test_a_failing_write_ends_with_one_error_line_and_previous_checkpoint_intact(checkpointed_at_10, tmp_path,
                                                                                  attempt):
  """The CLI under a file-size limit (no mount needed): the save at 20 fails mid-write."""
  del attempt  # repeated: the stray reports it guards against came in some runs only
  workdir = tmp_path / "run"
  shutil.copytree(checkpointed_at_10, workdir)
  result = run_cli(SMOKE_30[:1] + BIG + ["--config.train.num_steps=30", "--config.train.checkpoint_every=10",
                                         f"--workdir={workdir}"], file_size_limit=FILE_LIMIT)
  _assert_one_error_line_last(result, "[Errno 27] File too large (writing ")
  _assert_intact_at_10(str(workdir / "checkpoints"))


def _mount_tmpfs(path, size):
  os.makedirs(path, exist_ok=True)
  result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
  return result.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(5))
def test_full_tmpfs_disk_ends_with_one_error_and_previous_checkpoint_intact(tmp_path, attempt):
  del attempt  # repeated: before the fix, 3 runs in 6 ended on asyncio's reports, not the error
  mount = tmp_path / "small_disk"
  if not _mount_tmpfs(mount, "6m"):
    pytest.skip("cannot mount a tmpfs here (needs root in a container that allows mounts); "
                "test_a_failing_write_ends_with_one_error_line_and_previous_checkpoint_intact "
                "checks the same behaviour with a file-size limit")
  try:
    result = run_cli(SMOKE_30 + BIG + [f"--workdir={mount / 'run'}"])  # the second checkpoint does not fit
    _assert_one_error_line_last(result, "[Errno 28] No space left on device (writing ")
    _assert_intact_at_10(str(mount / "run" / "checkpoints"))
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)
