"""A WS-Management (WinRM) peer on loopback that the real ``pywinrm`` client can run PowerShell against.

``start_wsman(workdir, users=...)`` starts three listeners on 127.0.0.1 (threads of this process) and
returns a ``WsmanPeer``; ``peer.stop()`` closes them. ``python -m tests.peers.wsman --fleet FILE.json``
runs the same peer in a process of its own (see ``main``).

Listeners:

* ``https_port``   - TLS with a certificate for IP:127.0.0.1 / DNS:localhost from the throwaway CA in
  ``ca_file`` (tests/peers/tls.py). Accepts Basic (checked on every request) and NTLM (per TCP
  connection, channel binding checked when the client sends it - requests-ntlm does by default).
* ``http_port``    - plain HTTP. NTLM only, and only with pywinrm's message encryption
  (``message_encryption="always"``/``"auto"``); Basic, or an unencrypted SOAP body after NTLM, is
  answered 401 (as Windows does with AllowUnencrypted=false: pywinrm raises InvalidCredentialsError).
* ``bad_tls_port`` - like ``https_port`` but its certificate comes from an unrelated CA: a client
  trusting ``ca_file`` fails the handshake (requests.exceptions.SSLError).

Routing: the host is the URL path, ``/wsman/<host>`` (``url(host)`` builds it; ``/wsman`` alone is
``DEFAULT_HOST``). Names are matched case-insensitively (Windows host names are). Every path outside
``/wsman[/<host>]``, and every host never given a behaviour with ``set_host``, is answered **HTTP 404
with an empty body** after authentication (pywinrm raises ``WinRMTransportError``, "Bad HTTP response
returned from server. Code 404").

GOTCHA: ``winrm.Session(url, ...)`` rewrites its URL with ``Session._build_url``, which keeps only
scheme, host, port and ``/wsman`` - ``https://127.0.0.1:P/wsman/ex01`` becomes
``https://127.0.0.1:P/wsman`` and every such session lands on ``DEFAULT_HOST``. Use
``winrm.protocol.Protocol(url, ...)`` directly (it keeps the URL), or set
``session.protocol.transport.endpoint = url`` after building the Session.

Protocol (what pywinrm 0.5 sends and needs): SOAP 1.2 over POST, Create -> ShellId selector,
Command -> CommandId (the script is decoded from ``powershell -encodedcommand <base64 UTF-16-LE>``),
Send -> base64 rsp:Stream Name="stdin" for a command (``End="true"`` closes its standard input),
Receive -> base64 rsp:Stream stdout/stderr and rsp:CommandState .../Running or .../Done + ExitCode,
Signal and Delete -> a:RelatesTo = the request's MessageID. Faults are SOAP 1.2 faults with a
``f:WSManFault Code=...`` detail, HTTP 500.

Command-line limits, as Windows has them: WinRS runs a command through ``cmd.exe /c`` unless the
Command's ``WINRS_SKIP_CMD_SHELL`` option is TRUE, and cmd.exe refuses a command line longer than
8,191 characters (``CMD_LINE_LIMIT``): the command then "runs" and ends at once with stdout empty,
stderr "The command line is too long." and exit code 1. Without cmd.exe, CreateProcess refuses one
longer than 32,767 (``CREATE_PROCESS_LIMIT``), here the same way with "The filename or extension is
too long.". The length is that of Command and Arguments joined with a space, as WinRS joins them.
A refused command runs no script (``scripts()`` records none; ``commands()`` has its line).

Standard input: a Command whose decoded ``-EncodedCommand`` is exactly ``STDIN_BOOTSTRAP`` (the
collector's: read the whole of stdin, run it as a script block) runs the script it is sent on stdin,
decoded with the shell's code page (``WINRS_CODEPAGE`` of the Create, 437 by default, as the
console's input encoding would): it starts when stdin is closed (``End="true"``), which is when
``scripts()`` records it and ``expected_script`` is checked (a mismatch answers that Send with a
fault). Until then each Receive is held for the OperationTimeout and answered with that fault, as
Windows does for a process blocked reading its input. The behaviour's ``runtime`` counts from then.

NTLM: the server side is pyspnego's pure-Python NTLM acceptor, which reads its users from the file
named by the ``NTLM_USER_FILE`` environment variable when each handshake completes. That variable is
process-wide: this module points it at one file (in a private temp dir) holding the users of every
peer running in the process, and each peer then checks that the authenticated user is one of its own.
Two peers in one process giving the same user different passwords is not supported.

Kerberos (``start_wsman(..., keytab=...)``, needs ``gssapi``): a ``Negotiate`` token that is not NTLM is
accepted with python-gssapi from that keytab (``_KerberosAcceptor``: any service principal it holds, e.g.
``HTTP/localhost@PROBE.TEST``; a client connecting to ``localhost`` asks for exactly that), with channel
binding on HTTPS. Like NTLM it authenticates the TCP connection. The answer that completes it carries the
AP-REP as ``WWW-Authenticate: Negotiate <base64>`` (pywinrm requires mutual authentication), and encrypted
bodies are sealed as pywinrm's Kerberos message encryption expects, over HTTP and HTTPS alike. A token the
acceptor refuses (clock skew, a ticket for a key the keytab no longer holds) is answered 401 with the
KRB-ERROR token MIT's acceptor made, as Windows answers, and its message is kept in ``auth_failures()``.
``allow_ntlm=False`` answers every NTLM token 401, as a server whose NTLM is disabled by policy.
Clock: every answer's ``Date`` header is this process's clock; run the peer as a process of its own
under libfaketime (``start_fleet_process(..., env=faketime_env(-3600))``) for a host whose clock is off.

Each listener answers each TCP connection on its own daemon thread, with TCP_NODELAY (without it
every call waits ~40-200 ms for delayed ACKs) and HTTP/1.1 keep-alive (NTLM authenticates the
connection, not the request).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import binascii
import codecs
import contextlib
import ctypes
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import quote, unquote, urlsplit

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from spnego.channel_bindings import GssChannelBindings

from tests.peers.kdc import FAKETIME_LIBRARY
from tests.peers.tls import make_tls_files

HOST = "127.0.0.1"
DEFAULT_HOST = "default"
DEFAULT_USERS: dict[str, str] = {"TEST\\svc-probe": "Probe-Read-0nly!"}
STALL_SECONDS = 600.0
OPERATION_TIMEOUT_CODE = 2150858793
ACCESS_DENIED_CODE = 5
GENERIC_FAULT_CODE = 2150858843  # "the shell was not found or has been closed"-style server fault
RESET_ACTIONS = ("Create", "Command", "Send", "Receive")
STALL_ACTIONS = RESET_ACTIONS
# cmd.exe's longest command line (WinRS runs commands through it unless WINRS_SKIP_CMD_SHELL).
CMD_LINE_LIMIT = 8191
CMD_LINE_TOO_LONG = b"The command line is too long.\r\n"
# CreateProcess's longest command line (lpCommandLine), when cmd.exe is skipped.
CREATE_PROCESS_LIMIT = 32767
CREATE_PROCESS_TOO_LONG = b"The filename or extension is too long.\r\n"
# The collector's stdin bootstrap (collectors/remote.py): a peer cannot run PowerShell, so it
# recognises this exact text and does what PowerShell would, run the script read from stdin.
STDIN_BOOTSTRAP = "$stdinScript = $input | Out-String\n& ([scriptblock]::Create($stdinScript))\n"
# What Windows holds a Receive for when the request names no OperationTimeout (MaxTimeoutms).
DEFAULT_OPERATION_TIMEOUT = 60.0

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDR = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
STATE_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"

SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
ENCRYPTED_PROTOCOL = b"application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = (
    'multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";boundary="Encrypted Boundary"'
)
MIME_BOUNDARY = b"--Encrypted Boundary"
NTLM_SIGNATURE_LENGTH = 16


# --------------------------------------------------------------------------------------------------
# Behaviour of one simulated Exchange server


@dataclass
class HostBehavior:
    """What one simulated host does when a client runs a command on it.

    * ``stdout`` / ``stderr``: what the command prints (str is sent UTF-8 encoded; bytes as they are).
    * ``exit_code``: the command's exit code (rsp:ExitCode).
    * ``latency``: seconds to wait before answering the first Receive that carries output (once per
      command, after any ``operation_timeouts``): a slow server.
    * ``runtime``: the command runs this many seconds from its Command (the stdin bootstrap: from the
      end of its stdin), as a real probe does. Until
      then each Receive is held, as Windows holds it, for at most the request's OperationTimeout
      (``w:OperationTimeout``, e.g. ``PT20S``) and then answered with the OperationTimeout fault,
      so the client asks again; the Receive that sees the command finish answers at once.
    * ``chunks``: stdout is split over this many Receive answers; all but the last say
      CommandState/Running, so the client must ask again. stderr and the exit code come with the last.
    * ``operation_timeouts``: answer the first N Receive requests of each command with the WSMan
      OperationTimeout fault (code 2150858793, HTTP 500), which pywinrm retries silently and forever
      (use e.g. 10**9 for "never finishes"), each after ``operation_timeout_delay`` seconds.
    * ``stall``: never answer: hold the connection until the peer stops (or 10 minutes). ``True``
      means on Receive, or name the action: "Create", "Command", "Send" or "Receive".
    * ``http_status``: answer every request, before authentication, with this status and an empty
      body (401 -> InvalidCredentialsError, 403/503 -> WinRMTransportError).
    * ``fault``: answer Create with a SOAP fault (HTTP 500): ``"access_denied"`` is Windows'
      "Access is denied." (WSManFault Code 5, subcode w:AccessDenied), ``"generic"`` another fault.
    * ``reset``: drop the TCP connection abruptly (RST) instead of answering - the server died
      mid-request (requests.exceptions.ConnectionError). ``True`` means on Receive, or name the
      action: "Create", "Command", "Send" or "Receive".
    * ``truncate``: on Receive, send the headers and half of the body, then close the connection
      (requests.exceptions.ChunkedEncodingError, which is NOT a ConnectionError).
    * ``trickle``: on Receive, send the whole answer (status line, headers, body) one byte every
      ``trickle`` seconds, slowloris-style: each read the client makes succeeds well within its
      read timeout, yet the answer takes thousands of seconds to complete.
    """

    stdout: str | bytes = ""
    stderr: str | bytes = ""
    exit_code: int = 0
    latency: float = 0.0
    runtime: float = 0.0
    chunks: int = 1
    operation_timeouts: int = 0
    operation_timeout_delay: float = 0.0
    stall: bool | str = False
    http_status: int | None = None
    fault: str | None = None
    reset: bool | str = False
    truncate: bool = False
    trickle: float = 0.0

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError("chunks must be >= 1")
        if self.trickle < 0:
            raise ValueError("trickle must be >= 0 (seconds per byte)")
        if self.runtime < 0:
            raise ValueError("runtime must be >= 0 (seconds)")
        if self.fault not in (None, "access_denied", "generic"):
            raise ValueError(f"fault must be None, 'access_denied' or 'generic', not {self.fault!r}")
        if isinstance(self.reset, str) and self.reset not in RESET_ACTIONS:
            raise ValueError(f"reset must be a bool or one of {RESET_ACTIONS}, not {self.reset!r}")
        if isinstance(self.stall, str) and self.stall not in STALL_ACTIONS:
            raise ValueError(f"stall must be a bool or one of {STALL_ACTIONS}, not {self.stall!r}")

    @property
    def reset_action(self) -> str | None:
        if self.reset is True:
            return "Receive"
        return self.reset or None

    @property
    def stall_action(self) -> str | None:
        if self.stall is True:
            return "Receive"
        return self.stall or None

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> HostBehavior:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown HostBehavior field(s): {sorted(unknown)}")
        return cls(**fields)


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8")


def decode_command_line(command: str) -> str | None:
    """The PowerShell script in ``powershell -encodedcommand <base64 UTF-16-LE>`` (any case, any
    abbreviation PowerShell accepts: -e, -ec, -enc, ..., also with ``/``), or None."""
    tokens = command.split()
    for index, token in enumerate(tokens[:-1]):
        if token[:1] not in ("-", "/"):
            continue
        name = token[1:].lower()
        if name == "ec" or (name and "encodedcommand".startswith(name)):
            try:
                return base64.b64decode(tokens[index + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


# --------------------------------------------------------------------------------------------------
# SOAP messages


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        '<s:Envelope xml:lang="en-US" '
        f'xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDR}" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        f'xmlns:w="{NS_WSMAN}" xmlns:rsp="{NS_SHELL}" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
        "<s:Header>"
        f"<a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{_xml_text(relates_to)}</a:RelatesTo>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _fault(relates_to: str, *, code: str, subcode: str, reason: str, wsman_code: int) -> bytes:
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{_xml_text(reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="{NS_FAULT}" Code="{wsman_code}" Machine="{HOST}">'
        f"<f:Message>{_xml_text(reason)}</f:Message></f:WSManFault></s:Detail>"
        "</s:Fault>"
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


def operation_timeout_fault(relates_to: str) -> bytes:
    return _fault(relates_to, code="s:Receiver", subcode="w:TimedOut", wsman_code=OPERATION_TIMEOUT_CODE,
                  reason="The WS-Management service cannot complete the operation within the time "
                         "specified in OperationTimeout.  ")


def access_denied_fault(relates_to: str) -> bytes:
    return _fault(relates_to, code="s:Sender", subcode="w:AccessDenied", wsman_code=ACCESS_DENIED_CODE,
                  reason="Access is denied. ")


def generic_fault(relates_to: str, reason: str = "The WS-Management service cannot process the request. "
                  "The maximum number of concurrent shells for this user has been exceeded.  ") -> bytes:
    return _fault(relates_to, code="s:Receiver", subcode="w:InternalError", wsman_code=GENERIC_FAULT_CODE,
                  reason=reason)


def _create_response(relates_to: str, shell_id: str, address: str) -> bytes:
    body = (
        "<x:ResourceCreated>"
        f"<a:Address>{_xml_text(address)}</a:Address>"
        "<a:ReferenceParameters>"
        f"<w:ResourceURI>{SHELL_URI}</w:ResourceURI>"
        f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
        "</a:ReferenceParameters>"
        "</x:ResourceCreated>"
        f'<rsp:Shell xmlns:rsp="{NS_SHELL}"><rsp:ShellId>{shell_id}</rsp:ShellId>'
        f"<rsp:ResourceUri>{SHELL_URI}</rsp:ResourceUri><rsp:Owner>peer</rsp:Owner>"
        "<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
        "</rsp:Shell>"
    )
    return _envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse", relates_to, body)


def _command_response(relates_to: str, command_id: str) -> bytes:
    body = f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"
    return _envelope(f"{NS_SHELL}/CommandResponse", relates_to, body)


def _receive_response(relates_to: str, command_id: str, stdout: bytes, stderr: bytes, done: bool,
                      exit_code: int) -> bytes:
    def stream(name: str, data: bytes, end: bool) -> str:
        end_attr = ' End="true"' if end else ""
        return (f'<rsp:Stream Name="{name}" CommandId="{command_id}"{end_attr}>'
                f"{base64.b64encode(data).decode('ascii')}</rsp:Stream>")

    parts = []
    if stdout:
        parts.append(stream("stdout", stdout, False))
    if done:
        if stderr:
            parts.append(stream("stderr", stderr, False))
        parts.append(stream("stdout", b"", True))
        parts.append(stream("stderr", b"", True))
        state = (f'<rsp:CommandState CommandId="{command_id}" State="{STATE_DONE}">'
                 f"<rsp:ExitCode>{int(exit_code)}</rsp:ExitCode></rsp:CommandState>")
    else:
        state = f'<rsp:CommandState CommandId="{command_id}" State="{STATE_RUNNING}"/>'
    body = f"<rsp:ReceiveResponse>{''.join(parts)}{state}</rsp:ReceiveResponse>"
    return _envelope(f"{NS_SHELL}/ReceiveResponse", relates_to, body)


def _signal_response(relates_to: str) -> bytes:
    return _envelope(f"{NS_SHELL}/SignalResponse", relates_to, "<rsp:SignalResponse/>")


def _send_response(relates_to: str) -> bytes:
    return _envelope(f"{NS_SHELL}/SendResponse", relates_to, "<rsp:SendResponse/>")


def _delete_response(relates_to: str) -> bytes:
    return _envelope("http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse", relates_to, "")


@dataclass
class _Request:
    action: str  # last segment of the a:Action URI: Create, Command, Receive, Signal, Delete, ...
    message_id: str
    shell_id: str | None
    command_id: str | None
    command_line: str | None
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    options: dict[str, str] = field(default_factory=dict)  # w:OptionSet, by upper-case name
    stdin: bytes | None = None  # Send: the decoded rsp:Stream Name="stdin"
    stdin_end: bool = False  # Send: End="true" closes the command's stdin


def _duration(text: str | None) -> float | None:
    """Seconds in an xs:duration of the form WS-Man clients send (``PT20S``, ``PT0.5S``)."""
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", (text or "").strip())
    return float(match.group(1)) if match else None


def _parse_request(body: bytes) -> _Request:
    root = ET.fromstring(body)
    action_uri = (root.findtext(f".//{{{NS_ADDR}}}Action") or "").strip()
    message_id = (root.findtext(f".//{{{NS_ADDR}}}MessageID") or "").strip()
    shell_id = None
    for selector in root.iter(f"{{{NS_WSMAN}}}Selector"):
        if selector.get("Name") == "ShellId":
            shell_id = (selector.text or "").strip()
    command_id = None
    for tag in ("DesiredStream", "Signal", "Send"):
        node = root.find(f".//{{{NS_SHELL}}}{tag}")
        if node is not None and node.get("CommandId"):
            command_id = node.get("CommandId")
    stdin, stdin_end = None, False
    stream = root.find(f".//{{{NS_SHELL}}}Send/{{{NS_SHELL}}}Stream")
    if stream is not None and stream.get("Name") == "stdin":
        command_id = stream.get("CommandId") or command_id
        stdin = base64.b64decode((stream.text or "").strip(), validate=True)
        stdin_end = (stream.get("End") or "").lower() == "true"
    options = {(option.get("Name") or "").upper(): (option.text or "").strip()
               for option in root.iter(f"{{{NS_WSMAN}}}Option")}
    command_line = None
    command = root.find(f".//{{{NS_SHELL}}}CommandLine")
    if command is not None:
        pieces = [(command.findtext(f"{{{NS_SHELL}}}Command") or "").strip()]
        pieces += [(arg.text or "").strip() for arg in command.findall(f"{{{NS_SHELL}}}Arguments")]
        command_line = " ".join(piece for piece in pieces if piece)
    timeout = _duration(root.findtext(f".//{{{NS_WSMAN}}}OperationTimeout"))
    return _Request(action=action_uri.rsplit("/", 1)[-1], message_id=message_id, shell_id=shell_id,
                    command_id=command_id, command_line=command_line,
                    operation_timeout=DEFAULT_OPERATION_TIMEOUT if timeout is None else timeout,
                    options=options, stdin=stdin, stdin_end=stdin_end)


# --------------------------------------------------------------------------------------------------
# pywinrm's message encryption (MS-WSMV 2.2.9.1.1, framing as in winrm/encryption.py)


class _Sealer(Protocol):
    """An established security context that seals WinRM messages: pyspnego's NTLM context, or
    ``_KerberosAcceptor``. ``wrap_winrm`` gives an object with ``header`` (the signature: 16 bytes
    for NTLM, the GSS wrap token header for Kerberos) and ``data`` (the sealed message)."""

    def wrap_winrm(self, data: bytes) -> Any: ...

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes: ...


def decrypt_message(context: _Sealer, body: bytes) -> bytes:
    """The SOAP text inside a multipart/encrypted body, unsealed with ``context`` (NTLM or Kerberos:
    each part is ``<signature length, 4 bytes LE><signature><sealed data>``)."""
    parts = [part for part in body.split(MIME_BOUNDARY + b"\r\n") if part]
    message = b""
    for index in range(0, len(parts) - 1, 2):
        header, payload = parts[index], parts[index + 1]
        expected_length = int(header.split(b"Length=")[1].split(b"\r\n")[0].strip())
        end = MIME_BOUNDARY + b"--\r\n"
        if payload.endswith(end):
            payload = payload[: -len(end)]
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        signature_length = struct.unpack("<i", payload[:4])[0]
        signature = payload[4 : 4 + signature_length]
        sealed = payload[4 + signature_length :]
        plain = context.unwrap_winrm(signature, sealed)
        if len(plain) != expected_length:
            raise ValueError("encrypted length does not match OriginalContent Length")
        message += plain
    return message


def encrypt_message(context: _Sealer, message: bytes) -> bytes:
    wrapped = context.wrap_winrm(message)
    signature, sealed = bytes(wrapped.header), bytes(wrapped.data)
    return (
        MIME_BOUNDARY + b"\r\n"
        b"\tContent-Type: " + ENCRYPTED_PROTOCOL + b"\r\n"
        b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=" + str(len(message)).encode() + b"\r\n"
        + MIME_BOUNDARY + b"\r\n"
        b"\tContent-Type: application/octet-stream\r\n"
        + struct.pack("<i", len(signature)) + signature + sealed
        + MIME_BOUNDARY + b"--\r\n"
    )


# --------------------------------------------------------------------------------------------------
# Kerberos: the acceptor, with python-gssapi and the peer's own keytab


class KerberosRefused(Exception):
    """The acceptor refused a Kerberos token. ``token``: the KRB-ERROR token MIT's acceptor made for
    the client (``None`` when it made none), sent back in the 401's ``WWW-Authenticate`` as Windows
    does; ``str()``: the acceptor's message (e.g. "... kvno 2 not found in keytab ...")."""

    def __init__(self, message: str, token: bytes | None) -> None:
        super().__init__(message)
        self.token = token


@dataclass(frozen=True)
class _Wrapped:
    header: bytes
    data: bytes


class _KerberosAcceptor:
    """One Kerberos handshake (a raw krb5 token, as pykerberos sends, or SPNEGO wrapping krb5),
    accepted with python-gssapi from ``keytab`` for any service principal it holds.

    Why not ``spnego.server(protocol="kerberos")``: pyspnego's Kerberos needs the ``krb5`` package
    as well as ``gssapi`` (neither requirements file has it); and its acceptor takes the keytab from
    ``KRB5_KTNAME``, process-wide, where python-gssapi's credential store takes it per peer (no
    environment: peers with different keytabs can share a process). The replay cache lives in the
    peer's own folder. The keytab is read at each handshake, so a test may change it meanwhile.
    """

    def __init__(self, keytab: Path, rcache: Path, cert_hash: bytes | None) -> None:
        import gssapi  # only a Kerberos peer needs it (requirements-kerberos.txt)
        from gssapi.raw import ChannelBindings

        credentials = gssapi.Credentials(usage="accept", store={
            "keytab": f"FILE:{keytab}", "rcache": f"file2:{rcache}"})
        bindings = None
        if cert_hash is not None:  # HTTPS: the client's bindings must match ours (RFC 5929)
            bindings = ChannelBindings(application_data=b"tls-server-end-point:" + cert_hash)
        self._context = gssapi.SecurityContext(creds=credentials, usage="accept", channel_bindings=bindings)

    def step(self, token: bytes) -> bytes | None:
        """The answer token (the AP-REP once complete); ``KerberosRefused`` when refused."""
        from gssapi.raw import GSSError

        try:
            answer: bytes | None = self._context.step(token)
            _ = self._context.complete  # python-gssapi reports some failures only when asked
        except GSSError as error:
            raise KerberosRefused(" ".join(error.gen_message().split()), getattr(error, "token", None)) from None
        return answer

    @property
    def complete(self) -> bool:
        return bool(self._context.complete)

    @property
    def client_principal(self) -> str:
        return str(self._context.initiator_name).rstrip("\x00")

    def wrap_winrm(self, data: bytes) -> _Wrapped:
        """Seal ``data`` as pywinrm's ``authGSSWinRMDecryptMessage`` expects: IOV header + data (+ padding,
        none with AES)."""
        from gssapi.raw import IOV, IOVBufferType, wrap_iov

        iov = IOV((IOVBufferType.header, True, None), (IOVBufferType.data, False, data),
                  (IOVBufferType.padding, True, None), std_layout=False)
        wrap_iov(self._context, iov, confidential=True)
        return _Wrapped(header=iov[0].value or b"", data=(iov[1].value or b"") + (iov[2].value or b""))

    def unwrap_winrm(self, header: bytes, data: bytes) -> bytes:
        """Unseal what pykerberos's ``authGSSWinRMEncryptMessage`` made (as pyspnego does with MIT)."""
        from gssapi.raw import IOV, IOVBufferType, unwrap_iov

        iov = IOV((IOVBufferType.header, False, header), (IOVBufferType.data, False, data),
                  (IOVBufferType.data, False, b""), std_layout=False)
        unwrap_iov(self._context, iov)
        return iov[1].value or b""


def _is_ntlm(token: bytes) -> bool:
    """An NTLM message: raw (requests-ntlm sends them so) or inside SPNEGO. Every NTLM message starts
    with this signature; a Kerberos token is DER and ciphertext, where it does not occur."""
    return b"NTLMSSP\x00" in token


# --------------------------------------------------------------------------------------------------
# NTLM users: one process-wide file for pyspnego's acceptor


_USERS_LOCK = threading.Lock()
_USERS_DIR: Path | None = None
_ACTIVE_USERS: dict[int, dict[str, str]] = {}


def _ntlm_line(username: str, password: str) -> str:
    if ":" in username or ":" in password or "\n" in username + password:
        raise ValueError("NTLM_USER_FILE lines are DOMAIN:USER:PASSWORD: no ':' or newline in users or passwords")
    domain, _, user = username.rpartition("\\")
    return f"{domain}:{user}:{password}"


def _remove_users_dir() -> None:
    if _USERS_DIR is not None:
        shutil.rmtree(_USERS_DIR, ignore_errors=True)


def _publish_users(peer_key: int, users: dict[str, str] | None) -> None:
    """Add (or with None remove) one peer's users and rewrite the file NTLM_USER_FILE names."""
    global _USERS_DIR
    with _USERS_LOCK:
        if users is None:
            _ACTIVE_USERS.pop(peer_key, None)
        else:
            _ACTIVE_USERS[peer_key] = users
        if _USERS_DIR is None:
            _USERS_DIR = Path(tempfile.mkdtemp(prefix="wsman-ntlm-"))
            atexit.register(_remove_users_dir)
        lines = [_ntlm_line(user, password) for active in _ACTIVE_USERS.values() for user, password in active.items()]
        path = _USERS_DIR / "ntlm-users"
        temp = _USERS_DIR / "ntlm-users.new"
        temp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        temp.chmod(0o600)
        temp.replace(path)  # atomic: a handshake in progress never reads a half-written file
        os.environ["NTLM_USER_FILE"] = str(path)


def _certificate_hash(cert_file: Path) -> bytes:
    """RFC 5929 tls-server-end-point hash of the server certificate (as requests-ntlm computes it)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(Encoding.DER))
    return digest.finalize()


# --------------------------------------------------------------------------------------------------
# Records and per-command state


@dataclass
class _HostRecord:
    behavior: HostBehavior | None = None
    scripts: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    options: list[dict[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Command:
    host: str
    shell_id: str
    behavior: HostBehavior
    receives: int = 0
    timeouts_sent: int = 0
    latency_done: bool = False
    parts_sent: int = 0
    started: float = field(default_factory=time.monotonic)
    refused: bytes | None = None  # the command line was too long: this on stderr, exit code 1
    reads_stdin: bool = False  # the stdin bootstrap: runs the script sent on stdin once it ends
    codepage: str = "437"  # the shell's, for decoding stdin
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False


class _Stall(Exception):
    pass


class _Reset(Exception):
    pass


class _Truncate(Exception):
    def __init__(self, status: int, answer: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer


class _Trickle(Exception):
    def __init__(self, status: int, answer: bytes, seconds_per_byte: float) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer
        self.seconds_per_byte = seconds_per_byte


# --------------------------------------------------------------------------------------------------
# HTTP side


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for stalled or kept-alive connections
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, peer: WsmanPeer, kind: str, tls: ssl.SSLContext | None, cert_hash: bytes | None) -> None:
        self.peer = peer
        self.kind = kind  # "https", "http" or "bad_tls"
        self.tls = tls
        self.cert_hash = cert_hash
        super().__init__((HOST, 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn (a reverse lookup): skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # clients that hang up, refuse the certificate (bad_tls_port), or were reset
        self.peer._note_error(f"{self.kind} {client_address}: {error!r}")
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        sock = cast(socket.socket, self.request)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ntlm: spnego.ContextProxy | None = None  # NTLM context of this connection (handshake in progress or done)
        self.kerberos: _KerberosAcceptor | None = None  # Kerberos handshake in progress (SPNEGO may take two legs)
        self.user: str | None = None  # set once the connection is authenticated (NTLM or Kerberos)
        self.sealer: _Sealer | None = None  # the authenticated context: seals and unseals encrypted bodies
        self.mutual_token: str | None = None  # Kerberos AP-REP, sent on the next answer (then None)
        self.peer = self.server.peer
        if self.server.tls is not None:
            sock.settimeout(30)  # bound the handshake only
            self.request = self.server.tls.wrap_socket(sock, server_side=True)
            self.request.settimeout(None)
        self.peer._track(self.request, True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.peer._track(self.request, False)
            if self.server.tls is not None:
                with contextlib.suppress(OSError):
                    self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- plumbing

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
              *, encrypt: bool = False) -> None:
        content_type = SOAP_CONTENT_TYPE
        if encrypt and body and self.sealer is not None:
            body = encrypt_message(self.sealer, body)
            content_type = ENCRYPTED_CONTENT_TYPE
        self.send_response(status)  # with a Date header from this process's clock (faketime: skewed)
        if body:
            self.send_header("Content-Type", content_type)
        if self.mutual_token is not None:
            # The answer that completes Kerberos carries the AP-REP, on any status: pywinrm
            # (requests-kerberos, mutual authentication REQUIRED) refuses a 200 without it.
            self.send_header("WWW-Authenticate", f"Negotiate {self.mutual_token}")
            self.mutual_token = None
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _challenge(self, token: str | None = None, scheme: str = "Negotiate") -> None:
        """401 offering Negotiate (and Basic over TLS), or carrying the NTLM challenge ``token``."""
        self.send_response(401)
        if token is not None:
            self.send_header("WWW-Authenticate", f"{scheme} {token}")
        else:
            self.send_header("WWW-Authenticate", "Negotiate")
            if self.server.kind != "http":
                self.send_header("WWW-Authenticate", 'Basic realm="WSMAN"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _reset(self) -> None:
        """Close the connection with a TCP RST instead of answering."""
        sock = cast(socket.socket, self.request)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # drop makefile's reference so close() really closes the descriptor
        with contextlib.suppress(OSError):
            sock.close()
        self.close_connection = True

    def _truncate(self, partial: bytes) -> None:
        """Write ``partial`` and end the connection there (FIN, no TLS close_notify): the client
        reads a response shorter than its Content-Length. (An RST right after the write could
        overtake the data and turn this into a plain reset.)"""
        self.wfile.write(partial)
        self.wfile.flush()
        sock = cast(socket.socket, self.request)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_WR)
        self.rfile.close()
        with contextlib.suppress(OSError):
            sock.close()
        self.close_connection = True

    def _trickle(self, data: bytes, seconds_per_byte: float) -> None:
        """Write ``data`` one byte at a time, ``seconds_per_byte`` apart (until the peer stops)."""
        for index in range(len(data)):
            if self.peer._stopping.wait(seconds_per_byte):
                self.close_connection = True
                return
            self.wfile.write(data[index:index + 1])  # OSError once the client hung up: ends here

    # ---- requests

    def do_GET(self) -> None:
        self._send(405, headers={"Allow": "POST"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400)
            return
        body = self.rfile.read(length) if length else b""
        host = self.peer._route(self.path)

        behavior = self.peer._behavior(host) if host is not None else None
        if behavior is not None and behavior.http_status is not None:
            self._send(behavior.http_status)
            return

        if not self._authenticate():
            return

        encrypted = self.headers.get("Content-Type", "").lower().startswith("multipart/encrypted")
        if encrypted:
            if self.sealer is None or self.user is None:
                self._challenge()
                return
            try:
                body = decrypt_message(self.sealer, body)
            except Exception as error:  # tampered/undecryptable: Windows answers 400
                self.peer._note_error(f"decrypt: {error!r}")
                self._send(400)
                return
        elif body and self.server.kind == "http":
            self._challenge()  # AllowUnencrypted=false: Windows refuses with 401
            return

        if not body:  # pywinrm's setup_encryption sends an empty POST to authenticate the connection
            self._send(200)
            return
        if host is None or behavior is None:
            self._send(404)
            return

        try:
            status, answer = self.peer._handle_soap(host, body, self._address())
        except _Stall:
            self.close_connection = True
            return
        except _Reset:
            self._reset()
            return
        except _Truncate as truncate:
            if encrypted and self.sealer is not None:
                truncate.answer = encrypt_message(self.sealer, truncate.answer)
            self._truncate(b"HTTP/1.1 %d \r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                truncate.status, (ENCRYPTED_CONTENT_TYPE if encrypted else SOAP_CONTENT_TYPE).encode(),
                len(truncate.answer), truncate.answer[: len(truncate.answer) // 2]))
            return
        except _Trickle as trickle:
            answer = trickle.answer
            if encrypted and self.sealer is not None:
                answer = encrypt_message(self.sealer, answer)
            self._trickle(b"HTTP/1.1 %d \r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
                trickle.status, (ENCRYPTED_CONTENT_TYPE if encrypted else SOAP_CONTENT_TYPE).encode(),
                len(answer), answer), trickle.seconds_per_byte)
            return
        self._send(status, answer, encrypt=encrypted)

    def _address(self) -> str:
        scheme = "http" if self.server.kind == "http" else "https"
        return f"{scheme}://{HOST}:{self.server.server_address[1]}{urlsplit(self.path).path}"

    def _authenticate(self) -> bool:
        """True when the request may proceed; otherwise the 401 has been sent."""
        authorization = self.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        scheme_lower = scheme.lower()
        if scheme_lower == "basic":
            if self.server.kind == "http":
                self._challenge()  # Basic over plain HTTP is refused
                return False
            try:
                user, _, password = base64.b64decode(token.strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                self._challenge()
                return False
            if self.peer._check_password(user, password):
                return True
            self._challenge()
            return False
        if scheme_lower in ("negotiate", "ntlm", "kerberos"):
            try:
                raw = base64.b64decode(token.strip(), validate=True)
            except binascii.Error:
                raw = b""
            if raw and not _is_ntlm(raw) and self.peer.keytab is not None:
                return self._kerberos_step(raw)
            if not self.peer.allow_ntlm:
                self._refuse("NTLM is disabled on this peer")
                return False
            return self._ntlm_step(scheme, token.strip())
        if self.user is not None:
            return True
        self._challenge()
        return False

    def _refuse(self, why: str, token: bytes | None = None) -> None:
        """401 for a refused token, recorded in ``peer.auth_failures()``; with the acceptor's KRB-ERROR
        token in ``WWW-Authenticate`` when it made one (as Windows sends it)."""
        self.peer._note_auth_failure(why)
        self.ntlm = self.kerberos = None
        self.user = self.sealer = None
        self._challenge(base64.b64encode(token).decode("ascii") if token else None)

    def _ntlm_step(self, scheme: str, token: str) -> bool:
        if self.ntlm is None or self.user is not None or self.ntlm.complete:
            bindings = None
            if self.server.cert_hash is not None:
                bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + self.server.cert_hash)
            self.ntlm = spnego.server(protocol="ntlm", channel_bindings=bindings,
                                      options=spnego.NegotiateOptions.use_ntlm)
            self.user = self.sealer = None
        try:
            answer = self.ntlm.step(base64.b64decode(token))
        except Exception:  # wrong password, unknown user, bad channel binding, garbage token
            self.ntlm = None
            self._send(401)
            return False
        if not self.ntlm.complete:
            self._challenge(base64.b64encode(answer or b"").decode("ascii"), scheme)
            return False
        user = self.ntlm.client_principal
        if user is None or not self.peer._knows_user(user):
            self.ntlm = None
            self._send(401)
            return False
        self.user, self.sealer = user, self.ntlm
        return True

    def _kerberos_step(self, token: bytes) -> bool:
        """Accept a Kerberos token (a new handshake, or SPNEGO's next leg) with the peer's keytab.
        Complete: the connection is authenticated, and the AP-REP goes back on this request's answer."""
        keytab = self.peer.keytab
        assert keytab is not None
        if self.kerberos is None or self.kerberos.complete:
            try:
                self.kerberos = _KerberosAcceptor(keytab, self.peer.workdir / "krb5.rcache2", self.server.cert_hash)
            except Exception as error:  # unreadable keytab
                self._refuse(f"Kerberos acceptor: {error}")
                return False
            self.user = self.sealer = None
        try:
            answer = self.kerberos.step(token)
        except KerberosRefused as refused:
            self._refuse(f"Kerberos: {refused}", refused.token)
            return False
        encoded = base64.b64encode(answer).decode("ascii") if answer else None
        if not self.kerberos.complete:
            self._challenge(encoded)
            return False
        user = self.kerberos.client_principal
        if not self.peer._accepts_principal(user):
            self._refuse(f"Kerberos: {user} is not one of this peer's principals")
            return False
        # Without the AP-REP (``peer.mutual_token = False``) the client cannot tell this peer holds the key.
        self.user, self.sealer = user, self.kerberos
        self.mutual_token = encoded if self.peer.mutual_token else None
        return True


# --------------------------------------------------------------------------------------------------
# The peer


class WsmanPeer:
    """A running WS-Management peer (see the module docstring). Thread-safe."""

    def __init__(self, workdir: Path, users: dict[str, str], keytab: Path | None = None, allow_ntlm: bool = True,
                 principals: Collection[str] | None = None) -> None:
        self.workdir = workdir
        self.users = dict(users)
        self.keytab = keytab  # Kerberos accepted for every service principal it holds (None: no Kerberos)
        self.allow_ntlm = allow_ntlm  # False: NTLM tokens (raw or in SPNEGO) are answered 401
        self.principals = None if principals is None else {p.casefold() for p in principals}
        self.mutual_token = True  # False: never send Kerberos's AP-REP (a server that cannot prove who it is)
        self._auth_failures: list[str] = []
        self.username, self.password = next(iter(self.users.items()))
        self.expected_script: str | None = None
        self._lock = threading.Lock()
        self._hosts: dict[str, _HostRecord] = {}
        self._commands: dict[str, _Command] = {}
        self._shells: dict[str, str] = {}
        self._codepages: dict[str, str] = {}  # shell id -> its WINRS_CODEPAGE
        self._interned: dict[str, str] = {}
        self._errors: list[str] = []
        self._connections: set[Any] = set()
        self._stopping = threading.Event()
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        self.ca_file: Path
        self.https_port = self.http_port = self.bad_tls_port = 0

    # ---- lifecycle

    def _start(self) -> None:
        tls = make_tls_files(self.workdir / "tls")
        other = make_tls_files(self.workdir / "tls-unrelated")  # its server.pem is signed by another CA
        self.ca_file = tls.ca_file
        self.other_ca_file = other.ca_file
        _publish_users(id(self), self.users)
        good = _server_context(tls.cert_file, tls.key_file)
        bad = _server_context(other.cert_file, other.key_file)
        https = _Server(self, "https", good, _certificate_hash(tls.cert_file))
        http = _Server(self, "http", None, None)
        bad_tls = _Server(self, "bad_tls", bad, _certificate_hash(other.cert_file))
        self._servers = [https, http, bad_tls]
        self.https_port, self.http_port, self.bad_tls_port = (int(s.server_address[1]) for s in self._servers)
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                      name=f"wsman-{server.kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop listening, wake stalled requests, close every connection (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                # the plain socket's shutdown, also for an SSLSocket (whose own shutdown() would drop
                # its SSL object under the thread reading from it): the reader sees EOF and exits
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        _publish_users(id(self), None)

    def __enter__(self) -> WsmanPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ---- test-facing API

    def url(self, host: str = DEFAULT_HOST, scheme: str = "https", bad_tls: bool = False,
            hostname: str = HOST) -> str:
        """``https://127.0.0.1:<https_port>/wsman/<host>`` (``scheme="http"``: the plain port;
        ``bad_tls=True``: the port whose certificate the CA in ``ca_file`` did not sign). ``hostname``:
        the name in the URL, e.g. ``localhost`` for Kerberos (the client asks for ``HTTP/<hostname>``)."""
        if bad_tls:
            port, scheme = self.bad_tls_port, "https"
        elif scheme == "https":
            port = self.https_port
        elif scheme == "http":
            port = self.http_port
        else:
            raise ValueError(f"scheme must be 'https' or 'http', not {scheme!r}")
        return f"{scheme}://{hostname}:{port}/wsman/{quote(host, safe='')}"

    def set_host(self, name: str, behavior: HostBehavior) -> None:
        with self._lock:
            self._record(name).behavior = behavior

    def set_hosts(self, hosts: Mapping[str, HostBehavior]) -> None:
        with self._lock:
            for name, behavior in hosts.items():
                self._record(name).behavior = behavior

    def remove_host(self, name: str) -> None:
        """Forget the host's behaviour (it answers 404 again); its records stay."""
        with self._lock:
            self._record(name).behavior = None

    def clear(self) -> None:
        """Forget every host, record and open shell (keeps ``expected_script``)."""
        with self._lock:
            self._hosts.clear()
            self._commands.clear()
            self._shells.clear()
            self._codepages.clear()

    def hosts(self) -> list[str]:
        with self._lock:
            return [name for name, record in self._hosts.items() if record.behavior is not None]

    def scripts(self, host: str = DEFAULT_HOST) -> list[str]:
        """Scripts ``host`` was given to run, in order: for the stdin bootstrap the script sent on
        its stdin (once stdin is closed), for ``powershell -encodedcommand ...`` the decoded
        PowerShell, otherwise the raw command line. A command line refused as too long adds none."""
        with self._lock:
            return list(self._record(host).scripts)

    def commands(self, host: str = DEFAULT_HOST) -> list[str]:
        """The raw command lines (command + arguments) received for ``host``."""
        with self._lock:
            return list(self._record(host).commands)

    def options(self, host: str = DEFAULT_HOST) -> list[dict[str, str]]:
        """The ``w:Option`` values (by upper-case name, e.g. ``WINRS_SKIP_CMD_SHELL``) of each
        Command received for ``host``, in the order of ``commands()``."""
        with self._lock:
            return [dict(options) for options in self._record(host).options]

    def requests(self, host: str = DEFAULT_HOST) -> list[str]:
        """Actions (Create/Command/Receive/Signal/Delete/...) of the authenticated SOAP requests that
        reached ``host``, in order, including those answered with faults, stalls or resets."""
        with self._lock:
            return list(self._record(host).actions)

    def mismatches(self, host: str = DEFAULT_HOST) -> list[str]:
        """Scripts refused because they differed from ``expected_script``."""
        with self._lock:
            return list(self._record(host).mismatches)

    def auth_failures(self) -> list[str]:
        """Why tokens were refused, in order: the Kerberos acceptor's message ("... kvno 2 not found in
        keytab ...", "Ticket not yet valid"), "NTLM is disabled on this peer", an unknown principal."""
        with self._lock:
            return list(self._auth_failures)

    def errors(self) -> list[str]:
        """Unexpected errors inside the peer (should stay empty)."""
        with self._lock:
            return list(self._errors)

    def open_shells(self) -> int:
        """Shells created and not deleted yet (a client that always cleans up leaves 0)."""
        with self._lock:
            return len(self._shells)

    # ---- internals

    def _record(self, name: str) -> _HostRecord:
        key = name.casefold()
        record = self._hosts.get(key)
        if record is None:
            record = self._hosts[key] = _HostRecord()
        return record

    def _note_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def _track(self, connection: Any, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _route(self, path: str) -> str | None:
        parts = urlsplit(path).path.split("/")
        # "/wsman" -> ["", "wsman"]; "/wsman/ex01" -> ["", "wsman", "ex01"]
        if len(parts) < 2 or parts[0] != "" or parts[1].lower() != "wsman" or len(parts) > 3:
            return None
        if len(parts) == 2 or parts[2] == "":
            return DEFAULT_HOST
        return unquote(parts[2])

    def _behavior(self, host: str) -> HostBehavior | None:
        with self._lock:
            record = self._hosts.get(host.casefold())
            return record.behavior if record is not None else None

    def _check_password(self, user: str, password: str) -> bool:
        return any(user.casefold() == known.casefold() and password == secret for known, secret in self.users.items())

    def _knows_user(self, principal: str) -> bool:
        return any(principal.casefold() == known.casefold() for known in self.users)

    def _accepts_principal(self, principal: str) -> bool:
        return self.principals is None or principal.casefold() in self.principals

    def _note_auth_failure(self, why: str) -> None:
        with self._lock:
            self._auth_failures.append(why)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _handle_soap(self, host: str, body: bytes, address: str) -> tuple[int, bytes]:
        try:
            request = _parse_request(body)
        except (ET.ParseError, binascii.Error):
            return 400, b""
        with self._lock:
            record = self._record(host)
            record.actions.append(request.action)
            behavior = record.behavior
        if behavior is None:
            return 404, b""
        if behavior.reset_action == request.action and request.action != "Receive":
            raise _Reset
        if behavior.stall_action == request.action and request.action != "Receive":
            self._stopping.wait(STALL_SECONDS)
            raise _Stall
        handler = {
            "Create": self._on_create,
            "Command": self._on_command,
            "Send": self._on_send,
            "Receive": self._on_receive,
            "Signal": self._on_signal,
            "Delete": self._on_delete,
        }.get(request.action)
        if handler is None:
            return 500, generic_fault(request.message_id, f"The action {request.action} is not supported by the peer.")
        return handler(host, behavior, request, address)

    def _on_create(self, host: str, behavior: HostBehavior, request: _Request, address: str) -> tuple[int, bytes]:
        if behavior.fault == "access_denied":
            return 500, access_denied_fault(request.message_id)
        if behavior.fault == "generic":
            return 500, generic_fault(request.message_id)
        shell_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._shells[shell_id] = host.casefold()
            self._codepages[shell_id] = request.options.get("WINRS_CODEPAGE") or "437"
        return 200, _create_response(request.message_id, shell_id, address)

    def _on_command(self, host: str, behavior: HostBehavior, request: _Request, _address: str) -> tuple[int, bytes]:
        command_line = request.command_line or ""
        refused = _refusal(command_line, request.options)
        script = decode_command_line(command_line) if refused is None else None
        reads_stdin = script == STDIN_BOOTSTRAP
        with self._lock:
            record = self._record(host)
            record.commands.append(self._interned.setdefault(command_line, command_line))
            record.options.append(dict(request.options))
            known_shell = self._shells.get(request.shell_id or "") == host.casefold()
            codepage = self._codepages.get(request.shell_id or "", "437")
            mismatch = False
            if refused is None and not reads_stdin:  # else: nothing runs, or not yet
                mismatch = self._note_script(record, script if script is not None else command_line)
        if not known_shell:
            return 500, generic_fault(request.message_id, "The request for the Windows Remote Shell failed "
                                      "because the shell was not found.")
        if mismatch:
            return 500, generic_fault(request.message_id, "Test peer: the script is not the expected probe.")
        command_id = str(uuid.uuid4()).upper()
        with self._lock:
            self._commands[command_id] = _Command(host=host.casefold(), shell_id=request.shell_id or "",
                                                  behavior=behavior, refused=refused, reads_stdin=reads_stdin,
                                                  codepage=codepage)
        return 200, _command_response(request.message_id, command_id)

    def _note_script(self, record: _HostRecord, script: str) -> bool:
        """Record a script the host runs; whether it differs from ``expected_script`` (with the lock)."""
        script = self._interned.setdefault(script, script)  # 1000s of copies of one probe
        record.scripts.append(script)
        mismatch = self.expected_script is not None and script != self.expected_script
        if mismatch:
            record.mismatches.append(script)
        return mismatch

    def _on_send(self, host: str, _behavior: HostBehavior, request: _Request, _address: str) -> tuple[int, bytes]:
        with self._lock:
            command = self._commands.get(request.command_id or "")
            if command is None or request.stdin is None:
                return 500, generic_fault(request.message_id, "The command was not found, or the Send "
                                          "carried no stdin stream.")
            if command.stdin_closed:
                return 500, generic_fault(request.message_id, "The input stream of the command is closed.")
            command.stdin += request.stdin
            if not request.stdin_end:
                return 200, _send_response(request.message_id)
            command.stdin_closed = True
            mismatch = False
            if command.reads_stdin:
                # What the bootstrap reads: the console's input decoded with the shell's code page.
                script = bytes(command.stdin).decode(_codec(command.codepage), "replace")
                mismatch = self._note_script(self._record(host), script)
                command.started = time.monotonic()
        if mismatch:
            return 500, generic_fault(request.message_id, "Test peer: the script is not the expected probe.")
        return 200, _send_response(request.message_id)

    def _on_receive(self, _host: str, behavior: HostBehavior, request: _Request, _address: str) -> tuple[int, bytes]:
        with self._lock:
            command = self._commands.get(request.command_id or "")
        if command is None:
            return 500, generic_fault(request.message_id, "The command was not found.")
        behavior = command.behavior  # the behaviour at Command time, even if changed since
        if behavior.stall_action == "Receive":
            self._stopping.wait(STALL_SECONDS)
            raise _Stall
        if behavior.reset_action == "Receive":
            raise _Reset
        if command.refused is not None:  # cmd.exe or CreateProcess said no: ended at once
            return 200, _receive_response(request.message_id, request.command_id or "", b"", command.refused,
                                          True, 1)
        with self._lock:
            command.receives += 1
            send_timeout = command.timeouts_sent < behavior.operation_timeouts
            if send_timeout:
                command.timeouts_sent += 1
            waits_for_stdin = command.reads_stdin and not command.stdin_closed
        if send_timeout:
            self._wait(behavior.operation_timeout_delay)
            return 500, operation_timeout_fault(request.message_id)
        if waits_for_stdin:  # blocked reading its input: nothing to say within the OperationTimeout
            self._wait(request.operation_timeout)
            return 500, operation_timeout_fault(request.message_id)
        running = command.started + behavior.runtime - time.monotonic()
        if running > 0:
            self._wait(min(running, request.operation_timeout))
            if running > request.operation_timeout:
                return 500, operation_timeout_fault(request.message_id)
        if not command.latency_done:
            command.latency_done = True
            self._wait(behavior.latency)
        stdout = _as_bytes(behavior.stdout)
        part = command.parts_sent
        command.parts_sent += 1
        size, extra = divmod(len(stdout), behavior.chunks)
        start = part * size + min(part, extra)
        end = start + size + (1 if part < extra else 0)
        done = command.parts_sent >= behavior.chunks
        answer = _receive_response(request.message_id, request.command_id or "", stdout[start:end],
                                   _as_bytes(behavior.stderr), done, behavior.exit_code)
        if behavior.truncate:
            raise _Truncate(200, answer)
        if behavior.trickle > 0:
            raise _Trickle(200, answer, behavior.trickle)
        return 200, answer

    def _on_signal(self, _host: str, _behavior: HostBehavior, request: _Request, _address: str) -> tuple[int, bytes]:
        with self._lock:
            self._commands.pop(request.command_id or "", None)
        return 200, _signal_response(request.message_id)

    def _on_delete(self, _host: str, _behavior: HostBehavior, request: _Request, _address: str) -> tuple[int, bytes]:
        with self._lock:
            self._shells.pop(request.shell_id or "", None)
            self._codepages.pop(request.shell_id or "", None)
            for command_id in [cid for cid, cmd in self._commands.items() if cmd.shell_id == request.shell_id]:
                del self._commands[command_id]
        return 200, _delete_response(request.message_id)


def _refusal(command_line: str, options: Mapping[str, str]) -> bytes | None:
    """What Windows says on stderr when it cannot start ``command_line``: too long for cmd.exe (which
    WinRS runs it through unless WINRS_SKIP_CMD_SHELL is TRUE), or for CreateProcess; else None."""
    if options.get("WINRS_SKIP_CMD_SHELL", "").upper() == "TRUE":
        return CREATE_PROCESS_TOO_LONG if len(command_line) > CREATE_PROCESS_LIMIT else None
    return CMD_LINE_TOO_LONG if len(command_line) > CMD_LINE_LIMIT else None


def _codec(codepage: str) -> str:
    """Python's codec for a Windows code page number (65001 is UTF-8); cp437 when unknown."""
    try:
        return codecs.lookup(f"cp{codepage}").name
    except LookupError:
        return "cp437"


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.num_tickets = 0  # pywinrm never resumes sessions: skip the tickets
    return context


def start_wsman(workdir: Path, *, users: dict[str, str] | None = None, keytab: Path | None = None,
                allow_ntlm: bool = True, principals: Collection[str] | None = None) -> WsmanPeer:
    """Start a WS-Management peer on free loopback ports (TLS files go into ``workdir``).

    ``users`` maps ``DOMAIN\\user`` (or ``user``, or ``user@REALM``) to its password; the first one
    is ``peer.username``/``peer.password``. Default: ``DEFAULT_USERS``. Sets ``NTLM_USER_FILE`` in
    this process (see the module docstring). ``keytab``: accept Kerberos for the service principals
    it holds (e.g. ``HTTP/localhost@PROBE.TEST``); ``principals``: the client principals then let in
    (default: any the KDC vouches for). ``allow_ntlm=False``: refuse NTLM with 401."""
    workdir.mkdir(parents=True, exist_ok=True)
    users = dict(users) if users else dict(DEFAULT_USERS)
    for user, password in users.items():
        _ntlm_line(user, password)  # validate early
    peer = WsmanPeer(workdir, users, keytab=keytab, allow_ntlm=allow_ntlm, principals=principals)
    try:
        peer._start()
    except BaseException:
        peer.stop()
        raise
    return peer


# --------------------------------------------------------------------------------------------------
# python -m tests.peers.wsman --fleet FILE.json


def faketime_env(offset_seconds: int) -> dict[str, str]:
    """Environment that runs a child process with its wall clock ``offset_seconds`` off (libfaketime;
    monotonic time left alone, so timeouts still work). Add it with ``start_fleet_process(env=...)``."""
    return {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": f"{offset_seconds:+d}", "DONT_FAKE_MONOTONIC": "1"}


def load_fleet(path: Path) -> dict[str, HostBehavior]:
    """``{host: {HostBehavior fields}}`` from a JSON file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("the fleet file must hold a JSON object {host: {behaviour fields}}")
    return {str(name): HostBehavior.from_dict(fields or {}) for name, fields in data.items()}


def _die_with_parent() -> None:
    """Linux: SIGTERM this process when the process that started it dies (no orphaned peers)."""
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    parent = os.getppid()
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.peers.wsman", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", type=Path, required=True, help="JSON {host: {HostBehavior fields}}")
    parser.add_argument("--workdir", type=Path, help="for the TLS files (default: a temp dir, removed at exit)")
    parser.add_argument("--users", type=Path, help='JSON {"DOMAIN\\\\user": "password"} (default: one test user)')
    parser.add_argument("--expected-script", type=Path, help="refuse (and record) any other script")
    parser.add_argument("--keep-parent", action="store_true", help="keep running if the parent process dies")
    parser.add_argument("--keytab", type=Path, help="accept Kerberos for the service principals in this keytab")
    parser.add_argument("--no-ntlm", action="store_true", help="refuse NTLM (401)")
    args = parser.parse_args(argv)

    if not args.keep_parent:
        _die_with_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    fleet = load_fleet(args.fleet)
    users = json.loads(args.users.read_text(encoding="utf-8")) if args.users else None
    temp_dir = None
    workdir = args.workdir
    if workdir is None:
        temp_dir = tempfile.mkdtemp(prefix="wsman-peer-")
        workdir = Path(temp_dir)
    peer = start_wsman(workdir, users=users, keytab=args.keytab, allow_ntlm=not args.no_ntlm)
    try:
        peer.set_hosts(fleet)
        if args.expected_script:
            peer.expected_script = args.expected_script.read_text(encoding="utf-8")
        ready = {
            "pid": os.getpid(), "host": HOST, "https_port": peer.https_port, "http_port": peer.http_port,
            "bad_tls_port": peer.bad_tls_port, "ca_file": str(peer.ca_file), "username": peer.username,
            "password": peer.password, "hosts": len(fleet), "workdir": str(workdir),
            "kerberos": peer.keytab is not None, "ntlm": peer.allow_ntlm, "clock": time.time(),
        }
        print(json.dumps(ready), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        peer.stop()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


def start_fleet_process(fleet_file: Path, *, expected_script: Path | None = None, workdir: Path | None = None,
                        keytab: Path | None = None, allow_ntlm: bool = True, env: Mapping[str, str] | None = None,
                        timeout: float = 30.0) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Run ``python -m tests.peers.wsman --fleet fleet_file`` (cwd: the project root) and wait for its
    ready line. Returns the process and the ready line's JSON (pid, ports, ca_file, username,
    password, kerberos, ntlm, clock: its ``time.time()``, ...). Stop it with
    ``process.terminate(); process.wait()``. ``keytab``/``allow_ntlm`` as for ``start_wsman``;
    ``env`` is added to this process's environment for the child, e.g. libfaketime's variables
    (``faketime_env``) to run the peer on a skewed clock."""
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "tests.peers.wsman", "--fleet", str(fleet_file)]
    if expected_script is not None:
        command += ["--expected-script", str(expected_script)]
    if workdir is not None:
        command += ["--workdir", str(workdir)]
    if keytab is not None:
        command += ["--keytab", str(keytab)]
    if not allow_ntlm:
        command += ["--no-ntlm"]
    process = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, **env} if env else None)
    result: dict[str, Any] = {}

    def read_ready() -> None:
        assert process.stdout is not None
        line = process.stdout.readline()
        with contextlib.suppress(ValueError):
            result.update(json.loads(line))

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"the WS-Man peer process did not get ready within {timeout:.0f} s "
                           f"(exit code {process.returncode})")
    return process, result


if __name__ == "__main__":
    raise SystemExit(main())
