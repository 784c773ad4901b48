"""The one entry point for every lmsys experiment.

  python -m experiments.run --config configs/NAME.py[:ARG] [--workdir DIR] [--config.KEY=VALUE ...]

`config.experiment` names a module `experiments/<experiment>.py` with
`validate(config)`, `run(config, workdir, writer) -> results` and
`claims(results, config) -> [records]` (lmsys.claims: the note's claims with
computed verdicts, kept as `claims.json` and printed as the last table), and
optionally `inputs(config) -> [paths]`, the data files hashed into
`provenance.json` (lmsys.provenance; written at the start, completed at the end). Bad input is
reported as one line naming the bad thing, with exit code 2, before any
compute and before anything is written. One run writes a workdir at a time
(a lock file naming its host and pid; a second run is refused with exit 2).
Running the same command on an existing workdir resumes it (the config may change only `train.num_steps` and
logging/checkpoint cadence).
"""

from __future__ import annotations

import ast
import datetime
import importlib
import json
import os
import re
import shutil
import sys

from absl import flags
from ml_collections import config_flags

from lmsys import config as config_lib
from lmsys import metrics as metrics_lib
from lmsys import paths
from lmsys.config import ConfigError
from lmsys.workdir_lock import WorkdirLock


def parse_args(argv: list[str]):
  """Parses argv (without the program name) -> (config, config_path, arg, workdir)."""
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file(
      "config", None, "Config file, optionally with ':ARG' (e.g. configs/logreg.py:smoke).",
      flag_values=flag_values, lock_config=True, sys_argv=["run"] + list(argv))
  flags.DEFINE_string("workdir", None, "Output directory (default runs/<config>/<timestamp>).",
                      flag_values=flag_values)
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is None and "--config" in argv:
    i = argv.index("--config")
    spec = argv[i + 1] if i + 1 < len(argv) else None
  if not spec:
    raise ConfigError("missing --config=configs/NAME.py[:ARG]")
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(config_not_found_message(path))
  config_lib.load_config_file(path, arg or None)  # a bad variant is one clean ConfigError, not a traceback
  try:
    flag_values(["run"] + list(argv))
  except flags.Error as e:
    raise ConfigError(_one_line(f"bad flag: {e}")) from None
  except (AttributeError, KeyError) as e:  # unknown override key
    detail = str(e.args[0] if e.args else e).strip("'\"")
    raise ConfigError(_one_line(f"unknown config key in overrides of {spec}: {detail}")) from None
  except (TypeError, ValueError) as e:
    raise ConfigError(_one_line(f"bad config override: {e}")) from None
  config = flag_values.config
  return config, path, arg or None, flag_values.workdir


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")

USAGE = """\
usage: python -m experiments.run --config configs/NAME.py[:VARIANT] [--workdir DIR] [--config.KEY=VALUE ...]

Runs one experiment (or resumes it, given an existing --workdir). Run it from the repository root.

flags:
  --config FILE[:VARIANT]  the config file; VARIANT picks a version of it: `smoke` (seconds, for
                           tests), several comma separated, `key=value` knobs (`:smoke,steps=100`)
  --workdir DIR            where the run writes (default runs/<config>[-<variant>]/<timestamp>);
                           the same command on an existing workdir resumes it
  --config.KEY=VALUE       sets one config key (`--config.train.num_steps=500`); repeatable
  --compilation_cache DIR  keep XLA's compiled programs in DIR across runs (JAX's persistent
                           cache; the same as JAX_COMPILATION_CACHE_DIR=DIR)
  -h, --help               this message

configs (configs/NAME.py; its docstring says what it reproduces and lists its variants):
"""


def known_configs(configs_dir: str = CONFIGS_DIR) -> dict[str, str]:
  """The config files shipped with lmsys.

  Args:
    configs_dir: the folder of config files (default: the repository's `configs/`).

  Returns:
    {name: first line of its docstring}, sorted by name; read without importing the configs.
  """
  found = {}
  for filename in sorted(os.listdir(configs_dir)):
    if not filename.endswith(".py") or filename.startswith("_"):
      continue
    with open(os.path.join(configs_dir, filename), encoding="utf-8") as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    found[filename[:-3]] = doc.strip().split("\n", 1)[0]
  return found


def usage() -> str:
  """The --help text: how to call the entry point, its flags, and one line per known config."""
  configs = known_configs()
  width = max(map(len, configs), default=0)
  return USAGE + "\n".join(f"  {name:<{width}}  {line}" for name, line in configs.items())


def config_not_found_message(path: str) -> str:
  """The one error line for a --config file that does not exist: it lists the known configs."""
  names = ", ".join(known_configs())
  return f"config file not found: {path} (known configs, in configs/: {names}; --help describes them)"


def _one_line(text: str) -> str:
  """`text` on one line: escaped newlines and runs of whitespace become one space (absl flag errors span lines)."""
  text = str(text).replace("\\n", " ").replace("\\'", "'")
  return re.sub(r"\s+", " ", text).strip()


def default_workdir(config_path: str, arg: str | None) -> str:
  name = os.path.splitext(os.path.basename(config_path))[0]
  if arg:
    name += "-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", arg)
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  return os.path.join("runs", name, stamp)


def load_experiment(config):
  name = config_lib.get(config, "experiment")
  if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
    raise ConfigError(f"config key 'experiment': expected a module name, got {name!r}")
  try:
    module = importlib.import_module(f"experiments.{name}")
  except ModuleNotFoundError as e:
    if e.name == f"experiments.{name}":
      raise ConfigError(f"config key 'experiment': unknown experiment {name!r} "
                        f"(no experiments/{name}.py)") from None
    raise
  for fn in ("validate", "run"):
    if not callable(getattr(module, fn, None)):
      raise ConfigError(f"experiment {name!r} has no {fn}() function")
  return module


def format_results(results) -> str:
  """A readable table of (possibly nested) results: last level as columns."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  flat = {}

  def walk(node, path):
    if isinstance(node, dict) and node:
      for k, v in node.items():
        walk(v, path + (str(k),))
    elif not isinstance(node, (list, dict)):
      flat[path] = node

  walk(results, ())
  if not flat:
    return "(no results)"
  if all(len(p) <= 1 for p in flat):
    return "\n".join(f"{p[0] if p else 'value'}: {_fmt(v)}" for p, v in flat.items())
  rows = {}
  for path, value in flat.items():
    row, col = " / ".join(path[:-1]), path[-1]
    rows.setdefault(row, {})[col] = value
  frame = pd.DataFrame.from_dict(rows, orient="index")
  with pd.option_context("display.max_rows", 500, "display.max_columns", 50, "display.width", 200):
    return frame.to_string(float_format=lambda v: f"{v:.4g}")


def _fmt(value):
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def initialize_distributed() -> None:
  """Multi-host: one process per host, joined through jax.distributed.

  Set LMSYS_COORDINATOR (host:port), LMSYS_NUM_PROCESSES and LMSYS_PROCESS_ID
  (scripts/launch_multihost.py does this for local processes), or
  LMSYS_DISTRIBUTED=auto on clusters JAX detects itself (TPU pods, SLURM).
  """
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get("LMSYS_DISTRIBUTED") == "auto":
    jax.distributed.initialize()
  elif os.environ.get("LMSYS_COORDINATOR"):
    jax.distributed.initialize(os.environ["LMSYS_COORDINATOR"],
                               num_processes=int(os.environ["LMSYS_NUM_PROCESSES"]),
                               process_id=int(os.environ["LMSYS_PROCESS_ID"]))


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if "--help" in argv or "-h" in argv:
    print(usage())
    return 0
  import jax  # pylint: disable=g-import-not-at-top
  try:
    cache_dir, argv = split_compilation_cache(argv)
    if cache_dir:
      jax.config.update("jax_compilation_cache_dir", cache_dir)
    config, path, arg, workdir = parse_args(argv)
    module = load_experiment(config)
    module.validate(config)
    metrics_lib.check_log_config(config)
    if jax.process_count() > 1 and not workdir:
      raise ConfigError("--workdir is required for multi-host runs (all hosts must share it)")
    workdir = workdir or default_workdir(path, arg)
    if not paths.is_local(workdir):
      # The runner's lock (flock, a process id), provenance, claims and some experiments' own files
      # use the local file system; lmsys.trainer, lmsys.checkpoint and metrics.Writer take any epath path.
      raise ConfigError(f"--workdir {workdir}: the runner writes a local workdir only (its lock, provenance and "
                        f"claims are local files); lmsys.trainer.train with metrics.Writer takes gs:// workdirs")
    config_lib.check_workdir(workdir)
    config_json = config_lib.to_json_dict(config)
    old_config_path = os.path.join(workdir, "config.json")
    if os.path.exists(old_config_path):
      try:
        with open(old_config_path, encoding="utf-8") as f:
          old_config = json.load(f)
      except (OSError, ValueError) as e:
        raise ConfigError(f"{old_config_path}: unreadable, so this workdir cannot be resumed "
                          f"({_one_line(e)}; use a new --workdir)") from None
      config_lib.check_resume_compatible(old_config, config_json, getattr(module, "EVALUATION_KEYS", ()))
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  primary = jax.process_index() == 0
  lock = WorkdirLock(workdir)
  created = _first_missing(workdir)
  if primary:  # one writer per workdir: process 0 holds the lock for every host
    os.makedirs(workdir, exist_ok=True)
    try:
      lock.acquire()
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
  try:
    code = _run(module, config, config_json, workdir, primary, argv, arg)
    if code == 2 and primary and created and _holds_only_the_runners_files(workdir):
      shutil.rmtree(created)  # bad input found by the experiment before it wrote anything: leave no trace
    return code
  finally:
    lock.release()


def split_compilation_cache(argv: list[str]) -> tuple[str | None, list[str]]:
  """The `--compilation_cache DIR` (or `=DIR`) flag's folder, and argv without it.

  The folder is JAX's persistent compilation cache (`jax_compilation_cache_dir`): a later run
  (a resume, a sweep trial, another config with the same shapes) loads compiled programs from it
  instead of compiling again. JAX caches programs whose compilation took at least
  `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS` (1 s by default).
  """
  rest, folder, i = [], None, 0
  while i < len(argv):
    if argv[i] == "--compilation_cache":
      if i + 1 >= len(argv):
        raise ConfigError("--compilation_cache needs a folder")
      folder, i = argv[i + 1], i + 2
      continue
    if argv[i].startswith("--compilation_cache="):
      folder = argv[i].split("=", 1)[1]
    else:
      rest.append(argv[i])
    i += 1
  if folder is not None and (not folder or os.path.isfile(folder)):
    raise ConfigError(f"--compilation_cache: {folder!r} is not a folder")
  return folder, rest


def _first_missing(workdir: str) -> str | None:
  """The highest folder on the way to `workdir` that does not exist yet (this run makes it), or None."""
  top, path = None, os.path.abspath(workdir)
  while not os.path.exists(path):
    top, path = path, os.path.dirname(path)
  return top


def _holds_only_the_runners_files(workdir: str) -> bool:
  """Whether `workdir` holds nothing but the runner's config.json and lock, an empty
  metrics.jsonl and TensorBoard's event file header: the experiment wrote nothing."""
  names = set(os.listdir(workdir))
  if not names <= {"config.json", "provenance.json", "LOCK", "metrics.jsonl", "tensorboard"}:
    return False
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path) and os.path.getsize(metrics_path):
    return False
  board = os.path.join(workdir, "tensorboard")
  return not os.path.exists(board) or all(n.startswith("events.out.tfevents.") for n in os.listdir(board))


def _run(module, config, config_json, workdir, primary, argv=(), arg=None) -> int:
  """Runs the experiment in `workdir`: provenance.json first, then results.json, the claims
  (claims.json, printed as the last table; a `smoke` variant's are all `not measured`) and
  the completed provenance."""
  from lmsys import checkpoint, provenance, trainer  # pylint: disable=g-import-not-at-top  (jax, after main's import)
  record = None
  if primary:
    metrics_lib.write_json(os.path.join(workdir, "config.json"), config_json)
    inputs = module.inputs(config) if callable(getattr(module, "inputs", None)) else ()
    record = provenance.start(workdir, command=provenance.command_line(argv), config_json=config_json,
                              code_dir=os.path.dirname(os.path.abspath(module.__file__)), inputs=inputs)
    print(f"workdir: {workdir}", flush=True)
  status = "failed"
  wandb = metrics_lib.check_log_config(config)
  if wandb is not None:
    wandb["name"] = os.path.basename(os.path.abspath(workdir))
  failure = None
  try:
    with metrics_lib.Writer(workdir, enabled=primary, hparams=config_lib.flatten(config_json), wandb=wandb) as writer:
      try:
        results = module.run(config, workdir, writer)
      except ConfigError as e:  # late, data-dependent checks (e.g. a shape in a file)
        failure = (2, f"error: {e}", "failed (exit 2)")
      except FloatingPointError as e:
        failure = (3, f"error: {e}", "failed (exit 3)")
      except (checkpoint.CheckpointError, checkpoint.CheckpointSaveError) as e:  # docs/reliability.md
        failure = (1, f"error: {e}", "failed (exit 1)")
      except trainer.Interrupted as e:  # SIGTERM/SIGINT: saved, resumable; 128 + signal as a shell would
        failure = (128 + e.signum, f"stopped: {e}", f"stopped (exit {128 + e.signum})")
    if failure:
      # The error is dropped now: orbax's failed writes (if any) finish and are collected here,
      # so whatever they report comes before the run's last line, not after it.
      checkpoint.settle_failed_saves()
      print(failure[1], file=sys.stderr, flush=True)
      status = failure[2]
      return failure[0]
    if primary:
      metrics_lib.write_json(os.path.join(workdir, "results.json"), results)
      print(format_results(results))
      smoke = "smoke" in [item.split("=")[0].strip() for item in (arg or "").split(",")]
      write_claims(module, results, config, workdir, smoke)
      print(f"workdir: {workdir}")
    status = "done"
    return 0
  finally:
    if record is not None:
      provenance.finish(workdir, record, status)


def write_claims(module, results, config, workdir, smoke: bool = False) -> list[dict]:
  """The experiment's `claims(results, config)` -> workdir/claims.json, printed as a table."""
  from lmsys import claims as claims_lib  # pylint: disable=g-import-not-at-top
  records = module.claims(results, config) if callable(getattr(module, "claims", None)) else []
  if smoke:
    records = claims_lib.smoke(records)
  claims_lib.write(workdir, records)
  if records:
    print("\nClaims (the note's claims, as measured by this run):\n" + claims_lib.format_table(records))
  return records


if __name__ == "__main__":
  initialize_distributed()
  sys.exit(main())
