#!/usr/bin/env bash
# Set up (first time) and start the dashboard on http://127.0.0.1:8501
# On a fresh clone it shows the demo fleet from the embedded SQLite store.
# Extra arguments go to `streamlit run`, e.g. ./run.sh --server.port 8600 (views/server.py is
# `streamlit run` after importing what every page needs, so no first view pays for it)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
setup_venv requirements.txt
exec .venv/bin/python -m views.server run app.py "$@"
