#!/usr/bin/env bash
# Runs examples/slurm/*.sbatch as Slurm would, on this machine: the array's three tasks as three
# processes with Slurm's variables set, then the merge job; checks the merged report equals the
# unsharded run byte for byte. Usage: examples/slurm/run-locally.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p meshbench
export MESHBENCH="$PWD/target/release/meshbench"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export MESHBENCH_RESULTS="$work/results"
# The array range as the sbatch file declares it.
range=$(grep -m1 '^#SBATCH --array=' examples/slurm/sweep.sbatch | sed 's/.*=//')
first=${range%-*}; last=${range#*-}
pids=()
for id in $(seq "$first" "$last"); do
  SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_MIN=$first SLURM_ARRAY_TASK_COUNT=$((last - first + 1)) \
    bash examples/slurm/sweep.sbatch &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
bash examples/slurm/merge.sbatch > "$work/merge.out"
"$MESHBENCH" run scenarios/load-sweep.yaml --quiet --out "$work/whole"
diff -r "$work/whole" "$MESHBENCH_RESULTS/merged"
echo "slurm example: $((last - first + 1)) array tasks merged into a report identical to the unsharded run"
