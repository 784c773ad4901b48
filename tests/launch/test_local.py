"""Per-host input and the grain input path (issue 14): each process builds only its rows of
the global batch, the grain path reads the same rows from ArrayRecord files, and runs are the
same for any number of processes (2 local processes x 4 CPU devices == 1 process x 8 devices,
also after killing one process mid-run and restarting both)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lmsys import analysis, data
from lmsys.config import ConfigError
from lmsys.data import char_corpus
from lmsys.launch import local
from tests.conftest import REPO
from tests.helpers import leaves, run_cli, wait_for_line

# ---------------------------------------------------------------- a TFDS dataset the tests build

def build_tiny_tfds(data_dir, train_size=40, test_size=12):
  """Prepares `tiny_grain` (array_record): 4x3 uint8 images whose pixels encode the row, 3 classes."""
  tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")

  class TinyGrain(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    url_infos = None  # no checksum file to look up next to this module

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Tensor(shape=(4, 3), dtype=np.uint8),
          "label": tfds.features.ClassLabel(num_classes=3)}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(train_size, 0), "test": self._generate_examples(test_size, 1)}

    def _generate_examples(self, n, salt):
      rng = np.random.default_rng(salt)
      for i in range(n):
        label = i % 3
        image = rng.integers(0, 80, (4, 3)) + 60 * label  # the class shifts the pixels: learnable
        image[0, 0] = i  # the row's index, so a batch says which records it holds
        yield i, {"image": image.astype(np.uint8), "label": label}

  TinyGrain(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  return str(data_dir)


# ---------------------------------------------------------------- per-process rows

@pytest.mark.parametrize("size", [40, 37])  # 37: batches run across epoch ends
def test_process_rows_concatenate_to_the_global_batch(size):
  arrays = {"x": np.arange(size, dtype=np.float32)[:, None] * 2, "y": np.arange(size)}
  batch_fn = data.make_batch_fn(arrays, 8, seed=5)
  for step in range(12):
    whole = batch_fn(step)
    for count in (2, 4, 8):
      parts = [batch_fn(step, process_index=p, process_count=count) for p in range(count)]
      assert all(len(part["y"]) == 8 // count for part in parts)  # each process builds its rows only
      for key in arrays:
        np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), whole[key])
      rows = [data.batch_rows(size, 8, 5, step, p, count) for p in range(count)]
      np.testing.assert_array_equal(np.concatenate(rows), whole["y"])
  with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
    batch_fn(0, process_index=0, process_count=3)


def test_lm_windows_split_by_process():
  stream = np.arange(500)
  whole = char_corpus.window_batch(stream, 8, 10, 3, 4)
  parts = [char_corpus.window_batch(stream, 8, 10, 3, 4, p, 4) for p in range(4)]
  assert all(part.shape == (2, 11) for part in parts)
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_trainer_asks_each_process_for_its_rows(tmp_path):
  """In one process the trainer passes process_index=0, process_count=1 to a per-host batch_fn,
  and still accepts a batch_fn of the step alone (the whole global batch)."""
  import jax.numpy as jnp
  import ml_collections

  from lmsys import config as config_lib
  from lmsys import metrics, trainer
  config = ml_collections.ConfigDict({"seed": 0})
  config.train = config_lib.train_defaults(num_steps=3, batch_size=4, log_every=3, eval_every=3,
                                           checkpoint_every=3, progress_bar=False)
  config.optimizer = config_lib.optimizer_defaults(name="sgd", learning_rate=0.1)
  calls = []

  def per_host(step, process_index=0, process_count=1):
    calls.append((step, process_index, process_count))
    return {"x": np.full((4 // process_count, 2), float(step), np.float32)}

  finals = []
  for name, batch_fn in [("per_host", per_host), ("global", lambda step: per_host(step))]:
    with metrics.Writer(str(tmp_path / name), tensorboard=False) as writer:
      result = trainer.train(config, str(tmp_path / name), writer, init_fn=lambda rng: {"w": jnp.zeros(2)},
                             loss_fn=lambda p, b, rng: (jnp.mean((p["w"] - b["x"]) ** 2), {}),
                             batch_fn=batch_fn)
    finals.append(np.asarray(result.params["w"]))
  assert calls == [(0, 0, 1), (1, 0, 1), (2, 0, 1)] * 2
  np.testing.assert_array_equal(finals[0], finals[1])


# ---------------------------------------------------------------- the grain path

def test_grain_path_reads_the_in_memory_batches(tmp_path):
  from lmsys.data import grain_source
  data_dir = build_tiny_tfds(tmp_path)
  sources, num_classes = data.open_tfds("tiny_grain", data_dir)
  in_memory = data.make_batch_fn(data.load_tfds("tiny_grain", data_dir)["train"], 8, seed=2)
  streamed = grain_source.make_batch_fn(sources["train"], 8, seed=2, decode=data.tfds_arrays)
  assert num_classes == 3 and len(sources["train"]) == 40
  # In order (grain's read-ahead), then out of order (a resume): the batch of step s is the same.
  for step in [*range(12), 7, 3, 30, 5]:
    want, got = in_memory(step), streamed(step)
    assert got["x"].dtype == np.float32 and got["y"].dtype == np.int32
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  # Each process reads only its block of rows: the records at its batch_rows (pixel [0, 0]
  # names the example; TFDS shuffles examples on disk, so it is not the record index).
  names = [int(r["image"][0, 0]) for r in sources["train"].__getitems__(range(40))]
  assert sorted(names) == list(range(40))
  for step in (0, 4, 9):
    for count in (2, 4):
      parts = [streamed(step, process_index=p, process_count=count) for p in range(count)]
      for p, part in enumerate(parts):
        rows = data.batch_rows(40, 8, 2, step, p, count)
        np.testing.assert_array_equal(np.rint(part["x"][:, 0] * 255), [names[r] for r in rows])
        np.testing.assert_array_equal(part["x"], in_memory(step)["x"][p * (8 // count):(p + 1) * (8 // count)])
  moments = grain_source.feature_moments(sources["train"], data.tfds_arrays, chunk_size=7)
  everything = data.load_tfds("tiny_grain", data_dir)["train"]["x"]
  np.testing.assert_allclose(moments[0], everything.mean(0), rtol=1e-6)
  np.testing.assert_allclose(moments[1], everything.std(0), rtol=1e-5)


@pytest.mark.slow
def test_mlp_config_grain_input_trains_like_memory(tmp_path):
  """configs/mlp.py with data.input=grain (streamed) reaches the final parameters of
  data.input=memory on the same TFDS dataset; grain on a non-TFDS dataset is one error line."""
  data_dir = build_tiny_tfds(tmp_path / "tfds")
  args = ["--config=configs/mlp.py:smoke", "--config.data.name=tfds/tiny_grain",
          f"--config.data.data_dir={data_dir}", "--config.train.batch_size=8"]
  params = {}
  for source in ("memory", "grain"):
    r = run_cli(args + [f"--config.data.input={source}", f"--workdir={tmp_path / source}"])
    assert r.returncode == 0, r.stderr[-3000:]
    params[source] = leaves(analysis.load_run(str(tmp_path / source)).restore())
  for a, b in zip(params["memory"], params["grain"], strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  bad = run_cli(["--config=configs/mlp.py:smoke", "--config.data.input=grain", f"--workdir={tmp_path / 'bad'}"])
  assert bad.returncode == 2 and "config key 'data.input'" in bad.stderr and "'digits'" in bad.stderr
  assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------- several processes

# `python -m experiments.run ARGS` with two changes: every batch_fn made by lmsys.data.make_batch_fn
# counts the rows it builds per (process_index, process_count) and the process prints the counts
# at exit ("ROWS [[index, count, rows, calls], ...]"); and with $HOLD_AT set, process 1 stops right
# after the checkpoint at step HOLD_AT is committed, says so, and blocks until killed.
_COUNTING_RUN = r"""
import atexit, collections, json, os, sys
from lmsys import checkpoint, data
built = collections.Counter()
make_batch_fn = data.make_batch_fn
def counting_make_batch_fn(*args, **kwargs):
  batch_fn = make_batch_fn(*args, **kwargs)
  def counted(step, process_index=0, process_count=1):
    batch = batch_fn(step, process_index, process_count)
    built[(process_index, process_count, len(batch["y"]))] += 1
    return batch
  return counted
data.make_batch_fn = counting_make_batch_fn
atexit.register(lambda: print("ROWS", json.dumps(sorted([*k, n] for k, n in built.items())), flush=True))
hold_at = int(os.environ.get("HOLD_AT", "-1"))
save = checkpoint.save
def save_then_hold(mngr, step, state, meta):
  save(mngr, step, state, meta)
  if step == hold_at and os.environ.get("LMSYS_PROCESS_ID") == "1":
    mngr.wait_until_finished()
    print("holding after checkpoint", step, flush=True)
    sys.stdin.read()  # blocks: the test kills this process here
checkpoint.save = save_then_hold
from experiments import run
run.initialize_distributed()
sys.exit(run.main(sys.argv[1:]))
"""

_MH_ARGS = ["--config=configs/mlp.py:smoke", "--config.train.batch_size=32", "--config.train.num_steps=40",
            "--config.train.log_every=10", "--config.train.checkpoint_every=10", "--config.train.eval_every=40",
            "--config.train.progress_bar=False"]


def _rows_built(stdout):
  return [json.loads(line[5:]) for line in stdout.splitlines() if line.startswith("ROWS ")][-1]


def _run_hosts(args, num_processes, devices_per_process, env=None):
  """The counting run as num_processes local hosts; (completed processes, seconds)."""
  start = time.perf_counter()
  procs = local.start_local(args, num_processes, devices_per_process, cwd=str(REPO),
                             program=("-c", _COUNTING_RUN), env=env)
  results = [subprocess.CompletedProcess(p.args, None, *p.communicate(timeout=600)) for p in procs]
  for p, r in zip(procs, results):
    r.returncode = p.returncode
  return results, time.perf_counter() - start


def _run_one(args, devices):
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  for key in ("LMSYS_COORDINATOR", "LMSYS_NUM_PROCESSES", "LMSYS_PROCESS_ID", "LMSYS_DISTRIBUTED"):
    env.pop(key, None)
  start = time.perf_counter()
  r = subprocess.run([sys.executable, "-c", _COUNTING_RUN, *args], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=600)
  return r, time.perf_counter() - start


def _final_params(workdir):
  """The last checkpoint's parameters, read as a notebook does: onto this 1-device test process,
  although an 8-device or multi-host run saved them."""
  return leaves(analysis.load_run(str(workdir)).restore())


def _max_abs_difference(workdir_a, workdir_b):
  a, b = _final_params(workdir_a), _final_params(workdir_b)
  assert [x.shape for x in a] == [y.shape for y in b]
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
  """(workdir, completed processes, seconds) of an uninterrupted 2 processes x 4 devices run."""
  workdir = tmp_path_factory.mktemp("two_hosts") / "run"
  hosts, seconds = _run_hosts(_MH_ARGS + [f"--workdir={workdir}"], 2, 4)
  assert all(r.returncode == 0 for r in hosts), hosts[0].stderr[-2000:] + hosts[1].stderr[-2000:]
  return workdir, hosts, seconds


@pytest.mark.slow
def test_two_hosts_of_four_devices_match_one_host_of_eight(two_hosts, tmp_path):
  """2 processes x 4 CPU devices == 1 process x 8 devices, each process building only its
  16 rows of every 32-row batch."""
  hosts_dir, hosts, hosts_seconds = two_hosts
  one, one_seconds = _run_one(_MH_ARGS + [f"--workdir={tmp_path / 'one'}"], 8)
  assert one.returncode == 0, one.stderr[-3000:]
  # 40 steps, each process built only its own rows; one process built all 32.
  assert _rows_built(hosts[0].stdout) == [[0, 2, 16, 40]]
  assert _rows_built(hosts[1].stdout) == [[1, 2, 16, 40]]
  assert _rows_built(one.stdout) == [[0, 1, 32, 40]]
  difference = _max_abs_difference(hosts_dir, tmp_path / "one")
  print(f"2x4 vs 1x8: final-parameter max abs difference {difference:.3g}; "
        f"wall time {hosts_seconds:.1f} s vs {one_seconds:.1f} s (process start included)")
  assert difference < 1e-5
  loss = lambda d: analysis.load_run(str(d)).metrics.query("split == 'train'")["loss"].to_numpy()
  np.testing.assert_allclose(loss(hosts_dir), loss(tmp_path / "one"), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_killing_one_host_then_restarting_both_resumes_to_the_same_parameters(two_hosts, tmp_path):
  """Process 1 of 2 is killed (SIGKILL) after the step-20 checkpoint of a 40-step run; process 0,
  left without its peer, is stopped too; both restarted on the same workdir resume from step 20
  and end on the parameters of an uninterrupted 2-process run."""
  workdir, hold_at = tmp_path / "killed", 20
  log = open(tmp_path / "killed.stderr", "w")  # a file: a full stderr pipe must not block a process
  procs = local.start_local(_MH_ARGS + [f"--workdir={workdir}"], 2, 4, cwd=str(REPO), program=("-c", _COUNTING_RUN),
                             env={"HOLD_AT": str(hold_at)}, stdin=subprocess.PIPE, stderr=log)
  try:
    held = wait_for_line(procs[1], "holding after checkpoint", timeout=300)
    assert held and procs[1].poll() is None, (
        f"process 1 never held at step {hold_at}: {(tmp_path / 'killed.stderr').read_text()[-3000:]}")
    os.kill(procs[1].pid, signal.SIGKILL)
    procs[1].wait()
    killed_at = time.perf_counter()
    try:  # process 0 fails or hangs without its peer; a cluster scheduler would stop it
      procs[0].wait(timeout=10)
      print(f"process 0 exited by itself ({procs[0].returncode}) "
            f"{time.perf_counter() - killed_at:.1f} s after process 1 was killed")
    except subprocess.TimeoutExpired:
      print("process 0 still running 10 s after process 1 was killed: killed too")
      os.kill(procs[0].pid, signal.SIGKILL)
      procs[0].wait()
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()
  assert procs[1].returncode == -signal.SIGKILL and procs[0].returncode != 0
  assert analysis.load_run(str(workdir)).checkpoint_steps()[-1] == hold_at

  resumed, _ = _run_hosts(_MH_ARGS + [f"--workdir={workdir}"], 2, 4)
  assert all(r.returncode == 0 for r in resumed), resumed[0].stderr[-2000:] + resumed[1].stderr[-2000:]
  # Resumed at step 20: each process built its rows of the 20 remaining steps only.
  assert _rows_built(resumed[0].stdout) == [[0, 2, 16, 20]]
  assert _rows_built(resumed[1].stdout) == [[1, 2, 16, 20]]
  assert _max_abs_difference(workdir, two_hosts[0]) == 0.0  # bitwise
  steps = analysis.load_run(str(workdir)).metrics.query("split == 'train'")["step"].tolist()
  assert steps == [10, 20, 30, 40]




