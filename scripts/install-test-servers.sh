#!/usr/bin/env bash
# The real servers the tests start on loopback, from Debian's packages, installed when missing:
# dnsmasq (DNS discovery: A, AAAA and SRV records with TTLs), etcd-server and etcd-client (registry discovery
# through a watched key prefix) and promtool from the prometheus package (checks the metrics
# exposition against Prometheus' own parser and naming rules), and chromium (scripts/check-html.sh
# opens every report in it headless and fails on console errors). Needs root (or sudo) for apt-get.
set -euo pipefail
need=()
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
echo "install-test-servers: installing ${need[*]} (Debian packages)" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# No daemons: the tests start their own servers on loopback ports, and stop them.
$sudo env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
