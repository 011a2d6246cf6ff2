"""Traces shared by the investigation tests (compliance, store): the logs reaching a moment and
the web-shell folders a contract 1.5 probe lists, all there."""

from __future__ import annotations

from datetime import datetime

from collectors.demo import CANDIDATE_FOLDERS
from compliance.traces import LogReach
from compliance.triage import TRACE_LOGS
from tests.collectors.documents import PROTOCOL_FOLDERS

# HttpProxy's protocol folders the shipped advisory names (Test-ProxyLogon reports their age).
FOLDERS = PROTOCOL_FOLDERS
# The folders a 1.5 probe's web-shell search looked in, all there (a probe before 1.5 lists none,
# and is never clean: it skipped hidden files and the IIS root): the demo fleet's.
ROOT_FOLDERS = CANDIDATE_FOLDERS


def logs_at(oldest: datetime) -> tuple[LogReach, ...]:
    """Every log the checks read, reaching back to ``oldest``; HttpProxy per protocol folder
    (probe contract 1.4)."""
    return (*(LogReach("httpproxy", oldest, folder) for folder in FOLDERS),
            *(LogReach(name, oldest) for name in TRACE_LOGS if name != "httpproxy"))
