#!/usr/bin/env bash
# Runs the `run:` steps of examples/ci/meshbench.yml as written, in order, from the repository's
# root (as a fresh checkout does), with GITHUB_STEP_SUMMARY pointing at a file; the step
# that talks to GitHub (`gh pr comment`) is printed, not run. Fails when a step fails or the
# summary lacks the check table. Usage: examples/ci/run-steps.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# The steps write results/ (untracked): start from none, leave none.
rm -rf results
work=$(mktemp -d)
trap 'rm -rf "$work" "$root/results"' EXIT
export GITHUB_STEP_SUMMARY="$work/step-summary.md"
: > "$GITHUB_STEP_SUMMARY"
n=0
while IFS= read -r cmd; do
  n=$((n + 1))
  case "$cmd" in
    gh\ *) echo "step $n (needs GitHub, not run here): $cmd"; continue ;;
  esac
  echo "step $n: $cmd"
  bash -e -c "$cmd"
done < <(sed -n 's/^        run: //p' examples/ci/meshbench.yml)
grep -q 'checks passed' "$GITHUB_STEP_SUMMARY" || { echo "no check table in the step summary" >&2; exit 1; }
grep -q 'testsuite' results/junit.xml
echo "example workflow: $n run steps as written; summary: $(grep -m1 'checks passed' "$GITHUB_STEP_SUMMARY")"
