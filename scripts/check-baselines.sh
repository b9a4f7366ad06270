#!/usr/bin/env bash
# Reruns every shipped scenario (scenarios/*.yaml) and checks it against its baseline in
# reports/baseline/ with `meshbench check` (5% tolerance; a seeded rerun of unchanged code
# compares at +0.00%). Exit 1 when a scenario regressed. After an intended change of results:
# scripts/check-baselines.sh --update
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p meshbench
bin=./target/release/meshbench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for f in scenarios/*.yaml; do
  name=$(grep -m1 '^name:' "$f" | sed 's/^name: *//')
  # Exit 1 (a threshold of the scenario failed) still leaves a result to compare; 2 does not.
  rc=0; "$bin" run "$f" --quiet --out "$tmp/$name" || rc=$?
  [ "$rc" -le 1 ] || { echo "baseline: $name: meshbench run exited $rc" >&2; exit 2; }
  if [ "${1:-}" = "--update" ]; then
    "$bin" check "$tmp/$name" --baseline "reports/baseline/$name.json" --update-baseline
  else
    if ! "$bin" check "$tmp/$name" --baseline "reports/baseline/$name.json" > "$tmp/$name.md"; then
      cat "$tmp/$name.md"
      status=1
    else
      echo "baseline: $name: $(grep -m1 'checks passed' "$tmp/$name.md")"
    fi
  fi
done
exit $status
