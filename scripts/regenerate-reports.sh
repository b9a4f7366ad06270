#!/usr/bin/env bash
# Regenerates reports/<name>/ for every shipped scenario (scenarios/*.yaml and
# scenarios/validation/*.yaml) with the release build. Deterministic: the same commit gives the
# same files. Usage: scripts/regenerate-reports.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p meshbench
for f in scenarios/*.yaml scenarios/validation/*.yaml; do
  name=$(grep -m1 '^name:' "$f" | sed 's/^name: *//')
  rm -rf "reports/$name"
  echo "== $f -> reports/$name"
  ./target/release/meshbench run "$f" --quiet --out "reports/$name"
done
du -sh reports
