#!/usr/bin/env bash
# Runs examples/kubernetes/*.yaml as Kubernetes would, on this machine: the Indexed Job's pods
# as processes with JOB_COMPLETION_INDEX set and the Job's env, /results a temporary directory,
# each container's `args` command run by /bin/sh as written; then the merge Job's command.
# Checks the merged report equals the unsharded run byte for byte.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p meshbench
bin="$PWD/target/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/results"
# What the Job files say: completions, the env value, and each container's command.
completions=$(grep -m1 '^  completions:' examples/kubernetes/sweep-job.yaml | awk '{print $2}')
env_completions=$(grep -m1 -A1 'name: JOB_COMPLETIONS' examples/kubernetes/sweep-job.yaml | tail -1 | sed 's/.*value: *"\(.*\)".*/\1/')
[ "$completions" = "$env_completions" ] || { echo "JOB_COMPLETIONS ($env_completions) != completions ($completions)" >&2; exit 1; }
command_of() { grep -A1 '^          args:' "$1" | tail -1 | sed 's/^ *- //'; }
shard_cmd=$(command_of examples/kubernetes/sweep-job.yaml | sed "s|/results|$work/results|g")
merge_cmd=$(command_of examples/kubernetes/merge-job.yaml | sed "s|/results|$work/results|g")
pids=()
for i in $(seq 0 $((completions - 1))); do
  PATH="$bin:$PATH" JOB_COMPLETION_INDEX=$i JOB_COMPLETIONS=$env_completions /bin/sh -c "$shard_cmd" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
PATH="$bin:$PATH" /bin/sh -c "$merge_cmd" > "$work/merge.out"
"$bin/meshbench" run scenarios/load-sweep.yaml --quiet --out "$work/whole"
diff -r "$work/whole" "$work/results/merged"
echo "kubernetes example: $completions indexed pods merged into a report identical to the unsharded run"
