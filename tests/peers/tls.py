"""Throwaway certificate authorities for the loopback test peers.

``make_tls_files(directory)`` writes:

* ``ca.pem``       - a self-signed test CA (EC P-256)
* ``server.pem``   - a server certificate from that CA, SAN ``IP:127.0.0.1`` and ``DNS:localhost``
* ``server.key``   - its private key (PKCS#8 PEM, unencrypted)
* ``other-ca.pem`` - a second, unrelated CA, for "wrong CA must be refused" tests

``TlsOnlyServer`` accepts TLS handshakes on loopback (any TLS version range, old ones too) and
records what each client negotiated, for "old TLS / wrong name is refused" tests.

Validity is one day, backdated by a few minutes so clock skew between cert creation and use
never matters.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.peers.loopback import AcceptLoop

BACKDATE = dt.timedelta(minutes=5)
VALIDITY = dt.timedelta(days=1)


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path
    other_ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "proxylogon-compliance tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _make_ca(common_name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, now: dt.datetime,
    names: tuple[str, ...], ips: tuple[str, ...],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0] if names else ips[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address(ip)) for ip in ips]
                + [x509.DNSName(name) for name in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_tls_files(directory: Path, names: tuple[str, ...] = ("localhost",),
                   ips: tuple[str, ...] = ("127.0.0.1",)) -> TlsFiles:
    """Create a test CA, a server certificate for ``names`` and ``ips`` (default: loopback)
    and an unrelated CA in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _make_ca("Test Peer CA", now)
    server_key, server_cert = _make_server_cert(ca_key, ca_cert, now, names, ips)
    _other_key, other_cert = _make_ca("Unrelated Test CA", now)

    files = TlsFiles(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        other_ca_file=directory / "other-ca.pem",
    )
    files.ca_file.write_bytes(_pem(ca_cert))
    files.cert_file.write_bytes(_pem(server_cert))
    files.key_file.write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    files.key_file.chmod(0o600)
    files.other_ca_file.write_bytes(_pem(other_cert))
    return files


class TlsOnlyServer:
    """Completes TLS handshakes on 127.0.0.1 and records each outcome, then hangs up.

    ``maximum_version=ssl.TLSVersion.TLSv1_1`` makes a server that only speaks TLS 1.0/1.1;
    OpenSSL 3 needs security level 0 for those, which is set here on the server side only.
    ``ciphers`` makes a TLS 1.2 server that offers only those suites.
    """

    def __init__(self, files: TlsFiles, maximum_version: ssl.TLSVersion | None = None,
                 ciphers: str | None = None) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(files.cert_file, files.key_file)
        if ciphers is not None:  # TLS 1.2 only: TLS 1.3 suites cannot be narrowed this way
            self._context.set_ciphers(ciphers)
            self._context.maximum_version = ssl.TLSVersion.TLSv1_2
        if maximum_version is not None:
            self._context.set_ciphers("DEFAULT:@SECLEVEL=0")
            self._context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            with warnings.catch_warnings():  # old versions are the point of this server
                warnings.simplefilter("ignore", DeprecationWarning)
                self._context.maximum_version = maximum_version
        self.outcomes: list[str] = []  # per connection: version and bytes received, or error
        self._loop = AcceptLoop(self._handshake, threaded=False, name="tls-only")
        self.port = self._loop.port

    def _handshake(self, client: socket.socket) -> None:
        client.settimeout(5)
        try:
            with self._context.wrap_socket(client, server_side=True) as wrapped:
                received = b""
                with contextlib.suppress(OSError):
                    received = wrapped.recv(65536)  # the client's first request, if any
                # "TLSv1.3 +14 bytes": what a client sent after the handshake, e.g. a bind
                self.outcomes.append(f"{wrapped.version()} +{len(received)} bytes")
        except (OSError, ssl.SSLError) as error:
            self.outcomes.append(f"failed: {error}")
            client.close()

    def close(self) -> None:
        self._loop.close()
