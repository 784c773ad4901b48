"""Bad input, one row a kind, for every entry point: one `error:` line naming it, exit 2, nothing written.

Each row gives an entry point, its arguments and what to break first (a file written under the
test's folder); the check is the same for all: exit code 2, stderr is exactly one line, that
line starts with `error: ` and names the bad thing (the fragment), no traceback, and not one
file or folder under the test's folder was created, changed or removed (the `--workdir` given
to every row lies there). A new config, reader or entry point is covered by adding rows.

Rows run in this process (the entry point's `main`, from the repository root, stderr captured
at the file descriptor) unless marked `subprocess`: a few rows run the real command, to check
that the process prints the same single line.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable

import pytest

from tests import helpers

# Entry points: name -> (module for `python -m`, its main(argv) -> exit code, imported lazily).
# The report (`experiments.report`) gets a line here, and rows, once it exists.
ENTRY_POINTS = {
    "run": "experiments.run",
    "sweep": "experiments.sweep",
}


def _main(entry):
  module = __import__(ENTRY_POINTS[entry], fromlist=["main"])
  return module.main


@dataclasses.dataclass
class Row:
  id: str
  entry: str                 # a key of ENTRY_POINTS
  args: list[str]            # {tmp}: the test's folder, {data}: {tmp}/data; `--workdir={tmp}/work` is added
  expect: str                # a fragment of the one error line, naming the bad thing ({tmp} allowed)
  setup: Callable | None = None  # setup(tmp, fixture_root) writes the bad input under tmp
  subprocess: bool = False   # run `python -m` (slower) instead of main() in this process
  workdir: bool = True       # add --workdir={tmp}/work


# ---------------------------------------------------------------- what to break

def _write(relative, content):
  def setup(tmp, _):
    path = tmp / relative
    os.makedirs(path.parent, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
  return setup


def _data(*breakages):
  """A data root at {tmp}/data: the fixture's KgCLUE and vocabulary, then `breakages`(root)."""
  def setup(tmp, fixture_root):
    for part in ("kgclue", "vocab"):
      shutil.copytree(fixture_root / part, tmp / "data" / part)
    for breakage in breakages:
      breakage(tmp / "data")
  return setup


def _replace_line(relative, number, content: bytes):
  def breakage(root):
    path = root / relative
    lines = path.read_bytes().splitlines()
    lines[number - 1] = content
    path.write_bytes(b"\n".join(lines) + b"\n")
  return breakage


def _append(relative, content: bytes):
  def breakage(root):
    with open(root / relative, "ab") as f:
      f.write(content)
  return breakage


def _empty(relative):
  def breakage(root):
    (root / relative).write_bytes(b"")
  return breakage


SYNTAX_ERROR = "def get_config(arg=None):\n  c = 1\n  return c +\n"   # line 3
RAISES = "import ml_collections\n\n\ndef get_config(arg=None):\n  return {}['missing']\n"   # line 5
GOOD_CONFIG = open(os.path.join(os.path.dirname(__file__), "..", "configs", "logreg.py")).read()
VOCAB = "vocab/bert-base-chinese-vocab.txt"
KG = ["--config=configs/kgclue.py:smoke", "--config.data.data_dir={data}"]

ROWS = [
    # -- the config file and its variant
    Row("config_not_python", "run", ["--config", "README.md"], "config file README.md: not a Python file",
        subprocess=True),
    Row("config_missing", "run", ["--config=configs/nosuch.py"], "config file not found: configs/nosuch.py"),
    Row("config_syntax_error", "run", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 3: syntax error",
        setup=_write("bad.py", SYNTAX_ERROR)),
    Row("config_not_utf8", "run", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 1: syntax error",
        setup=_write("bad.py", b'X = "\xff\xfe"\ndef get_config(arg=None):\n  return None\n')),
    Row("config_without_get_config", "run", ["--config={tmp}/bad.py"], "{tmp}/bad.py: no get_config(arg=None)",
        setup=_write("bad.py", "X = 1\n")),
    Row("config_import_fails", "run", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 1: ModuleNotFoundError",
        setup=_write("bad.py", "import lmsys_no_such_module\n")),
    Row("get_config_raises", "run", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 5: get_config() failed: KeyError",
        setup=_write("bad.py", RAISES)),
    Row("get_config_not_a_configdict", "run", ["--config={tmp}/bad.py"], "get_config returned a dict",
        setup=_write("bad.py", "def get_config(arg=None):\n  return {}\n")),
    Row("unknown_variant", "run", ["--config=configs/logreg.py:smok"], "config variant 'smok' is unknown"),
    Row("variant_value_wrong_type", "run", ["--config=configs/mlp.py:smoke,steps=many"],
        "config variant steps='many': expected int"),
    # -- --config.X overrides
    Row("unknown_override_key", "run", ["--config=configs/logreg.py:smoke", "--config.nosuch=1"],
        "unknown config key in overrides of configs/logreg.py:smoke: nosuch"),
    Row("override_wrong_type", "run", ["--config=configs/logreg.py:smoke", "--config.seed=abc"],
        "--config.seed=abc"),
    Row("override_empty_tuple", "run", ["--config=configs/logreg.py", "--config.data.names=()"],
        "config key 'data.names': empty"),
    Row("override_not_positive", "run", ["--config=configs/mlp.py:smoke", "--config.train.num_steps=0"],
        "config key 'train.num_steps': expected a positive integer"),
    Row("override_unknown_name", "run", ["--config=configs/mlp.py:smoke", "--config.optimizer.name=adamm"],
        "config key 'optimizer.name': unknown optax optimizer 'adamm'"),
    Row("override_unknown_dataset", "run", ["--config=configs/mlp.py:smoke", "--config.data.name=digitz"],
        "unknown dataset 'digitz'"),
    Row("override_empty_sketch", "run", ["--config=configs/jl.py:smoke", "--config.svd.sketch=()"],
        "config key 'svd.sketch'"),
    # -- the workdir
    Row("workdir_is_a_file", "run", ["--config=configs/logreg.py:smoke", "--workdir={tmp}/a_file"],
        "--workdir {tmp}/a_file: exists and is not a directory", setup=_write("a_file", "x"),
        subprocess=True, workdir=False),
    Row("workdir_under_a_file", "run", ["--config=configs/logreg.py:smoke", "--workdir={tmp}/a_file/run"],
        "{tmp}/a_file is a file, not a directory", setup=_write("a_file", "x"), workdir=False),
    Row("workdir_config_json_unreadable", "run", ["--config=configs/logreg.py:smoke", "--workdir={tmp}/old"],
        "{tmp}/old/config.json: unreadable", setup=_write("old/config.json", "{\"seed\": "), workdir=False),
    # -- data and vocabulary files (KgCLUE, note 7)
    Row("data_missing", "run", KG, "kgclue", setup=_write("data/README", "no data here")),
    Row("vocab_not_utf8", "run", KG, f"{{data}}/{VOCAB}, line 6: not UTF-8 text",
        setup=_data(_replace_line(VOCAB, 6, b"\xe4\xb8"))),
    Row("vocab_empty", "run", KG, f"{{data}}/{VOCAB}: no tokens (empty file)", setup=_data(_empty(VOCAB))),
    Row("vocab_without_pad", "run", KG, f"{{data}}/{VOCAB}: vocabulary has no [PAD] token",
        setup=_data(_replace_line(VOCAB, 1, b"[PAT]"))),
    Row("data_file_empty", "run", KG, "{data}/kgclue/dev.json: no records (empty file)",
        setup=_data(_empty("kgclue/dev.json"))),
    Row("data_file_malformed_line", "run", KG, "{data}/kgclue/dev.json, line {dev_line}: malformed KgCLUE record",
        setup=_data(_append("kgclue/dev.json", b'{"question": "q", "answer": "no separators"}\n'))),
    Row("data_file_not_utf8", "run", KG, "{data}/kgclue/train.json, line 2: malformed record",
        setup=_data(_replace_line("kgclue/train.json", 2, b'{"question": "\xe4\xb8"}'))),
    # -- the sweep: the same config checks, its own arguments, every trial checked first
    Row("sweep_config_not_python", "sweep", ["--config=README.md"], "config file README.md: not a Python file",
        subprocess=True),
    Row("sweep_config_syntax_error", "sweep", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 3: syntax error",
        setup=_write("bad.py", SYNTAX_ERROR)),
    Row("sweep_without_get_sweep", "sweep", ["--config=configs/jl.py"], "configs/jl.py defines no get_sweep"),
    Row("get_sweep_raises", "sweep", ["--config={tmp}/bad.py"], "{tmp}/bad.py, line 2: get_sweep() failed: KeyError",
        setup=_write("bad.py", GOOD_CONFIG + "\n\ndef get_sweep(arg=None):\n  return {}['missing']\n")),
    Row("sweep_unknown_variant", "sweep", ["--config=configs/logreg.py:smok"], "config variant 'smok' is unknown"),
    Row("sweep_override_empty_tuple", "sweep", ["--config=configs/logreg.py", "--config.data.names=()"],
        "config key 'data.names': empty"),
    Row("sweep_unknown_override_key", "sweep", ["--config=configs/logreg.py", "--config.nosuch=1"],
        "unknown config key in overrides of configs/logreg.py: nosuch"),
    Row("sweep_unknown_argument", "sweep", ["--config=configs/logreg.py", "--paralel=2"],
        "unknown argument '--paralel=2'"),
    Row("sweep_parallel_zero", "sweep", ["--config=configs/logreg.py", "--parallel=0"], "must be positive"),
    Row("sweep_workdir_is_a_file", "sweep", ["--config=configs/logreg.py", "--workdir={tmp}/a_file"],
        "--workdir {tmp}/a_file: exists and is not a directory", setup=_write("a_file", "x"), workdir=False),
    Row("sweep_json_unreadable", "sweep", ["--config=configs/logreg.py", "--workdir={tmp}/old"],
        "{tmp}/old/sweep.json: unreadable", setup=_write("old/sweep.json", "[1, 2"), workdir=False),
]


def _fix_get_sweep_line():
  """get_sweep_raises: the failing line is the config's length + 4 (known only after reading it)."""
  for row in ROWS:
    if row.id == "get_sweep_raises":
      row.expect = row.expect.replace("line 2", f"line {GOOD_CONFIG.count(chr(10)) + 4}")


_fix_get_sweep_line()


def _snapshot(root):
  """Every path under `root` with its size and modification time (folders: size None)."""
  state = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      info = os.lstat(path)
      state[os.path.relpath(path, root)] = (None if name in dirs else info.st_size, info.st_mtime_ns)
  return state


def _fill(text, tmp, dev_line):
  return text.format(tmp=tmp, data=tmp / "data", dev_line=dev_line)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_error_line_naming_it_and_nothing_is_written(row, tmp_path, fixture_data_dir, capfd):
  if row.setup:
    row.setup(tmp_path, fixture_data_dir)
  dev = tmp_path / "data" / "kgclue" / "dev.json"
  dev_line = len(dev.read_bytes().splitlines()) if dev.exists() else 0
  args = [_fill(a, tmp_path, dev_line) for a in row.args]
  if row.workdir:
    args.append(f"--workdir={tmp_path / 'work'}")
  before = _snapshot(tmp_path)
  runs_before = os.path.exists(helpers.REPO / "runs") and _snapshot(helpers.REPO / "runs")

  if row.subprocess:
    result = helpers.run_cli(args, module=ENTRY_POINTS[row.entry], env={"LMSYS_DATA_DIR": str(tmp_path / "data")})
    code, stderr = result.returncode, result.stderr
  else:
    capfd.readouterr()
    with helpers.in_repo_root():
      code = _main(row.entry)(args)
    stderr = capfd.readouterr().err

  assert code == 2, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = stderr.rstrip("\n").splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
  assert _fill(row.expect, tmp_path, dev_line) in lines[0]
  assert _snapshot(tmp_path) == before  # nothing written (nor removed) under the test's folder
  assert (os.path.exists(helpers.REPO / "runs") and _snapshot(helpers.REPO / "runs")) == runs_before
