#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine (system packages when
# run as root, a venv, pinned Python packages), then lint, type-check and run every test.
# Extra arguments go to pytest, e.g. ./test.sh -k evaluate
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
setup_system_packages
setup_venv requirements.txt requirements-test.txt requirements-kerberos.txt
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
