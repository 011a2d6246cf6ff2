"""Dependency hygiene: every package is pinned, and the audit release step really audits them.

scripts/audit.sh runs pip-audit over constraints.txt. The real vulnerability services (PyPI's
JSON API, OSV) cannot be reached from this machine, so the step is run here against an
OSV-shaped service on loopback: it must query every pinned package, fail naming an advisory,
and pass when there is none.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.peers.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)(\[[a-z,]+\])?==([A-Za-z0-9.+!-]+)$")
UNPINNED_TOOLS = {"pip", "setuptools", "wheel"}  # the venv's own installers, not ours


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = PIN.match(line)
            assert match, f"{path.name}: {line!r} is not pinned with =="
            pins[_canonical(match[1])] = match[3]
    return pins


def test_every_requirement_is_pinned_and_agrees_with_the_constraints():
    constraints = _pins(ROOT / "constraints.txt")
    for name in ("requirements.txt", "requirements-test.txt", "requirements-kerberos.txt"):
        for package, version in _pins(ROOT / name).items():
            assert constraints.get(package) == version, f"{name}: {package}"


def test_every_installed_package_is_pinned_at_its_installed_version():
    constraints = _pins(ROOT / "constraints.txt")
    installed = {_canonical(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}
    unpinned = {name: version for name, version in installed.items()
                if name not in UNPINNED_TOOLS and constraints.get(name) != version}
    assert not unpinned, f"installed but not pinned in constraints.txt: {unpinned}"


class _OsvService:
    """Answers pip-audit's OSV queries; ``advisories`` maps a package name to OSV entries."""

    def __init__(self, advisories: dict[str, list[dict[str, object]]]) -> None:
        self.queried: list[tuple[str, str]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                name = query["package"]["name"]
                service.queried.append((name, query["version"]))
                body = json.dumps({"vulns": advisories[name]} if name in advisories else {})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/query"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ADVISORY = {
    "id": "GHSA-test-0000-0001", "aliases": ["CVE-2099-0001"],
    "summary": "Test advisory: ldap3 leaks the bind password",
    "affected": [{"package": {"name": "ldap3", "ecosystem": "PyPI"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                               {"fixed": "2.9.2"}]}]}],
}


@pytest.fixture
def osv() -> Iterator[type[_OsvService]]:
    started: list[_OsvService] = []

    def start(advisories: dict[str, list[dict[str, object]]]) -> _OsvService:
        service = _OsvService(advisories)
        started.append(service)
        return service

    yield start  # type: ignore[misc]
    for service in started:
        service.close()


def _audit(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_AUDIT_SERVICE": "osv", "PIP_AUDIT_OSV_URL": url, "NO_COLOR": "1"}
    return subprocess.run(["bash", "scripts/audit.sh"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_audit_step_fails_naming_an_advisory_and_its_fix_for_a_pinned_package(osv):
    service = osv({"ldap3": [ADVISORY]})
    done = _audit(service.url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"ldap3\s+2\.9\.1\s+CVE-2099-0001\s+2\.9\.2", done.stdout), done.stdout
    assert {name for name, _ in service.queried} == set(_pins(ROOT / "constraints.txt"))


def test_the_audit_step_passes_when_no_pinned_package_has_an_advisory(osv):
    service = osv({})
    done = _audit(service.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No known vulnerabilities found" in done.stdout + done.stderr
    assert ("ldap3", _pins(ROOT / "constraints.txt")["ldap3"]) in service.queried


def test_the_audit_step_fails_when_the_service_cannot_be_reached():
    done = _audit(f"http://127.0.0.1:{free_port()}/v1/query")  # nothing listens there
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Connection refused" in done.stderr
