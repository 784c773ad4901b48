"""The house's shape: dependencies run one way, and each note's name names its files."""

import ast
import pathlib
import subprocess
import sys

import pytest

from lmsys.notes import NOTES
from tests.conftest import REPO

# notes -> tasks -> models -> nn -> data -> spine (lmsys/*.py); launch sits on the spine.
RANK = {"spine": 0, "data": 1, "launch": 1, "nn": 2, "models": 3, "tasks": 4, "notes": 5}


def _layer(module: str) -> str:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 and parts[1] in RANK else "spine"


def _imports(path: pathlib.Path):
  """Every module an lmsys file imports (module-level or inside functions)."""
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "lmsys":
        yield from (f"lmsys.{alias.name}" for alias in node.names)
      else:
        yield node.module
    elif isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)


def _lmsys_files():
  for path in sorted((REPO / "lmsys").rglob("*.py")):
    yield ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"), path


def test_dependencies_run_one_way():
  upward = []
  for module, path in _lmsys_files():
    for target in _imports(path):
      if target.split(".")[0] in ("experiments", "scripts", "tests"):
        upward.append(f"{module} imports {target}")
      elif target.startswith("lmsys.") and RANK[_layer(target)] > RANK[_layer(module)]:
        upward.append(f"{module} ({_layer(module)}) imports {target} ({_layer(target)})")
  assert not upward, upward


def test_the_layering_check_can_fail():
  assert _layer("lmsys.notes.logreg") == "notes" and _layer("lmsys.trainer") == "spine"
  assert RANK[_layer("lmsys.tasks.kbqa")] > RANK[_layer("lmsys.nn.trie")]


@pytest.mark.parametrize("number", sorted(NOTES))
def test_each_note_name_names_its_config_experiment_and_results_page(number):
  name = NOTES[number][0]
  for path in (f"configs/{name}.py", f"experiments/{name}.py", f"docs/results/{name}.md"):
    assert (REPO / path).is_file(), path


def test_the_readme_file_map_is_generated_from_the_tree():
  result = subprocess.run([sys.executable, "scripts/file_map.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
