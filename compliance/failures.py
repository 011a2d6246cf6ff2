"""Why a collection produced no data, and what to do about it: one table for every front-end.

A ``Failure.reason`` is one of ``FailureReason`` (stored as its text). The collectors classify
(collectors/remote.py, collectors/probe.py), the demo fleet reuses the same hints, and the
evaluator turns the class into the verdict's ``Reason``: the network never answered
(``unreachable``), it answered but refused the account (``access_refused``), or the probe ran
and failed or said nothing readable (``probe_failed``). Each is ``unknown``, never patched.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from compliance.models import Reason


class FailureReason(StrEnum):
    DNS = "dns"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    ACCESS_DENIED = "access_denied"
    TIMEOUT = "timeout"
    PROBE_ERROR = "probe_error"
    BAD_OUTPUT = "bad_output"


HINTS: Mapping[str, str] = {  # keyed by FailureReason (text keys look up alike)
    FailureReason.DNS: "The name does not resolve: check the FQDN in AD or give winrm_url in "
                       "the inventory",
    FailureReason.CONNECT: "WinRM HTTPS listener missing or blocked: run `winrm quickconfig "
                           "-transport:https` on the server and open TCP 5986 from the collector",
    FailureReason.TLS: "The server's certificate is not trusted: set [winrm] ca_file to the "
                       "issuing CA, or fix the listener's certificate (name must match the FQDN)",
    FailureReason.AUTH: "The credentials were rejected: check [winrm] username and the password "
                        "in secrets ([winrm] password or PROXYLOGON_WINRM_PASSWORD)",
    FailureReason.ACCESS_DENIED: "The account may not use WinRM here: add it to the server's "
                                 "Remote Management Users group (read-only; see README, least "
                                 "privilege)",
    FailureReason.TIMEOUT: "No complete answer before the per-host deadline: check the server's "
                           "load, or raise [winrm] deadline_seconds",
    FailureReason.PROBE_ERROR: "The probe failed on the server: run collectors/probe.ps1 by hand "
                               "there and read its error output",
    FailureReason.BAD_OUTPUT: "The probe's output is not an exchange-probe/1 document: run "
                              "collectors/probe.ps1 by hand on the server and check its output",
}

# Worth another attempt within the host's deadline; nothing else is retried.
TRANSIENT = frozenset({FailureReason.CONNECT, FailureReason.TIMEOUT})

_VERDICT_REASONS = {
    FailureReason.AUTH: Reason.ACCESS_REFUSED, FailureReason.ACCESS_DENIED: Reason.ACCESS_REFUSED,
    FailureReason.PROBE_ERROR: Reason.PROBE_FAILED, FailureReason.BAD_OUTPUT: Reason.PROBE_FAILED,
}


def verdict_reason(reason: str) -> Reason:
    """The verdict's ``Reason`` for a failure class (text, as stored); a class this version
    does not know (a newer collector's) counts as unreachable."""
    try:
        return _VERDICT_REASONS.get(FailureReason(reason), Reason.UNREACHABLE)
    except ValueError:
        return Reason.UNREACHABLE
