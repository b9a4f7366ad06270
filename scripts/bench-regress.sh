#!/usr/bin/env bash
# Criterion regression gate for the policy and engine costs: the per-pick balancer cost, the
# per-request Cluster cost and the simulator's throughput, against a saved baseline.
#
#   scripts/bench-regress.sh save      # on the reference commit: measure and save as `main`
#   scripts/bench-regress.sh           # on the candidate: measure, compare, exit 1 if any
#                                      # benchmark's median is more than 10% slower
#
# MESHBENCH_BENCH_TOLERANCE (default 0.10) sets the bound. Benchmarks on a shared machine are
# noisy: run both sides on the same machine, back to back, and rerun a failure before trusting it.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=${MESHBENCH_BENCH_BASELINE:-main}
tolerance=${MESHBENCH_BENCH_TOLERANCE:-0.10}
# MESHBENCH_BENCHES narrows the set, e.g. "--bench engine".
read -r -a benches <<< "${MESHBENCH_BENCHES:---bench balancers --bench cluster --bench engine}"
if [ "${1:-}" = "save" ]; then
  cargo bench -p meshbench-benches "${benches[@]}" -- --save-baseline "$baseline" --noplot
  echo "saved criterion baseline '$baseline'"
  exit 0
fi
cargo bench -p meshbench-benches "${benches[@]}" -- --baseline "$baseline" --noplot
# criterion writes target/criterion/<group>/<bench>/change/estimates.json: the relative change of
# the median from the baseline.
python3 - "$tolerance" <<'PY'
import json, pathlib, sys
tolerance = float(sys.argv[1])
root = pathlib.Path("target/criterion")
worse, seen = [], 0
for f in sorted(root.glob("**/change/estimates.json")):
    change = json.loads(f.read_text())["median"]["point_estimate"]
    name = str(f.parent.parent.relative_to(root))
    seen += 1
    flag = "SLOWER" if change > tolerance else "ok"
    print(f"{flag:>6}  {change:+7.1%}  {name}")
    if change > tolerance:
        worse.append(name)
if seen == 0:
    sys.exit("no criterion comparison found: run `scripts/bench-regress.sh save` on the baseline commit first")
if worse:
    sys.exit(f"{len(worse)} benchmark(s) more than {tolerance:.0%} slower than the baseline: {', '.join(worse)}")
print(f"all {seen} benchmarks within {tolerance:.0%} of the baseline")
PY
