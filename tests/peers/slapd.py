"""An OpenLDAP ``slapd`` on loopback, shaped like Active Directory (schema: ad.schema, data: ad_tree.py).

``start_slapd(workdir, ldif)`` writes a slapd.conf, throwaway TLS files and the rootDSE into
``workdir``, loads ``ldif`` with ``slapadd -q``, starts ``slapd -d none`` in the foreground on two
free ports (ldap:// with StartTLS, and ldaps://) and returns a ``SlapdPeer``; ``peer.stop()``
terminates that process and waits for it. ``-d none`` rather than ``-d 0``: both keep slapd in the
foreground, but ``-d 0`` also silences the errors (port in use, bad TLS file) that ``-d none``
writes to ``<workdir>/slapd.log`` (a few lines per run otherwise).

Behaviour that matters for the collector's tests:

* Anonymous: may read the rootDSE (as in AD) and nothing else; a search below the suffix ends
  with noSuchObject (32) and no entries (AD answers operationsError 1 instead).
* Authenticated users (the service account): read everything except ``userPassword``.
* Size limit for every identity except the rootdn: ``size.soft=size.hard=size.pr=<size_limit>``,
  ``size.prtotal=unlimited`` - like AD's MaxPageSize: a non-paged search stops at ``size_limit``
  entries with result 4 (sizeLimitExceeded; ldap3 does NOT raise), a paged search gets everything.
  The rootdn is exempt: bind as the service account to see the limit. A page size above
  ``size_limit`` is refused with adminLimitExceeded (11) (AD silently caps it): page at <= 1000.
* Entry DNs come back as slapd's pretty form: lower-case attribute types, ``\\5C`` for an escaped
  backslash (``cn=LAB(1)*\\5CEX,...,dc=test,dc=example``), while DN-valued attributes
  (distinguishedName, msExchServerSite, ...) come back exactly as loaded (``CN=...\\\\EX,...``).
  Compare DNs with ``ad_tree.dn_key`` (or any real DN parser), never as strings.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.ad_tree import (
    DEFAULT_BASE_DN,
    SERVICE_PASSWORD,
    config_dn,
    exchange_dn,
    schema_dn,
    service_account_dn,
)
from tests.peers.loopback import free_port
from tests.peers.process import signal_on_parent_death
from tests.peers.tls import make_tls_files

HOST = "127.0.0.1"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
AD_SCHEMA = Path(__file__).resolve().parent / "ad.schema"
ROOT_PASSWORD = "Root-Peer-Secret-1"
READY_TIMEOUT = 10.0


class SlapdError(RuntimeError):
    """slapadd or slapd failed; the message carries their output."""


def find_binary(name: str) -> str | None:
    """``slapd`` and ``slapadd`` live in /usr/sbin, which is not always on PATH."""
    return shutil.which(name) or next(
        (str(path) for path in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name) if path.exists()),
        None,
    )


def slapd_available() -> bool:
    return find_binary("slapd") is not None and find_binary("slapadd") is not None


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused), for unreachable-server tests."""
    return free_port()


@dataclass(frozen=True)
class SlapdPeer:
    host: str
    ldap_port: int
    ldaps_port: int
    ca_file: Path
    other_ca_file: Path
    base_dn: str
    service_dn: str
    service_password: str
    root_dn: str
    root_password: str
    workdir: Path
    slapadd_seconds: float
    start_seconds: float
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.host}:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    @property
    def config_nc(self) -> str:
        return config_dn(self.base_dn)

    @property
    def exchange_base(self) -> str:
        return exchange_dn(self.base_dn)

    @property
    def log_file(self) -> Path:
        return self.workdir / "slapd.log"

    def stop(self) -> None:
        """Terminate this peer's own slapd process and wait for it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> SlapdPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _slapd_conf(workdir: Path, base_dn: str, root_dn: str, size_limit: int, time_limit: int | None,
                tls_ca: Path, tls_cert: Path, tls_key: Path) -> str:
    limits = f"sizelimit size.soft={size_limit} size.hard={size_limit} size.pr={size_limit} size.prtotal=unlimited"
    time_line = f"timelimit time.soft={time_limit} time.hard={time_limit}" if time_limit is not None else ""
    return f"""\
# Written by tests/peers/slapd.py
include {SCHEMA_DIR / 'core.schema'}
include {SCHEMA_DIR / 'cosine.schema'}
include {SCHEMA_DIR / 'inetorgperson.schema'}
include {AD_SCHEMA}

modulepath {MODULE_DIR}
moduleload back_mdb

pidfile {workdir / 'slapd.pid'}
argsfile {workdir / 'slapd.args'}
rootDSE {workdir / 'rootdse.ldif'}

TLSCACertificateFile {tls_ca}
TLSCertificateFile {tls_cert}
TLSCertificateKeyFile {tls_key}

# Frontend: the rootDSE and the schema are readable by anyone, as in AD.
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 1073741824
dbnosync
suffix "{base_dn}"
rootdn "{root_dn}"
rootpw {ROOT_PASSWORD}
directory {workdir / 'db'}
index objectClass eq
index cn eq,sub
{limits}
{time_line}
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by users read
    by * none
"""


def _rootdse_ldif(base_dn: str) -> str:
    return (
        "dn:\n"
        f"configurationNamingContext: {config_dn(base_dn)}\n"
        f"defaultNamingContext: {base_dn}\n"
        f"rootDomainNamingContext: {base_dn}\n"
        f"schemaNamingContext: {schema_dn(base_dn)}\n"
    )


def _die_with_parent() -> None:
    """In the forked child: have Linux SIGTERM slapd when the test process dies, so a crashed or
    killed pytest never leaves a slapd behind."""
    signal_on_parent_death(signal.SIGTERM)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_file: Path) -> bool:
    """True once slapd has logged "slapd starting" (all listeners bound, daemon loop next) and
    ``port`` accepts connections; False if slapd exited (e.g. a port was taken)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if "slapd starting" in log_file.read_text(errors="replace") and _port_open(port):
            return True
        time.sleep(0.02)
    process.kill()
    process.wait(timeout=10)
    raise SlapdError(f"slapd did not get ready within {READY_TIMEOUT:.0f} s; "
                     f"output:\n{log_file.read_text(errors='replace')}")


def start_slapd(
    workdir: Path,
    ldif: str,
    *,
    size_limit: int = 1000,
    time_limit: int | None = None,
    base_dn: str = DEFAULT_BASE_DN,
    service_password: str = SERVICE_PASSWORD,
) -> SlapdPeer:
    """Load ``ldif`` into a fresh slapd in ``workdir`` and start it on free loopback ports.

    ``base_dn`` and ``service_password`` must be the ones ``ldif`` was made with (ad_tree defaults).
    """
    slapd, slapadd = find_binary("slapd"), find_binary("slapadd")
    if slapd is None or slapadd is None:
        raise SlapdError("slapd/slapadd not found (Debian packages slapd and ldap-utils; ./test.sh installs them)")

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    tls = make_tls_files(workdir / "tls")
    root_dn = f"CN=Administrator,CN=Users,{base_dn}"
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, base_dn, root_dn, size_limit, time_limit,
                                tls.ca_file, tls.cert_file, tls.key_file))
    (workdir / "rootdse.ldif").write_text(_rootdse_ldif(base_dn))
    data = workdir / "data.ldif"
    data.write_text(ldif, encoding="utf-8")

    started = time.monotonic()
    loaded = subprocess.run([slapadd, "-q", "-f", str(conf), "-l", str(data)],
                            capture_output=True, text=True, check=False)
    slapadd_seconds = time.monotonic() - started
    if loaded.returncode != 0:
        raise SlapdError(f"slapadd failed ({loaded.returncode}):\n{loaded.stdout}{loaded.stderr}")

    log_file = workdir / "slapd.log"
    for _attempt in range(3):  # a free port can be taken between picking and binding: retry
        ldap_port, ldaps_port = free_port(), free_port()
        while ldaps_port == ldap_port:
            ldaps_port = free_port()
        urls = f"ldap://{HOST}:{ldap_port}/ ldaps://{HOST}:{ldaps_port}/"
        started = time.monotonic()
        with log_file.open("wb") as log:
            process = subprocess.Popen([slapd, "-d", "none", "-f", str(conf), "-h", urls],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=_die_with_parent)
        if _wait_ready(process, ldap_port, log_file):
            return SlapdPeer(
                host=HOST, ldap_port=ldap_port, ldaps_port=ldaps_port,
                ca_file=tls.ca_file, other_ca_file=tls.other_ca_file,
                base_dn=base_dn, service_dn=service_account_dn(base_dn), service_password=service_password,
                root_dn=root_dn, root_password=ROOT_PASSWORD, workdir=workdir,
                slapadd_seconds=slapadd_seconds, start_seconds=time.monotonic() - started,
                process=process,
            )
        output = log_file.read_text(errors="replace")
        if "Address already in use" not in output:
            break
    raise SlapdError(f"slapd exited with {process.returncode} during start-up; output:\n{output}")
