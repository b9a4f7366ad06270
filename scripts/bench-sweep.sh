#!/usr/bin/env bash
# Parallel speed-up of a sweep: runs scenarios/load-sweep.yaml (8 points x 3 strategies x 3
# replications = 72 runs) on 1 thread and on 2 threads, and prints both wall times and the
# ratio (best of three runs each). Results are byte-identical either way (checked here too).
# Usage: scripts/bench-sweep.sh [scenario.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-scenarios/load-sweep.yaml}
cargo build --release -q -p meshbench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
wall() {
  local start end
  start=$(date +%s.%N)
  ./target/release/meshbench run "$scenario" --quiet --threads "$1" --out "$out/t$1"
  end=$(date +%s.%N)
  python3 -c "print($end - $start)"
}
./target/release/meshbench run "$scenario" --quiet --threads 2 --out "$out/warm" # warm caches
# Best of three each: this machine is shared, and the minimum is the least disturbed run.
best() { local b=""; for _ in 1 2 3; do t=$(wall "$1"); b=$(python3 -c "print(min(${b:-$t}, $t))"); done; echo "$b"; }
t1=$(best 1)
t2=$(best 2)
cmp -s "$out/t1/summary.csv" "$out/t2/summary.csv" || { echo "summary.csv differs between 1 and 2 threads" >&2; exit 1; }
printf 'sweep %s\n  1 thread : %6.2f s\n  2 threads: %6.2f s\n  speed-up : %6.2fx (results identical)\n' \
  "$scenario" "$t1" "$t2" "$(python3 -c "print($t1 / $t2)")"
