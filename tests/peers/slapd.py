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

With ``kerberos=<KdcPeer>`` slapd also accepts SASL GSSAPI (Cyrus SASL, Debian's
``libsasl2-modules-gssapi-mit``): its service principal ``ldap/localhost@<realm>`` is made in
that KDC (kept if it exists) and exported to ``<workdir>/ldap.keytab`` (``KRB5_KTNAME``), and
the service account gets the principal ``svc-exinventory@<realm>`` (``service_principal``; its
keys in ``service_keytab``), which ``authz-regexp`` maps to ``service_dn``: a Kerberos bind
reads what the simple bind reads. Other principals of the realm bind as their
``uid=<name>,cn=<realm>,cn=gssapi,cn=auth`` identity (an authenticated user, as any domain
user in AD). Kerberos clients must connect to ``localhost`` (``kerberos_ldaps_url``): the
service name follows the host name connected to. ``sasl-secprops minssf=1`` (the default
``sasl_secprops``) asks a SASL security layer unless TLS protects the session, like a DC that
requires LDAP signing: ldap3 offers none, so its GSSAPI bind works over LDAPS/StartTLS only.
The principals are shared by every peer of that realm: tests must not change their keys. A failed GSSAPI bind is
invalidCredentials (49), "SASL(-13): authentication failure: GSSAPI Failure:
gss_accept_sec_context", whatever the cause (Cyrus SASL does not pass the acceptor's error on).

``clock_offset`` runs slapd under libfaketime that many seconds off (a DC whose clock drifted):
the Kerberos acceptor then refuses every ticket (the realm allows 300 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.ad_tree import (
    DEFAULT_BASE_DN,
    SERVICE_ACCOUNT_CN,
    SERVICE_PASSWORD,
    config_dn,
    exchange_dn,
    schema_dn,
    service_account_dn,
)
from tests.peers.kdc import FAKETIME_LIBRARY, KdcError, KdcPeer
from tests.peers.loopback import free_port
from tests.peers.process import signal_on_parent_death
from tests.peers.process import stop as stop_process
from tests.peers.tls import make_tls_files

HOST = "127.0.0.1"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
AD_SCHEMA = Path(__file__).resolve().parent / "ad.schema"
ROOT_PASSWORD = "Root-Peer-Secret-1"
READY_TIMEOUT = 10.0
# The name Kerberos clients connect to: their service ticket is for ldap/<this name>.
KERBEROS_HOST = "localhost"


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
    # With kerberos=: the service account's principal (mapped to service_dn), a keytab with
    # its keys, and slapd's own service principal (ldap/localhost@REALM).
    service_principal: str | None = None
    service_keytab: Path | None = None
    service_name: str | None = None
    clock_offset: int = 0

    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.host}:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    @property
    def kerberos_ldap_url(self) -> str:
        return f"ldap://{KERBEROS_HOST}:{self.ldap_port}"

    @property
    def kerberos_ldaps_url(self) -> str:
        return f"ldaps://{KERBEROS_HOST}:{self.ldaps_port}"

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
        stop_process(self.process)

    def __enter__(self) -> SlapdPeer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _sasl_lines(realm: str, service_dn: str, secprops: str) -> str:
    """SASL GSSAPI for ``ldap/localhost@realm``; the service account's principal maps to its DN."""
    # slapd matches the regexp against the lower-cased authentication DN. "[.]" rather than
    # "\\.": slapd.conf's parser eats one level of backslashes inside quotes.
    user, domain = (part.lower().replace(".", "[.]") for part in (SERVICE_ACCOUNT_CN, realm))
    return f"""\
sasl-host {KERBEROS_HOST}
sasl-realm {realm}
sasl-secprops {secprops}
authz-regexp "^uid={user},cn={domain},cn=gssapi,cn=auth$" "{service_dn}"
"""


def _slapd_conf(workdir: Path, base_dn: str, root_dn: str, size_limit: int, time_limit: int | None,
                tls_ca: Path, tls_cert: Path, tls_key: Path, sasl: str = "") -> str:
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
{sasl}
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


def _ensure_principal(kdc: KdcPeer, name: str) -> str:
    """``name``'s full principal, made (random key) unless the realm has it already."""
    try:
        kdc.kadmin(f"getprinc {kdc.principal(name)}")
    except KdcError:
        return kdc.add_principal(name)
    return kdc.principal(name)


def _kerberos_env(workdir: Path, kdc: KdcPeer) -> tuple[dict[str, str], str, str, Path]:
    """slapd's Kerberos environment, its service principal, the service account's principal and
    a keytab with that account's keys (principals made in ``kdc`` unless there already)."""
    service_name = _ensure_principal(kdc, f"ldap/{KERBEROS_HOST}")
    keytab = kdc.keytab(service_name, workdir / "ldap.keytab")
    account = _ensure_principal(kdc, SERVICE_ACCOUNT_CN)
    account_keytab = kdc.keytab(account, workdir / "service-account.keytab")
    return {**kdc.env(), "KRB5_KTNAME": f"FILE:{keytab}"}, service_name, account, account_keytab


def _faketime_env(offset: int) -> dict[str, str]:
    if not FAKETIME_LIBRARY.exists():
        raise SlapdError("libfaketime not found (Debian package faketime)")
    # DONT_FAKE_MONOTONIC: slapd's timers and thread waits keep the real monotonic clock.
    return {"LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": f"{offset:+d}", "DONT_FAKE_MONOTONIC": "1"}


def start_slapd(
    workdir: Path,
    ldif: str,
    *,
    size_limit: int = 1000,
    time_limit: int | None = None,
    base_dn: str = DEFAULT_BASE_DN,
    service_password: str = SERVICE_PASSWORD,
    kerberos: KdcPeer | None = None,
    clock_offset: int = 0,
    sasl_secprops: str = "noanonymous,noplain,minssf=1",
) -> SlapdPeer:
    """Load ``ldif`` into a fresh slapd in ``workdir`` and start it on free loopback ports.

    ``base_dn`` and ``service_password`` must be the ones ``ldif`` was made with (ad_tree defaults).
    ``kerberos``: also accept SASL GSSAPI from that realm (module docstring), with
    ``sasl_secprops``; ``clock_offset``: slapd's clock that many seconds off (libfaketime).
    ``SlapdError``/``KdcError`` on failure.
    """
    slapd, slapadd = find_binary("slapd"), find_binary("slapadd")
    if slapd is None or slapadd is None:
        raise SlapdError("slapd/slapadd not found (Debian packages slapd and ldap-utils; ./test.sh installs them)")

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir(exist_ok=True)
    tls = make_tls_files(workdir / "tls")
    root_dn = f"CN=Administrator,CN=Users,{base_dn}"
    env = dict(os.environ)
    sasl, service_name, account, account_keytab = "", None, None, None
    if kerberos is not None:
        kerberos_env, service_name, account, account_keytab = _kerberos_env(workdir, kerberos)
        env |= kerberos_env
        sasl = _sasl_lines(kerberos.realm, service_account_dn(base_dn), sasl_secprops)
    if clock_offset:
        env |= _faketime_env(clock_offset)
    conf = workdir / "slapd.conf"
    conf.write_text(_slapd_conf(workdir, base_dn, root_dn, size_limit, time_limit,
                                tls.ca_file, tls.cert_file, tls.key_file, sasl))
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
                                       env=env, preexec_fn=_die_with_parent)
        if _wait_ready(process, ldap_port, log_file):
            return SlapdPeer(
                host=HOST, ldap_port=ldap_port, ldaps_port=ldaps_port,
                ca_file=tls.ca_file, other_ca_file=tls.other_ca_file,
                base_dn=base_dn, service_dn=service_account_dn(base_dn), service_password=service_password,
                root_dn=root_dn, root_password=ROOT_PASSWORD, workdir=workdir,
                slapadd_seconds=slapadd_seconds, start_seconds=time.monotonic() - started,
                process=process, service_principal=account, service_keytab=account_keytab,
                service_name=service_name, clock_offset=clock_offset,
            )
        output = log_file.read_text(errors="replace")
        if "Address already in use" not in output:
            break
    raise SlapdError(f"slapd exited with {process.returncode} during start-up; output:\n{output}")
