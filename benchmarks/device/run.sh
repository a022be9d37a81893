#!/usr/bin/env bash
# The one command a session runs on the lent GPU machine (no network there):
#   bash benchmarks/device/fetch_wheels.sh        # here, first: fills .whl/
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"], timeout_s=600)
# Arguments (and $GPU_BENCH_ARGS) go to benchmarks.gpu_utilization. Everything printed is also
# in $OUT/device.log, and benchmarks/RESULTS.md comes back as $OUT/RESULTS.md. Each step has its
# own timeout and a failure does not stop the next: one device run must report on all of them.
set -uo pipefail
cd "$(dirname "$0")/../.."
export OUT=${OUT:-$(mktemp -d)}   # $OUT exists on the device only; a temp dir elsewhere
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1         # so a step killed by its timeout still leaves its output

declare -a SUMMARY=()
step() {  # step NAME SECONDS COMMAND...: run it under a timeout, record its exit status
  local name=$1 seconds=$2; shift 2
  echo; echo "=== $name (timeout ${seconds}s): $*"
  local start=$SECONDS
  timeout -k 5 "$seconds" "$@"
  local rc=$?
  [[ $rc == 124 || $rc == 137 ]] && rc="$rc (timed out)"
  SUMMARY+=("$name: exit $rc, $((SECONDS - start))s")
}

main() {
  echo "log and RESULTS.md go to $OUT"
  # The image has torch, numpy, scipy...; hposvc's server stack travels as wheels. hposvc is
  # not installed: it runs from the repo root (nothing in it reads its own package metadata).
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "no .whl/: run benchmarks/device/fetch_wheels.sh here and carry [\".whl\"]"; return 1
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site:$PWD

  echo "=== facts"
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "| torch",
    torch.__version__, "| cuda available:", torch.cuda.is_available())'
  # Wheels went in with --no-deps: list any requirement the image does not meet (a missing
  # psycopg and hposvc's torch pin are expected), so an import error is not a surprise.
  python3 - <<'EOF'
import importlib.metadata as md, tomllib
from packaging.requirements import Requirement
def check(owner, reqs):
    for r in map(Requirement, reqs):
        if r.marker and not r.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(r.name)
        except md.PackageNotFoundError:
            print(f"requirement check: {owner} needs {r}: not installed")
            continue
        if not r.specifier.contains(have, prereleases=True):
            print(f"requirement check: {owner} needs {r}: found {have}")
for dist in md.distributions(path=["/tmp/site"]):
    check(dist.metadata["Name"], dist.requires or [])
check("hposvc", tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"])
EOF

  # Budgets: the run tool's command limit is 600 s; these three add up to 510 s at most.
  if [[ -d tests/gpu ]]; then
    step "pytest tests/gpu" 120 python3 -m pytest -q -p no:cacheprovider tests/gpu
  else
    SUMMARY+=("pytest tests/gpu: skipped (no tests/gpu)")
  fi
  # shellcheck disable=SC2086  # GPU_BENCH_ARGS is a list of words
  step "gpu_utilization" 300 python3 -m benchmarks.gpu_utilization ${GPU_BENCH_ARGS:-} "$@"
  step "training_throughput" 90 \
    python3 benchmarks/training_throughput.py --device cuda --quick   # prints only

  cp benchmarks/RESULTS.md "$OUT/"
  echo; echo "=== summary"; printf '%s\n' "${SUMMARY[@]}"
  [[ "${SUMMARY[*]}" != *"exit "[1-9]* ]]   # the script fails when a step did
}

main "$@" 2>&1 | tee "$OUT/device.log"
