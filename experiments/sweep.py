"""Runs every trial of a config's `get_sweep(arg)`, each as its own `experiments.run` run.

  python -m experiments.sweep --config configs/NAME.py[:ARG] --workdir DIR [--parallel N] [--dry-run]
      [--launcher local|slurm|tpu] [--config.KEY=VALUE ...]

Each trial runs `python -m experiments.run --config ... --workdir DIR/<trial> --config.K=V ...`
in a subprocess, so the runner does the work (validation, lock, resume) and a failing
trial cannot take the others down. Every trial is checked before the first starts (unknown
key, empty sweep, wrong type: one `error:` line, exit 2, nothing written). A finished trial
(results.json) is skipped, an interrupted one resumes from its checkpoints, a failed one
leaves its output's tail in DIR/<trial>/sweep_error.txt and the sweep goes on. At the end:
a table (one row per trial: swept keys, status, scalar results) on stdout and in
DIR/summary.csv; DIR/sweep.json keeps the config, its arg, the shared overrides and the trials.
Exit code 0 when every trial is done, 1 when one failed.

Launchers (the scheduling is theirs; jax.distributed does the multi-host part of each trial):
- local (default): `--parallel N` trials at once on this machine.
- slurm: one job per trial, as one submitit job array (`--slurm_partition`, `--nodes`,
  `--gpus_per_node`, `--timeout_min`); each node runs one process of the trial, given the
  LMSYS_COORDINATOR / LMSYS_NUM_PROCESSES / LMSYS_PROCESS_ID variables from submitit's
  JobEnvironment. A timeout or a preemption requeues the job, which resumes the trial from its
  checkpoint (lmsys/launch/slurm.py). Waits for the jobs, then writes the summary.
  `--cluster local` runs the same jobs through submitit's local executor (no SLURM needed).
- tpu: prints, per trial, `gcloud compute tpus tpu-vm ssh NAME --zone Z --worker=all
  --command "..."` (every host of the slice runs the trial with LMSYS_DISTRIBUTED=auto);
  `--run` executes them one after another. DIR must be a path every host shares.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from experiments import run as run_lib
from lmsys import config as config_lib
from lmsys.config import ConfigError
from lmsys.launch import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one `error:` line from main, not argparse's usage block
    raise ConfigError(f"{message} (python -m experiments.sweep --help)")


def parse_args(argv: list[str]):
  """(options, shared `--config.KEY=VALUE` overrides)."""
  parser = _Parser(prog="python -m experiments.sweep", allow_abbrev=False,
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="configs/NAME.py[:ARG]; ARG is passed to get_sweep too")
  parser.add_argument("--workdir", required=True, help="the sweep's directory; trial T runs in DIR/T")
  parser.add_argument("--parallel", type=int, default=1, help="trials at once (local; slurm: array parallelism)")
  parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                      help="print the commands, run and write nothing")
  parser.add_argument("--launcher", choices=("local", "slurm", "tpu"), default="local")
  slurm = parser.add_argument_group("slurm (submitit)")
  slurm.add_argument("--cluster", choices=("slurm", "local"), default="slurm",
                     help="submitit executor: 'local' runs the jobs on this machine (tests, debugging)")
  slurm.add_argument("--slurm_partition", default="")
  slurm.add_argument("--nodes", type=int, default=1, help="hosts per trial: one JAX process each")
  slurm.add_argument("--gpus_per_node", type=int, default=0)
  slurm.add_argument("--cpus_per_task", type=int, default=0, help="0: the cluster's default")
  slurm.add_argument("--timeout_min", type=int, default=60, help="time limit of each trial's job")
  tpu = parser.add_argument_group("tpu (gcloud)")
  tpu.add_argument("--tpu", default="", help="TPU VM (pod slice) name")
  tpu.add_argument("--zone", default="")
  tpu.add_argument("--project", default="")
  tpu.add_argument("--remote_dir", default="lmsys", help="the lmsys checkout on the TPU hosts")
  tpu.add_argument("--remote_python", default="python3")
  tpu.add_argument("--run", action="store_true", help="execute the gcloud commands (default: print them)")
  options, rest = parser.parse_known_args(argv)
  bad = [a for a in rest if not (a.startswith("--config.") and "=" in a)]
  if bad:
    raise ConfigError(f"unknown argument {bad[0]!r} (shared overrides are --config.KEY=VALUE)")
  if options.parallel < 1 or options.nodes < 1 or options.timeout_min < 1:
    raise ConfigError("--parallel, --nodes and --timeout_min must be positive")
  if options.launcher == "tpu" and not (options.tpu and options.zone):
    raise ConfigError("--launcher tpu needs --tpu NAME and --zone ZONE")
  if options.launcher == "slurm" and options.cluster == "slurm" and not options.dry_run and not shutil.which("sbatch"):
    raise ConfigError("--launcher slurm: sbatch is not on this machine's PATH "
                      "(run from a SLURM login node, or --cluster local to run the jobs here)")
  return options, rest


# -- Plan: every trial checked before any runs -------------------------------------

def plan(spec: str, workdir: str, shared: list[str], check_experiment: bool = True) -> list[dict]:
  """[{name, overrides, argv}] for every trial; raises ConfigError before anything runs.

  `check_experiment`: also the experiment's validate() per trial, which looks for data
  files: off where the trials run on other machines (tpu) whose disks this one cannot see.
  """
  path, _, arg = spec.partition(":")
  config, _, _, _ = run_lib.parse_args([f"--config={spec}", *shared])  # the config every trial starts from
  trials = sweep.load_sweep(path, arg or None)
  names = sweep.validate(config, trials, source=f"the sweep of {spec}")
  planned = []
  for name, trial in zip(names, trials):
    expected = sweep.apply(config, trial)
    argv = [f"--config={spec}", f"--workdir={os.path.join(workdir, name)}", *shared, *sweep.override_flags(trial)]
    parsed, _, _, _ = run_lib.parse_args(argv)  # exactly what the trial's runner will parse
    if config_lib.flatten(parsed.to_dict()) != config_lib.flatten(expected.to_dict()):
      raise ConfigError(f"trial {name}: its overrides do not survive the command line "
                        f"({' '.join(sweep.override_flags(trial))})")
    try:
      module = run_lib.load_experiment(parsed)
      if check_experiment:
        module.validate(parsed)
    except ConfigError as e:
      raise ConfigError(f"trial {name}: {e}") from None
    planned.append({"name": name, "overrides": trial, "argv": argv})
  return planned


def record_sweep(workdir: str, spec: str, shared: list[str], trials: list[dict], launcher: str) -> None:
  """DIR/sweep.json; a sweep directory holds one config with one set of shared overrides."""
  path = os.path.join(workdir, sweep.SWEEP_FILE)
  if os.path.exists(path):
    try:
      with open(path, encoding="utf-8") as f:
        old = json.load(f)
      old.get("config")
    except (OSError, ValueError, AttributeError) as e:
      raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {e}); use a new --workdir") from None
    if (old.get("config"), old.get("overrides")) != (spec, shared):
      raise ConfigError(f"{workdir} holds a sweep of {old.get('config')} {' '.join(old.get('overrides', []))} "
                        f"(asked: {spec} {' '.join(shared)}); use a new --workdir")
  os.makedirs(workdir, exist_ok=True)
  state = {"config": spec, "overrides": shared, "launcher": launcher,
           "updated": datetime.datetime.now().isoformat(timespec="seconds"),
           "trials": [{"name": t["name"], "overrides": t["overrides"]} for t in trials]}
  with open(path, "w") as f:
    json.dump(state, f, indent=1)


def trial_dir(workdir: str, trial: dict) -> str:
  return os.path.join(workdir, trial["name"])


def is_done(workdir: str, trial: dict) -> bool:
  return os.path.exists(os.path.join(trial_dir(workdir, trial), "results.json"))


def command(trial: dict) -> list[str]:
  return [sys.executable, "-m", "experiments.run", *trial["argv"]]


def _env() -> dict:  # `python -m experiments.run` finds this checkout from any directory
  return {"PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)}


def record_outcome(workdir: str, trial: dict, returncode: int, error: str) -> str:
  """'done' or 'failed'; a failure's exit code and output tail go to DIR/<trial>/sweep_error.txt."""
  error_path = os.path.join(trial_dir(workdir, trial), sweep.ERROR_FILE)
  if returncode == 0 and is_done(workdir, trial):
    return "done"
  os.makedirs(trial_dir(workdir, trial), exist_ok=True)
  with open(error_path, "w") as f:
    f.write(f"exit code {returncode}\n{error}\n")
  return "failed"


def _report(i: int, total: int, trial: dict, status: str, seconds: float, error: str = "") -> None:
  last = error.strip().splitlines()[-1] if error.strip() else ""
  print(f"[{i}/{total}] {trial['name']}: {status} ({seconds:.1f} s){': ' + last if last else ''}", flush=True)


def _clear_error(workdir: str, trial: dict) -> None:
  path = os.path.join(trial_dir(workdir, trial), sweep.ERROR_FILE)
  if os.path.exists(path):
    os.remove(path)


# -- Launchers ---------------------------------------------------------------------

def run_local(workdir: str, trials: list[dict], parallel: int) -> dict[str, str]:
  """Runs the pending trials, `parallel` at once; {name: 'done' | 'failed'}."""
  def one(trial):
    _clear_error(workdir, trial)
    start = time.perf_counter()
    log = os.path.join(trial_dir(workdir, trial), sweep.LOG_FILE)
    result = sweep.run_command(command(trial), os.getcwd(), log, _env())
    return record_outcome(workdir, trial, result["returncode"], result["error"]), time.perf_counter() - start, result

  statuses = {}
  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    futures = {pool.submit(one, trial): trial for trial in trials}
    for i, future in enumerate(concurrent.futures.as_completed(futures), 1):
      trial = futures[future]
      status, seconds, result = future.result()
      statuses[trial["name"]] = status
      _report(i, len(trials), trial, status, seconds, result["error"])
  return statuses


def run_slurm(workdir: str, trials: list[dict], options) -> dict[str, str]:
  """One submitit job per trial (a job array), `--nodes` processes each; waits for them."""
  import submitit  # pylint: disable=g-import-not-at-top

  from lmsys.launch import slurm  # pylint: disable=g-import-not-at-top  (imports submitit)
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit"), cluster=options.cluster)
  params = dict(name="lmsys-sweep", timeout_min=options.timeout_min, nodes=options.nodes, tasks_per_node=1,
                gpus_per_node=options.gpus_per_node, slurm_array_parallelism=options.parallel)
  if options.cpus_per_task:
    params["cpus_per_task"] = options.cpus_per_task
  if options.slurm_partition:
    params["slurm_partition"] = options.slurm_partition
  if options.cluster == "local":  # one machine: its `--nodes` processes stand for the hosts
    params.update(nodes=1, tasks_per_node=options.nodes)
  executor.update_parameters(**params)
  for trial in trials:
    _clear_error(workdir, trial)
  logs = [os.path.join(os.path.abspath(trial_dir(workdir, t)), sweep.LOG_FILE) for t in trials]
  start = time.perf_counter()
  with executor.batch():  # one job array; each job requeues itself after a timeout or preemption
    jobs = [executor.submit(slurm.TrialTask(command(t), os.getcwd(), log, _env()))
            for t, log in zip(trials, logs)]
  print(f"submitted {len(jobs)} job(s) ({options.cluster}): {', '.join(j.job_id for j in jobs)}; "
        f"submitit logs in {executor.folder}", flush=True)
  statuses = {}
  for i, (trial, job) in enumerate(zip(trials, jobs), 1):
    try:
      results = job.results()  # one per task (node)
      returncode = max(r["returncode"] for r in results)
      error = next((r["error"] for r in results if r["returncode"]), "")
    except Exception as e:  # pylint: disable=broad-except  # the job itself failed (timeout, node, ...)
      returncode, error = -1, sweep.tail(f"submitit job {job.job_id}: {e}")
    statuses[trial["name"]] = record_outcome(workdir, trial, returncode, error)
    _report(i, len(trials), trial, statuses[trial["name"]], time.perf_counter() - start, error)
  return statuses


def tpu_commands(trials: list[dict], options) -> list[list[str]]:
  """Per trial: every host of the slice runs it (LMSYS_DISTRIBUTED=auto), skipped where done."""
  commands = []
  for trial in trials:
    workdir = next(a.split("=", 1)[1] for a in trial["argv"] if a.startswith("--workdir="))
    run = shlex.join([options.remote_python, "-m", "experiments.run", *trial["argv"]])
    remote = (f"cd {shlex.quote(options.remote_dir)} && "
              f"(test -f {shlex.quote(os.path.join(workdir, 'results.json'))} || LMSYS_DISTRIBUTED=auto {run})")
    gcloud = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", options.tpu, f"--zone={options.zone}"]
    if options.project:
      gcloud.append(f"--project={options.project}")
    commands.append(gcloud + ["--worker=all", f"--command={remote}"])
  return commands


def run_tpu(trials: list[dict], options) -> dict[str, str]:
  """Prints the commands; with --run executes them one trial after another."""
  statuses = {}
  for i, (trial, cmd) in enumerate(zip(trials, tpu_commands(trials, options)), 1):
    print(shlex.join(cmd), flush=True)
    if options.run:
      start = time.perf_counter()
      proc = subprocess.run(cmd, check=False)
      statuses[trial["name"]] = "done" if proc.returncode == 0 else "failed"
      _report(i, len(trials), trial, statuses[trial["name"]], time.perf_counter() - start,
              f"gcloud exit code {proc.returncode}" if proc.returncode else "")
  return statuses


# -- Summary -----------------------------------------------------------------------

def summary(workdir: str):
  """One row per trial: name, swept keys, status, scalar results (lmsys.analysis.load_runs)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  from lmsys import analysis  # pylint: disable=g-import-not-at-top
  table = analysis.load_runs(workdir)
  scalar = lambda column: not table[column].map(lambda v: isinstance(v, (list, dict))).any()
  keep = [c for c in table.columns if not c.startswith("config.") and c != "workdir"
          and (not c.startswith("results.") or scalar(c))]  # lists of rows stay in results.json
  table = table[keep]
  table.to_csv(os.path.join(workdir, sweep.SUMMARY_FILE), index=False)
  with pd.option_context("display.max_rows", 500, "display.max_columns", 30, "display.width", 200,
                         "display.max_colwidth", 60):
    print(table.drop(columns=["error"], errors="ignore").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
  return table


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  try:
    options, shared = parse_args(argv)
    if options.launcher != "tpu":  # tpu: DIR is a path on the TPU hosts
      config_lib.check_workdir(options.workdir)
    trials = plan(options.config, options.workdir, shared, check_experiment=options.launcher != "tpu")
    pending = [t for t in trials if not is_done(options.workdir, t)]
    if options.launcher == "tpu":
      if options.dry_run:
        options.run = False
      statuses = run_tpu(trials, options)
      return 1 if "failed" in statuses.values() else 0
    if options.dry_run:
      for trial in trials:
        print(("# done: " if trial not in pending else "") + shlex.join(command(trial)))
      return 0
    record_sweep(options.workdir, options.config, shared, trials, options.launcher)
    print(f"sweep of {options.config}: {len(trials)} trials, {len(trials) - len(pending)} done, "
          f"{len(pending)} to run, in {options.workdir}", flush=True)
    if options.launcher == "slurm":
      statuses = run_slurm(options.workdir, pending, options) if pending else {}
    else:
      statuses = run_local(options.workdir, pending, options.parallel)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  summary(options.workdir)
  failed = sorted(name for name, status in statuses.items() if status == "failed")
  if failed:
    print(f"{len(failed)} trial(s) failed: {', '.join(failed)} (see DIR/<trial>/{sweep.ERROR_FILE})")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
