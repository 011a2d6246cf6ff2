"""A throwaway MIT Kerberos KDC on loopback (Debian's ``krb5-kdc``), made and started by the tests.

``start_kdc(workdir)`` writes ``krb5.conf`` and ``kdc.conf`` into ``workdir`` (realm ``REALM``,
the KDC on 127.0.0.1 and a free port, TCP only, no DNS look-ups, no reverse DNS, no host name
canonicalisation), creates the database with a random master password (``kdb5_util create -s``),
starts ``krb5kdc -n`` as a child and returns a ``KdcPeer``. Principals and keytabs are made with
``kadmin.local`` (``add_principal``, ``keytab``); ``peer.env()`` is what a client or a server
needs in its environment to use this realm (``KRB5_CONFIG``, a replay cache in ``workdir``).

``skew_seconds`` runs the KDC under libfaketime with its clock that far ahead: every client's
request then fails with "Clock skew too great" (the KDC allows 300 s), as a collector whose
clock drifted would. Recipes: shared/design/TESTING.md, "Kerberos and SMTP peers".

The sandbox does not deliver a parent-death signal to this child: ``stop()`` (idempotent) must be
called, by the fixture's finaliser.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.loopback import HOST, free_port
from tests.peers.process import stop as stop_process

REALM = "PROBE.TEST"
SBIN = Path("/usr/sbin")
FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
READY_TIMEOUT = 10.0
# Debian packages the Kerberos peers need (scripts/setup.sh installs them for ./test.sh).
PACKAGES = ("krb5-kdc", "krb5-admin-server", "krb5-user", "libkrb5-dev",
            "libsasl2-modules-gssapi-mit", "faketime")


class KdcError(RuntimeError):
    """kdb5_util, kadmin.local or krb5kdc failed; the message carries their output."""


def kdc_available() -> bool:
    return all((SBIN / name).exists() for name in ("krb5kdc", "kdb5_util", "kadmin.local"))


def _krb5_conf(realm: str, port: int, workdir: Path) -> str:
    return f"""\
# Written by tests/peers/kdc.py
[libdefaults]
    default_realm = {realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
    ticket_lifetime = 10h
    forwardable = true

[realms]
    {realm} = {{
        kdc = {HOST}:{port}
        admin_server = {HOST}:{free_port()}
        database_name = {workdir / 'principal'}
        key_stash_file = {workdir / 'stash'}
    }}

[domain_realm]
    localhost = {realm}
    .localhost = {realm}
"""


def _kdc_conf(realm: str, port: int, workdir: Path) -> str:
    return f"""\
[kdcdefaults]
    kdc_listen = {HOST}:{port}
    kdc_tcp_listen = {HOST}:{port}

[realms]
    {realm} = {{
        database_name = {workdir / 'principal'}
        key_stash_file = {workdir / 'stash'}
        acl_file = {workdir / 'kadm5.acl'}
        max_life = 10h 0m 0s
        max_renewable_life = 1d 0h 0m 0s
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{workdir / 'kdc.log'}
"""


@dataclass
class KdcPeer:
    realm: str
    port: int
    workdir: Path
    krb5_conf: Path
    skew_seconds: int
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def env(self) -> dict[str, str]:
        """What a Kerberos client or server of this realm needs in its environment."""
        rcache = self.workdir / "rcache"
        rcache.mkdir(exist_ok=True)
        return {"KRB5_CONFIG": str(self.krb5_conf), "KRB5RCACHEDIR": str(rcache),
                "KRB5_KDC_PROFILE": str(self.workdir / "kdc.conf")}

    def kadmin(self, query: str) -> str:
        """Run one ``kadmin.local`` query; its output (``KdcError`` when it fails)."""
        done = subprocess.run([str(SBIN / "kadmin.local"), "-r", self.realm, "-q", query],
                              env={**os.environ, **self.env()}, capture_output=True,
                              text=True, timeout=30, check=False)
        # kadmin.local exits 0 even when the query failed: its errors go to stderr.
        if done.returncode != 0 or "error" in done.stderr.lower() or "while " in done.stderr:
            raise KdcError(f"kadmin.local -q {query!r}: {done.stderr.strip() or done.stdout}")
        return done.stdout

    def principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.realm}"

    def add_principal(self, name: str, password: str | None = None,
                      max_life: str | None = None) -> str:
        """Create ``name`` (a random key unless ``password``); its full principal name."""
        options = f"-maxlife \"{max_life}\" " if max_life else ""
        secret = f"-pw {password}" if password else "-randkey"
        self.kadmin(f"addprinc {options}{secret} {self.principal(name)}")
        return self.principal(name)

    def keytab(self, name: str, path: Path) -> Path:
        """Write ``name``'s current keys to the keytab ``path`` (its keys unchanged)."""
        self.kadmin(f"ktadd -norandkey -k {path} {self.principal(name)}")
        return path

    def change_key(self, name: str) -> None:
        """Give ``name`` a new random key: a keytab written before no longer matches."""
        self.kadmin(f"cpw -randkey {self.principal(name)}")

    def kinit(self, name: str, keytab: Path, ccache: Path, lifetime: str | None = None) -> None:
        """Get ``name`` a ticket from ``keytab`` into the credential cache ``ccache``."""
        command = ["kinit", "-k", "-t", str(keytab), "-c", f"FILE:{ccache}"]
        if lifetime:
            command += ["-l", lifetime]
        done = subprocess.run([*command, self.principal(name)], env={**os.environ, **self.env()},
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise KdcError(f"kinit {name}: {done.stderr.strip()}")

    @property
    def log_file(self) -> Path:
        return self.workdir / "kdc.log"

    def stop(self) -> None:
        """Terminate this peer's KDC and wait for it (idempotent)."""
        stop_process(self.process)

    def __enter__(self) -> KdcPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _wait_listening(port: int, process: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "kdc.log").read_text(errors="replace") if (
                workdir / "kdc.log").exists() else ""
            out = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise KdcError(f"krb5kdc exited with {process.returncode}: {out}{log}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise KdcError(f"krb5kdc did not listen on {HOST}:{port} within {READY_TIMEOUT} s")


def start_kdc(workdir: Path, realm: str = REALM, skew_seconds: int = 0) -> KdcPeer:
    """Make a realm in ``workdir`` and start its KDC; ``KdcError`` when anything fails."""
    if not kdc_available():
        raise KdcError("krb5kdc/kdb5_util/kadmin.local not found: apt-get install "
                       + " ".join(PACKAGES))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    krb5_conf = workdir / "krb5.conf"
    krb5_conf.write_text(_krb5_conf(realm, port, workdir))
    (workdir / "kdc.conf").write_text(_kdc_conf(realm, port, workdir))
    (workdir / "kadm5.acl").write_text("")
    env = {**os.environ, "KRB5_CONFIG": str(krb5_conf),
           "KRB5_KDC_PROFILE": str(workdir / "kdc.conf")}
    created = subprocess.run([str(SBIN / "kdb5_util"), "-r", realm, "create", "-s", "-P",
                              secrets.token_urlsafe(24)], env=env, capture_output=True,
                             text=True, timeout=60, check=False)
    if created.returncode != 0:
        raise KdcError(f"kdb5_util create: {created.stderr.strip() or created.stdout}")
    if skew_seconds:
        if not FAKETIME_LIBRARY.exists() or shutil.which("faketime") is None:
            raise KdcError("libfaketime not found: apt-get install faketime")
        env |= {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": f"{skew_seconds:+d}",
                "DONT_FAKE_MONOTONIC": "1"}
    process = subprocess.Popen([str(SBIN / "krb5kdc"), "-n", "-r", realm], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, workdir)
    except BaseException:
        if process.poll() is None:
            process.kill()
        raise
    return KdcPeer(realm=realm, port=port, workdir=workdir, krb5_conf=krb5_conf,
                   skew_seconds=skew_seconds, process=process)
