#!/usr/bin/env bash
# Release step: audit every pinned dependency for known vulnerabilities with pip-audit.
# constraints.txt pins every package the runtime and the tests install, transitive ones too.
#
# It needs a vulnerability service: PyPI's JSON API (the default) or OSV (PIP_AUDIT_SERVICE=osv,
# optionally PIP_AUDIT_OSV_URL for a mirror). An unreachable service fails the step. --strict
# makes a package the service has no answer for fail it too: without it, where PyPI's JSON API
# is missing (as on the machines that run our tests), pip-audit skips every package and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pip-audit ] || { echo "run ./test.sh first (it installs pip-audit into .venv)" >&2; exit 2; }
args=(--requirement constraints.txt --no-deps --disable-pip --strict --progress-spinner off
      --vulnerability-service "${PIP_AUDIT_SERVICE:-pypi}")
if [ -n "${PIP_AUDIT_OSV_URL:-}" ]; then args+=(--osv-url "$PIP_AUDIT_OSV_URL"); fi
exec .venv/bin/pip-audit "${args[@]}" "$@"
