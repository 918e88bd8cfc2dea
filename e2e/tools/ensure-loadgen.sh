#!/usr/bin/env bash
# Makes sure the HTTP load generators `make loadtest` drives Envoy with are
# on PATH: wrk (closed loop) and h2load (fixed rate, Debian's nghttp2-client).
# Installs Debian's packages when run as root; otherwise says what to
# install, since the load test cannot measure the Envoy path without them.
set -euo pipefail
if command -v wrk >/dev/null 2>&1 && command -v h2load >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-loadgen: installing wrk and nghttp2-client (h2load) from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq wrk nghttp2-client >/dev/null
  command -v wrk >/dev/null && command -v h2load >/dev/null && exit 0
fi
echo "ensure-loadgen: wrk or h2load not found on PATH and could not be installed." >&2
echo "  Install them (Debian/Ubuntu: sudo apt-get install wrk nghttp2-client) and re-run." >&2
exit 1
