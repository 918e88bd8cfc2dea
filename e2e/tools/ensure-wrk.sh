#!/usr/bin/env bash
# Makes sure wrk (the HTTP load generator `make loadtest` drives Envoy with)
# is on PATH. Installs Debian's package when run as root; otherwise says what
# to install, since the load test cannot measure the Envoy path without it.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-wrk: installing wrk from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq wrk >/dev/null
  command -v wrk >/dev/null && exit 0
fi
echo "ensure-wrk: wrk not found on PATH and could not be installed." >&2
echo "  Install it (Debian/Ubuntu: sudo apt-get install wrk) and re-run." >&2
exit 1
