#!/usr/bin/env bash
# Makes sure redis-server (and redis-cli, redis-sentinel) are on PATH. The
# Redis-backed tests fail rather than skip without them, so say clearly what
# is missing. Installs Debian's packages when run as root.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-redis: installing redis-server from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server redis-sentinel redis-tools >/dev/null
  # The package starts a system service on :6379; the tests start their own
  # servers on free ports and do not need it.
  (service redis-server stop || true) >/dev/null 2>&1
  command -v redis-server >/dev/null && exit 0
fi
echo "ensure-redis: redis-server not found on PATH and could not be installed." >&2
echo "  Install it (Debian/Ubuntu: sudo apt-get install redis-server redis-sentinel redis-tools) and re-run." >&2
exit 1
