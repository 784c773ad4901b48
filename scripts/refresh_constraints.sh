#!/usr/bin/env bash
# Rewrites constraints.txt: the exact versions a fresh `pip install -e ".[test,hf]"` resolves to
# now. pyproject.toml keeps lower bounds (what lmsys needs); constraints.txt is what the README's
# install and .ci/run use (what the suite was last run with), so a new release of a dependency
# reaches users only after this script is run and the suite passes with the result.
#
#   bash scripts/refresh_constraints.sh            # python3 on the PATH
#   PYTHON=python3.11 bash scripts/refresh_constraints.sh
#
# torch is pinned without its local label (`torch==2.13.0`, which a `+cpu` build also meets).
# The `cuda` and `tpu` extras need no lines: jax[cuda13] and jax[tpu] pin their plugins to the
# pinned jax themselves. Extra pip options (e.g. a CPU-only torch index) go in PIP_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip="$tmp/venv/bin/python -m pip"
$pip install -q -e ".[test,hf]"

{
  echo "# Exact versions for \`pip install -e \".[EXTRAS]\" -c constraints.txt\`, written by"
  echo "# scripts/refresh_constraints.sh ($("$tmp/venv/bin/python" -c 'import platform; print("Python", platform.python_version())')); pyproject.toml keeps the lower bounds."
  $pip freeze --exclude-editable | sed -E 's/^([A-Za-z0-9_.-]+==[^+ ]+)\+[A-Za-z0-9.]+$/\1/'
} > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
