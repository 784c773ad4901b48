#!/usr/bin/env bash
# On a GPU machine: install the `cuda` extra, run the tests on the GPU and the attention /
# trainer / BERT ids of scripts/bench.py, and write one JSON of results. At most 8 minutes: each step has
# its own time limit (below; 470 s in all, and 5 s more to kill one that ignores SIGTERM);
# a step that fails or runs out of time is recorded as such and the next one runs.
#
#   bash scripts/device_check.sh                  # GPU: install, check, benchmark
#   bash scripts/device_check.sh --no-install     # GPU, jax[cuda13] already installed
#   bash scripts/device_check.sh --cpu            # dry run on the CPU: no install, tiny sizes
#   bash scripts/device_check.sh --out DIR        # results folder (default device_check/)
#
# Writes DIR/device_check.json: the device and versions; per step its command, exit code and
# seconds; the test counts (from pytest's JUnit XML); the bench JSON (scripts/bench.py). DIR/<step>.log
# holds each step's output. Exit code 0 when every step passed, else 1.
#
# No test is marked GPU-only: the tests run here are those of the code that runs on the
# accelerator (attention kernels, BERT against transformers' recorded outputs, the Transformer,
# the trainer), on the GPU backend; the CPU-only checks (`cpu_only` in tests/conftest.py) skip.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
INSTALL=1
OUT=device_check
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; INSTALL=0 ;;
    --no-install) INSTALL=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (--cpu, --no-install, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PYTHON=${PYTHON:-python}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: > "$OUT/steps.tsv"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$MODE" = cpu ]; then
  export JAX_PLATFORMS=cpu
fi
START=$(date +%s)

# step NAME LIMIT_SECONDS COMMAND...: runs it under `timeout`, output in $OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local command="$*"
  command=${command//$'\n'/ }
  echo "== $name (limit ${limit}s): $command"
  local t0=$(date +%s%N)
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  local seconds=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$command" >> "$OUT/steps.tsv"
  tail -n 4 "$OUT/$name.log" | sed 's/^/   /'
  echo "   -> exit $rc in ${seconds%.*} s"
}

if [ "$INSTALL" = 1 ]; then
  step install 150 "$PYTHON" -m pip install -q -e ".[cuda,test]" -c constraints.txt
fi

step devices 30 "$PYTHON" -c '
import json, sys, jax
d = jax.devices()
print(json.dumps({"backend": jax.default_backend(), "count": len(d), "kind": d[0].device_kind,
                  "jax": jax.__version__}))
sys.exit(0 if sys.argv[1] == "cpu" or jax.default_backend() == "gpu" else 3)' "$MODE"
DEVICES_RC=$(awk -F'\t' '$1 == "devices" {print $2}' "$OUT/steps.tsv")

if [ "$DEVICES_RC" != 0 ]; then  # no GPU for jax: benchmarking the CPU at GPU sizes tells nothing
  echo "   jax sees no GPU (or failed to start): skipping the tests and benchmarks"
elif [ "$MODE" = gpu ]; then
  TESTS=(tests/nn/test_attention.py tests/models/test_bert_recorded.py tests/models/test_transformer.py
         tests/test_trainer.py)
  BENCH=(causal_linear_attention causal_linear_attention_grad softmax_vs_linear_attention
         cudnn_vs_linear_attention trainer_overhead nsp_scoring --repeats 5)
else  # the same steps at sizes that take seconds on 2 CPU cores
  TESTS=(tests/models/test_bert_recorded.py)
  BENCH=(causal_linear_attention softmax_vs_linear_attention trainer_overhead nsp_scoring --repeats 5 --tiny)
fi

if [ "$DEVICES_RC" = 0 ]; then
  # float32 matmuls in full precision (not TF32) for the tests: their tolerances are the CPU's.
  step tests 150 env JAX_DEFAULT_MATMUL_PRECISION=highest "$PYTHON" -m pytest -q -m "not slow" \
      -p no:cacheprovider --junitxml="$OUT/tests.xml" "${TESTS[@]}"
  step bench 140 "$PYTHON" scripts/bench.py "${BENCH[@]}" --json "$OUT/bench.json"
fi

"$PYTHON" - "$OUT" "$MODE" "$(( $(date +%s) - START ))" <<'EOF'
import json, os, platform, sys
import xml.etree.ElementTree as ET
out, mode, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
steps = {}
with open(os.path.join(out, "steps.tsv")) as f:
  for line in f:
    name, rc, seconds, command = line.rstrip("\n").split("\t", 3)
    steps[name] = {"exit_code": int(rc), "seconds": round(float(seconds), 1), "command": command,
                   "status": "ok" if rc == "0" else "timed out" if rc in ("124", "137") else "failed"}
def read_json(name):
  path = os.path.join(out, name)
  return json.load(open(path)) if os.path.exists(path) else None
result = {"mode": mode, "total_seconds": total, "python": platform.python_version(), "steps": steps}
if steps.get("devices", {}).get("exit_code") in (0, 3):
  result["devices"] = json.loads(open(os.path.join(out, "devices.log")).read().strip().splitlines()[-1])
if os.path.exists(os.path.join(out, "tests.xml")):
  suite = ET.parse(os.path.join(out, "tests.xml")).getroot()
  suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
  result["tests"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
  result["tests"]["passed"] = result["tests"]["tests"] - sum(
      result["tests"][k] for k in ("failures", "errors", "skipped"))
  result["tests"]["seconds"] = float(suite.get("time", 0))
result["bench"] = read_json("bench.json")
with open(os.path.join(out, "device_check.json"), "w") as f:
  json.dump(result, f, indent=1)
failed = [n for n, s in steps.items() if s["exit_code"]]
print(f"{os.path.join(out, 'device_check.json')}: {len(steps) - len(failed)}/{len(steps)} steps ok"
      + (f"; not ok: {', '.join(failed)}" if failed else "") + f"; {total} s")
sys.exit(1 if failed else 0)
EOF
