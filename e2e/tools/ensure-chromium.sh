#!/usr/bin/env bash
# Makes sure a Chromium the browser test can drive is on PATH (chromium or
# chromium-browser; CHROMIUM names another). The e2e browser test fails
# rather than skips without it, so say clearly what is missing. Installs
# Debian's package when run as root.
set -euo pipefail
if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null 2>&1; then
  exit 0
fi
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: installing chromium from Debian's packages (a few minutes)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq chromium >/dev/null
  command -v chromium >/dev/null && exit 0
fi
echo "ensure-chromium: chromium not found on PATH and could not be installed." >&2
echo "  Install it (Debian: sudo apt-get install chromium; Ubuntu: a chromium package or set CHROMIUM=/path/to/chrome) and re-run." >&2
exit 1
