#!/usr/bin/env bash
# Load-generator speed against nginx on loopback, next to wrk in the same script run.
#   1. closed loop, 50 connections, 10 s: wrk -t2 -c50 vs `meshbench live --connections 50`,
#      alternating for ROUNDS rounds (default 3), the median ratio reported
#      (least request P2C with outlier detection on: scenarios/bench/nginx.yaml);
#   2. open loop at 10 000/s for 10 s: achieved rate and pacing error.
# meshbench runs as users run it watched: Prometheus metrics served (and scraped every second)
# and a W3C traceparent on every attempt. BASELINE=path/to/meshbench adds a third column, another
# build of meshbench in the same rounds (for a before/after figure).
# Needs Debian's nginx, wrk and curl; installs them with apt-get when missing (as root).
# Usage: scripts/bench-live.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx wrk curl >/dev/null
fi
cargo build --release -q -p meshbench
work=$(mktemp -d)
port=18088
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$port;
    location / { return 200 "ok\n"; }
  }
}
CONF
nginx -c "$work/nginx.conf"
trap 'nginx -c "$work/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.5
url="http://127.0.0.1:$port"
# Shared machines are noisy (a neighbour can take a core for seconds), so wrk and meshbench run
# alternately, $rounds rounds each, and the verdict is the median of the per-round ratios.
rounds=${ROUNDS:-3}
ratios=()
for r in $(seq "$rounds"); do
  wrk_rps=$(wrk -t2 -c50 -d"${secs}s" "$url/" | awk '/Requests\/sec/ {print $2}')
  ./target/release/meshbench live scenarios/bench/nginx.yaml --target "$url" --connections 50 \
    --duration "${secs}s" --quiet --out "$work/closed" --metrics-addr 127.0.0.1:19464 2>/dev/null &
  mb=$!
  # A scraper, once a second, as Prometheus would.
  while kill -0 "$mb" 2>/dev/null; do
    curl -s -o /dev/null "http://127.0.0.1:19464/metrics" || true
    sleep 1
  done
  wait "$mb"
  mb_rps=$(python3 -c "import json; print(json.load(open('$work/closed/live.json'))['strategies'][0]['live']['achieved_rps'])")
  base_rps=0
  if [ -n "${BASELINE:-}" ]; then
    "$BASELINE" live scenarios/bench/nginx.yaml --target "$url" --connections 50 \
      --duration "${secs}s" --quiet --out "$work/base"
    base_rps=$(python3 -c "import json; print(json.load(open('$work/base/live.json'))['strategies'][0]['live']['achieved_rps'])")
  fi
  ratios+=("$wrk_rps:$mb_rps:$base_rps")
done
./target/release/meshbench live scenarios/bench/nginx.yaml --target "$url" \
  --duration "${secs}s" --quiet --out "$work/open" --metrics-addr 127.0.0.1:19464 2>/dev/null
python3 - "$work/open/live.json" "${ratios[@]}" <<'PY'
import json, statistics, sys
path = sys.argv[1]
rows = [tuple(map(float, a.split(":"))) for a in sys.argv[2:]]
pairs = [(w, m) for w, m, _ in rows]
s = json.load(open(path))["strategies"][0]["live"]
print("closed loop, 50 connections, 2 threads (P2C + outlier detection), wrk and meshbench alternating")
base = any(b > 0 for _, _, b in rows)
print("  round        wrk req/s   meshbench req/s   ratio" + ("   baseline req/s   ratio" if base else ""))
for i, (wrk, mb, b) in enumerate(rows, 1):
    extra = f" {b:>17.0f} {b / wrk:>7.2f}x" if base else ""
    print(f"  {i:>5} {wrk:>16.0f} {mb:>17.0f} {mb / wrk:>7.2f}x{extra}")
print(f"  median ratio {statistics.median(mb / wrk for wrk, mb in pairs):.2f}x wrk (metrics served and scraped, traceparent on every attempt)")
if base:
    print(f"  baseline median ratio {statistics.median(b / w for w, _, b in rows):.2f}x wrk")
print(f"open loop at {s['target_rps']:.0f}/s")
print(f"  achieved   {s['achieved_rps']:>10.1f} req/s   ({100 * (s['achieved_rps'] / s['target_rps'] - 1):+.2f}%)")
print(f"  pacing error p50 {s['pacing_error_us'][0]:.0f} us, p99 {s['pacing_error_us'][1]:.0f} us, max {s['pacing_error_us'][2]:.0f} us")
print(f"  completed {s['completed']} of {s['scheduled']} scheduled; latency p99 from intended send {s['latency_from_intended_ms'][1]:.3f} ms, from actual send {s['latency_from_send_ms'][1]:.3f} ms")
PY
