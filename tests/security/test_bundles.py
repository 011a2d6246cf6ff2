"""Issue 12, a bundle proves itself: forged and hostile evidence bundles end in "verification
failed: <reason>" and exit 1, never a traceback, never OK. The command runs in a child process
under an address-space limit, so a zip bomb fails the test instead of the machine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore
from store.evidence import build_bundle, document_digest, verify_bundle

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEY = b"dummy-bundle-signing-key"
ADDRESS_SPACE = 1536 * 1024**2


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _make(tmp_path: Path, catalog, key: bytes | None) -> Path:
    tmp_path = tmp_path / ("signed" if key else "unsigned")
    tmp_path.mkdir()
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}", signing_key=key)
    try:
        at = NOW - timedelta(days=1)
        observations = [Observation(Host("EXPATCHED"), at, "test", exsetup_version="15.1.2176.9"),
                        Observation(Host("EXOPEN"), at, "test", exsetup_version="15.1.2176.2")]
        snapshot_id = store.save(assess(observations, catalog, at, source="test",
                                        tool_version="t"), catalog)
        path = tmp_path / "evidence.zip"
        path.write_bytes(build_bundle(store, store.info(snapshot_id), NOW))
        return path
    finally:
        store.dispose()


@pytest.fixture
def unsigned(tmp_path, shipped_catalog) -> Path:
    return _make(tmp_path, shipped_catalog, None)


@pytest.fixture
def signed(tmp_path, shipped_catalog) -> Path:
    return _make(tmp_path, shipped_catalog, KEY)


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(path: Path, members: list[tuple[str, bytes]], rehash: bool = True,
           compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A bundle with these members, the manifest's hashes recomputed as a forger would."""
    if rehash:
        manifest = json.loads(dict(members)["manifest.json"])
        manifest["files"] = {name: hashlib.sha256(data).hexdigest() for name, data in members
                             if name in manifest["files"]}
        members = [(n, json.dumps(manifest).encode() if n == "manifest.json" else d)
                   for n, d in members]
    out = path.with_name("forged.zip")
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out


def _cli(path: Path, key: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    if key:
        env["PROXYLOGON_SIGNING_KEY"] = key.decode()
    return subprocess.run([sys.executable, "-m", "store", "--secrets", os.devnull,
                           "verify", "--bundle", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory)


def _refused(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and not result.stdout, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("verification failed: ") for line in lines), lines
    assert any(reason in line for line in lines), lines


def test_an_untouched_bundle_verifies_with_and_without_its_key(signed, unsigned):
    assert verify_bundle(unsigned) == [] and verify_bundle(signed, KEY) == []
    ok = _cli(signed, KEY)
    assert ok.returncode == 0 and "HMAC and the snapshot's signature match" in ok.stdout


def test_verdicts_rewritten_in_the_derived_files_are_caught_without_a_key(unsigned):
    members = [(name, data.replace(b"vulnerable", b"patched"))
               if name in ("hosts.csv", "summary.txt") else (name, data)
               for name, data in _members(unsigned).items()]
    result = _cli(_rezip(unsigned, members))
    _refused(result, "hosts.csv says something snapshot.json does not")
    assert "summary.txt says something snapshot.json does not" in result.stderr


def test_a_recomputed_manifest_or_snapshot_is_caught_with_the_key(signed):
    members = _members(signed)
    document = json.loads(members["snapshot.json"])
    for row in document["results"]:  # a whole forged snapshot, digest recomputed
        row["status"] = "patched"
        row["verdict"] = row["verdict"].replace('"vulnerable"', '"patched"')
    header = document["header"]
    header["hash"] = document_digest(document)
    forged = json.dumps(document).encode()
    manifest = json.loads(members["manifest.json"])
    manifest["snapshot_hash"] = header["hash"]
    listed = dict(members, **{"snapshot.json": forged,
                              "manifest.json": json.dumps(manifest).encode()})
    path = _rezip(signed, list(listed.items()))
    result = _cli(path, KEY)
    _refused(result, "manifest.json HMAC is wrong for this key")
    # nothing more is parsed once the manifest failed (review 3, F7)
    assert _cli(path).returncode == 1  # without a key hosts.csv still contradicts the rows


def test_an_unsigned_bundle_is_not_proof_when_a_key_is_set(unsigned):
    _refused(_cli(unsigned, KEY), "carries no HMAC")


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(("extra", "reason"), [
    ("../../../x", "unexpected member '../../../x'"),
    ("/etc/passwd", "unexpected member '/etc/passwd'"),
    ("snapshot.json", "appears more than once"),
    ("hosts.csv/", "unexpected member"),
])
def test_member_names_are_checked(unsigned, extra, reason):
    members = [m for m in _members(unsigned).items() if m[0] != "summary.txt"]
    forged = [(extra, b"planted"), *members]  # placed first, as the attack did; still 4
    _refused(_cli(_rezip(unsigned, forged, rehash=False)), reason)


def test_a_member_beyond_the_format_is_refused_from_the_directory_record(unsigned):
    members = [("extra.txt", b"planted"), *_members(unsigned).items()]
    _refused(_cli(_rezip(unsigned, members, rehash=False)), f"lists {len(members)} entries")


def test_deeply_nested_json_is_refused_before_parsing(unsigned):
    members = _members(unsigned)
    members["snapshot.json"] = b"[" * 200_000 + b"]" * 200_000
    _refused(_cli(_rezip(unsigned, list(members.items()))), "nests deeper than 32 levels")


def _patch_member(data: bytes, name: bytes, **fields: int) -> bytes:
    """Rewrite fields of a member's local header and central directory entry."""
    out = bytearray(data)
    for signature, offsets in ((b"PK\x03\x04", {"flags": 6, "method": 8, "size": 22}),
                               (b"PK\x01\x02", {"flags": 8, "method": 10, "size": 24})):
        start = 0
        while (at := out.find(signature, start)) >= 0:
            start = at + 4
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if out[name_at:name_at + len(name)] != name:
                continue
            for field, value in fields.items():
                width = "<H" if field in ("flags", "method") else "<I"
                struct.pack_into(width, out, at + offsets[field], value)
    return bytes(out)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"flags": 0x1}, "hosts.csv is encrypted"),
    ({"method": 99}, "compression method 99"),
    ({"method": zipfile.ZIP_BZIP2}, "compression method 12"),
])
def test_encrypted_and_unknown_compression_are_refused(unsigned, fields, reason):
    path = unsigned.with_name("patched.zip")
    path.write_bytes(_patch_member(unsigned.read_bytes(), b"hosts.csv", **fields))
    _refused(_cli(path), reason)


def test_a_corrupt_deflate_stream_is_a_failure_not_a_traceback(unsigned):
    data = bytearray(unsigned.read_bytes())
    at = data.find(b"PK\x03\x04")
    start = at + 30 + struct.unpack_from("<H", data, at + 26)[0] + struct.unpack_from(
        "<H", data, at + 28)[0]
    data[start:start + 8] = b"\xff" * 8  # the first member's compressed bytes
    path = unsigned.with_name("corrupt.zip")
    path.write_bytes(bytes(data))
    _refused(_cli(path), "cannot be inflated")


class _ZeroDeflater:
    """Deflates 16 MB chunks of zeros from one precomputed block: after a full flush the
    compressor's state is reset, so every such chunk deflates to the same bytes."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(9, zlib.DEFLATED, -15)
        self._block = self._zlib.compress(bytes(_CHUNK)) + self._zlib.flush(zlib.Z_FULL_FLUSH)

    def compress(self, data: bytes) -> bytes:
        assert len(data) == _CHUNK and not any(data[:64])
        return self._block

    def flush(self) -> bytes:
        return self._zlib.flush()


_CHUNK = 16 * 2**20


def _bomb(path: Path, name: str, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member of ``size`` zero bytes, deflated (about 1 KB per MB) in a second or two."""
    monkeypatch.setattr(zipfile, "_get_compressor", lambda *_args: _ZeroDeflater())
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    chunk = bytes(_CHUNK)
    with zipfile.ZipFile(path, "w") as archive, \
            archive.open(info, "w", force_zip64=True) as member:
        for _ in range(size // _CHUNK):
            member.write(chunk)
    monkeypatch.undo()
    with zipfile.ZipFile(path) as archive, archive.open(name) as member:  # a real deflate stream
        assert member.read(_CHUNK * 2) == bytes(_CHUNK * 2)


def test_a_zip_bomb_is_refused_from_its_directory_before_inflating(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.zip"
    _bomb(bomb, "snapshot.json", 3 * 2**30, monkeypatch)  # 3 GB of zeros in about 3 MB
    assert bomb.stat().st_size < 4 * 2**20
    _refused(_cli(bomb), "snapshot.json would inflate to 3221225472 bytes")


def test_a_member_whose_directory_lies_about_its_size_is_never_read_past_its_limit(unsigned):
    members = _members(unsigned)
    plain = io.BytesIO()
    with zipfile.ZipFile(plain, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, bytes(300 * 2**20) if name == "hosts.csv" else data)
    path = unsigned.with_name("lying.zip")
    path.write_bytes(_patch_member(plain.getvalue(), b"hosts.csv", size=1000))
    assert zlib.crc32(b"") == 0  # (the lie also breaks the CRC: either way it is refused)
    _refused(_cli(path), "hosts.csv cannot be inflated")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "not-a-zip", "missing"])
def test_a_bundle_path_that_is_no_bundle_is_one_line(tmp_path, kind):
    path = tmp_path / "bundle.zip"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "not-a-zip":
        path.write_bytes(b"PK\x03\x04 this is not a zip")
    _refused(_cli(path), {"fifo": "not a regular file", "dev-zero": "not a regular file",
                          "not-a-zip": "not a readable zip", "missing": "cannot be read"}[kind])


def test_many_tiny_values_are_refused_before_parsing(unsigned):
    members = _members(unsigned)
    members["snapshot.json"] = b'{"x":[' + b",".join([b"{}"] * 3_000_000) + b"]}"
    _refused(_cli(_rezip(unsigned, list(members.items()))), "holds more than 2000000 values")


@pytest.mark.parametrize(("where", "value"), [
    ("manifest", "é"), ("manifest", 7), ("signature", "é"), ("signature", [1]),
    ("signature", 1.5), ("format", "Infinity"), ("observed_in", "NaN"),
])
def test_values_of_the_wrong_kind_are_failures_not_tracebacks(signed, where, value):
    members = _members(signed)
    manifest = json.loads(members["manifest.json"])
    document = json.loads(members["snapshot.json"])
    if where == "manifest":
        manifest["hmac"] = value
    elif where == "signature":
        document["header"]["signature"] = value
    elif where == "format":
        document["header"]["format"] = 0  # replaced by the bare constant below
    else:
        document["results"][0]["observed_in"] = 0
    text = json.dumps(document)
    if where == "format":
        text = text.replace('"format": 0', f'"format": {value}')
    elif where == "observed_in":
        text = text.replace('"observed_in": 0', f'"observed_in": {value}', 1)
    members["snapshot.json"], members["manifest.json"] = text.encode(), json.dumps(
        manifest).encode()
    result = _cli(_rezip(signed, list(members.items())), KEY)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("verification failed: ")


def test_a_member_name_with_a_nul_is_refused(unsigned):
    data = unsigned.read_bytes()
    # Same length, so the zip stays well formed: "hosts.csv" becomes "hosts.cs\0".
    path = unsigned.with_name("nul.zip")
    path.write_bytes(data.replace(b"hosts.csv", b"hosts.cs\x00"))
    _refused(_cli(path), "unexpected member")


def test_a_bundle_of_a_store_that_did_not_verify_is_no_proof(tmp_path, shipped_catalog):
    store = SnapshotStore.open(f"sqlite:///{tmp_path / 'store.db'}", signing_key=KEY)
    try:
        at = NOW - timedelta(days=1)
        for day in range(2):
            store.save(assess([Observation(Host("EX1"), at + timedelta(hours=day), "t",
                                           exsetup_version="15.1.2176.2")], shipped_catalog,
                              at + timedelta(hours=day), source="test", tool_version="t"),
                       shipped_catalog)
        with store.engine.begin() as conn:  # the older snapshot changed by hand
            conn.execute(text("UPDATE results SET status = 'patched' WHERE snapshot_id = 1"))
        export = subprocess.run(
            [sys.executable, "-m", "store", "--db", f"sqlite:///{tmp_path / 'store.db'}",
             "--secrets", os.devnull, "export", "--format", "bundle", "--output",
             str(tmp_path / "b.zip")], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                 "PROXYLOGON_SIGNING_KEY": KEY.decode()})
    finally:
        store.dispose()
    assert export.returncode == 0 and "warning: the store's chains do not verify" in export.stderr
    _refused(_cli(tmp_path / "b.zip", KEY), "did not verify when this bundle was exported")


def test_a_json_text_inside_a_row_is_bounded_before_it_is_parsed(unsigned):
    """Review 2, F5: 20 million tiny values in one row's observation text, inside a string
    where the member's own bounds do not look (a 64 KB zip; 1.6 GB once parsed)."""
    members = _members(unsigned)
    document = json.loads(members["snapshot.json"])
    for payload, reason in (("[" + "[]," * 400_000 + "[]]", "row 0: observation is not a JSON text"),
                         ("[" + "[]," * 100_000 + "[]]", "holds more than 20000 values")):
        document["results"][0]["observation"] = payload
        header = document["header"]  # the digest recomputed, as a forger without a key can
        header["hash"] = document_digest(document)
        manifest = json.loads(members["manifest.json"])
        manifest["snapshot_hash"] = header["hash"]
        members["snapshot.json"] = json.dumps(document).encode()
        members["manifest.json"] = json.dumps(manifest).encode()
        _refused(_cli(_rezip(unsigned, list(members.items()))), reason)


def test_a_snapshot_saved_before_the_key_exports_into_a_bundle_that_verifies(
        tmp_path, shipped_catalog):
    """Review 2, F7: after adopt-key, a bundle of an unsigned (adopted) snapshot verifies with
    the key: the exporter vouches for it under the manifest's HMAC."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    plain = SnapshotStore.open(url)
    at = NOW - timedelta(days=1)
    plain.save(assess([Observation(Host("EX1"), at, "t", exsetup_version="15.1.2176.9")],
                      shipped_catalog, at, source="test", tool_version="t"), shipped_catalog)
    state = plain.verify().state
    plain.dispose()
    keyed = SnapshotStore.open(url, signing_key=KEY)
    try:
        keyed.adopt_key("alice", state)
        path = tmp_path / "old.zip"
        path.write_bytes(build_bundle(keyed, keyed.info(1), NOW))
    finally:
        keyed.dispose()
    assert verify_bundle(path, KEY) == []
    # The vouching is under the HMAC: claimed by hand, it fails.
    members = _members(path)
    manifest = json.loads(members["manifest.json"])
    manifest.pop("hmac")
    members["manifest.json"] = json.dumps(manifest).encode()
    assert any("carries no HMAC" in p for p in verify_bundle(
        _rezip(path, list(members.items()), rehash=False), KEY))


def test_a_zip64_directory_record_is_refused_before_zipfile_reads_it(unsigned):
    """Review 3, F6: zipfile takes the directory's size from a ZIP64 record, past the classic
    record's four entries; a bundle never needs one."""
    members = _members(unsigned)
    path = unsigned.with_name("zip64.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            with archive.open(zipfile.ZipInfo(name), "w", force_zip64=True) as member:
                member.write(data)
    data = path.read_bytes()
    at = data.rfind(b"PK\x05\x06")
    # Mark the directory as ZIP64, as a writer does past 65,535 entries.
    path.write_bytes(data[:at] + b"PK\x06\x06" + bytes(52) + b"PK\x06\x07" + bytes(16)
                     + data[at:])
    _refused(_cli(path), "ZIP64 directory record")
