#!/usr/bin/env bash
# Opens each report's index.html in headless Chromium (Debian's `chromium` package), fails on
# any console message, and saves a screenshot under target/screenshots/ for a look.
# Usage: scripts/check-html.sh [reports/NAME/index.html ...]   (default: every reports/*/index.html)
set -euo pipefail
cd "$(dirname "$0")/.."
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  # CI installs it (scripts/install-test-servers.sh): there a missing browser is a failure.
  if [ -n "${CI:-}" ]; then
    echo "check-html: no chromium on PATH under CI (scripts/install-test-servers.sh installs it)" >&2
    exit 1
  fi
  echo "check-html: no chromium on PATH (apt-get install chromium); skipped" >&2
  exit 0
fi
pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
  pages=(reports/*/index.html)
fi
mkdir -p target/screenshots
status=0
for page in "${pages[@]}"; do
  [ -f "$page" ] || { echo "check-html: $page: no such file" >&2; status=1; continue; }
  name=$(basename "$(dirname "$page")")
  shot="target/screenshots/$name.png"
  rm -f "$shot"
  log=$(timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --enable-logging=stderr --v=0 --window-size=1000,2200 \
        --screenshot="$shot" "file://$(realpath "$page")" 2>&1 || true)
  console=$(grep ':CONSOLE' <<<"$log" || true)
  if [ -n "$console" ]; then
    echo "check-html: $page: console messages:" >&2
    echo "$console" >&2
    status=1
  elif [ ! -s "$shot" ]; then
    echo "check-html: $page: no screenshot" >&2
    status=1
  else
    echo "check-html: $page: no console errors; screenshot $shot ($(stat -c %s "$shot") bytes)"
  fi
done
exit $status
