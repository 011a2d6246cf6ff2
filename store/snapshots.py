"""Save and read snapshots. A snapshot is written in one transaction: all of it or none.

Each save appends to the hash chain (store/chain.py) under a lock on the chain head, so two
collectors writing at once are serialised; ``verify`` recomputes every digest and link.
The schema is created and upgraded by Alembic migrations (store/migrations) on open.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from compliance.codec import (
    host_from_dict,
    host_to_dict,
    observation_from_dict,
    observation_to_dict,
    verdict_from_dict,
    verdict_to_dict,
)
from compliance.models import Assessment, Host, Snapshot, Status, Verdict
from store import chain, schema

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says which and why."""


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot's header, without its hosts."""

    id: int
    taken_at: datetime
    source: str
    label: str
    tool_version: str
    catalog_version: str
    advisory_id: str
    advisory_version: str
    host_count: int
    counts: dict[str, int]
    scope: str = ""
    discovered_count: int = 0
    sequence: int = 0
    previous_hash: str = ""
    hash: str = ""
    signature: str | None = None
    pruned: bool = False


@dataclass(frozen=True)
class ChainProblem:
    snapshot_id: int | None
    sequence: int | None
    message: str


@dataclass
class VerifyReport:
    checked: int = 0
    pruned: int = 0
    signed: int = 0
    problems: list[ChainProblem] = field(default_factory=list)
    head: str = chain.GENESIS

    @property
    def ok(self) -> bool:
        return not self.problems


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


DEFAULT_LOCK_TIMEOUT = 30.0


def _milliseconds(seconds: float) -> int:
    # 0 means "wait forever" to both databases: never round a short timeout down to it.
    return max(1, round(seconds * 1000))


def _sqlite_pragmas(lock_timeout: float) -> Callable[[Any, Any], None]:
    def enable(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the dashboard read while a collection writes; readers never see a
        # half-written snapshot because each save is one transaction.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_milliseconds(lock_timeout)}")
        cursor.close()
    return enable


def _postgres_lock_timeout(lock_timeout: float) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        # A session setting, not connect_args: those would replace the URL's own ``options``
        # (a search_path, say). Autocommit, so no rollback of the first transaction undoes it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {_milliseconds(lock_timeout)}")
        dbapi_connection.autocommit = autocommit
    return apply


def _migrate(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "snapshots" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")  # made by the first version, before migrations existed
    command.upgrade(config, "head")


class SnapshotStore:
    def __init__(self, engine: Engine, signing_key: bytes | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.engine = engine
        self.signing_key = signing_key
        self.lock_timeout = lock_timeout

    @classmethod
    def open(cls, url: str, signing_key: bytes | None = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> SnapshotStore:
        """Open the store at a SQLAlchemy URL, creating or upgrading its schema.

        ``lock_timeout`` (seconds) bounds how long a write waits for another writer's lock
        (SQLite's busy timeout, PostgreSQL's lock_timeout) before failing with nothing written.
        """
        parsed = make_url(url)
        shown = parsed.render_as_string(hide_password=True)
        try:
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (
                None, "", ":memory:"
            ):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            backend = parsed.get_backend_name()
            engine = create_engine(url)
            if backend == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas(lock_timeout))
            elif backend == "postgresql":
                event.listen(engine, "connect", _postgres_lock_timeout(lock_timeout))
            with engine.begin() as conn:
                if "meta" in inspect(conn).get_table_names():
                    existing = conn.execute(
                        select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
                    ).scalar()
                    if existing is not None and int(existing) > schema.SCHEMA_VERSION:
                        raise StoreError(
                            f"store at {shown} has schema version {existing}, newer than this "
                            f"tool's {schema.SCHEMA_VERSION}: upgrade the tool")
                _migrate(conn)
        except StoreError:
            raise
        except Exception as error:
            raise StoreError(f"cannot open store {shown}: {error}") from error
        return cls(engine, signing_key, lock_timeout)

    # -- writing --------------------------------------------------------------------------

    def save(self, snapshot: Snapshot) -> int:
        """Write a whole snapshot atomically, appended to the chain; returns its id.

        A database error (locked, full, gone) is a ``StoreError``: the transaction is rolled
        back, so the store holds exactly what it held before.
        """
        try:
            return self._save(snapshot)
        except StoreError:
            raise
        except SQLAlchemyError as error:
            shown = self.engine.url.render_as_string(hide_password=True)
            detail = str(error).splitlines()[0]
            hint = ""
            if "locked" in detail or "lock timeout" in detail:
                hint = (f". Another process held the store's write lock for more than "
                        f"{self.lock_timeout:g} s: try again when it is done, or raise "
                        "[store] lock_timeout")
            raise StoreError(f"cannot save the snapshot to {shown}: {detail}; nothing was "
                             f"written (the previous snapshots are intact){hint}") from error

    def _save(self, snapshot: Snapshot) -> int:
        if snapshot.taken_at.tzinfo is None:
            raise StoreError("snapshot time must carry a time zone")
        counts = _dumps(dict(Counter(a.verdict.status.value for a in snapshot.assessments)))
        rows = [
            (position, a.observation.host.name, a.verdict.status.value,
             _dumps(observation_to_dict(a.observation)), _dumps(verdict_to_dict(a.verdict)))
            for position, a in enumerate(snapshot.assessments)
        ]
        inventory = [(position, host.name, _dumps(host_to_dict(host)))
                     for position, host in enumerate(snapshot.discovered)]
        header: dict[str, Any] = {
            "taken_at": snapshot.taken_at.astimezone(UTC).isoformat(), "source": snapshot.source,
            "label": snapshot.label, "tool_version": snapshot.tool_version,
            "catalog_version": snapshot.catalog_version, "advisory_id": snapshot.advisory_id,
            "advisory_version": snapshot.advisory_version, "scope": snapshot.scope,
            "host_count": len(rows), "counts": counts, "discovered_count": len(inventory),
        }
        with self.engine.begin() as conn:
            # Taking the write lock on the chain head first serialises concurrent appends.
            conn.execute(update(schema.meta).where(schema.meta.c.key == "chain_head")
                         .values(value=schema.meta.c.value))
            head = conn.execute(select(schema.meta.c.value)
                                .where(schema.meta.c.key == "chain_head")).scalar_one()
            last_sequence, last_hash = head.split(":")
            header.update(sequence=int(last_sequence) + 1, previous_hash=last_hash)
            value = chain.digest(header, rows, inventory)
            signature = chain.sign(self.signing_key, value) if self.signing_key else None
            inserted = conn.execute(insert(schema.snapshots).values(
                **header, hash=value, signature=signature, pruned=False)).inserted_primary_key
            assert inserted is not None
            snapshot_id = int(inserted[0])
            if rows:
                conn.execute(insert(schema.results), [
                    {"snapshot_id": snapshot_id, "position": p, "host": h, "status": s,
                     "observation": o, "verdict": v} for p, h, s, o, v in rows])
            if inventory:
                conn.execute(insert(schema.discovered), [
                    {"snapshot_id": snapshot_id, "position": p, "host": h, "record": r}
                    for p, h, r in inventory])
            conn.execute(update(schema.meta).where(schema.meta.c.key == "chain_head")
                         .values(value=f"{header['sequence']}:{value}"))
        return snapshot_id

    def record(self, who: str, action: str, snapshot_id: int | None, detail: str = "",
               at: datetime | None = None) -> None:
        """Append to the audit log: who did what (collect, import, export, prune, verify)."""
        when = (at or datetime.now(UTC)).astimezone(UTC).isoformat()
        with self.engine.begin() as conn:
            conn.execute(insert(schema.audit_log).values(at=when, who=who[:255], action=action[:32],
                                                         snapshot_id=snapshot_id, detail=detail))

    def audit_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest audit entries first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.audit_log)
                                .order_by(schema.audit_log.c.id.desc()).limit(limit)).mappings()
            return [dict(row) for row in rows]

    def prune(self, keep: int) -> int:
        """Drop the hosts of all but the newest ``keep`` snapshots; headers and digests stay,
        so the chain remains verifiable. Returns how many snapshots were pruned."""
        with self.engine.begin() as conn:
            ids = conn.execute(
                select(schema.snapshots.c.id).where(schema.snapshots.c.pruned.is_(False))
                .order_by(schema.snapshots.c.sequence.desc()).offset(max(0, keep))
            ).scalars().all()
            if ids:
                conn.execute(delete(schema.results).where(schema.results.c.snapshot_id.in_(ids)))
                conn.execute(delete(schema.discovered)
                             .where(schema.discovered.c.snapshot_id.in_(ids)))
                conn.execute(update(schema.snapshots).where(schema.snapshots.c.id.in_(ids))
                             .values(pruned=True))
        return len(ids)

    # -- reading --------------------------------------------------------------------------

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return not conn.execute(select(func.count()).select_from(schema.snapshots)).scalar()

    def history(self) -> list[SnapshotInfo]:
        """Every snapshot header, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.snapshots).order_by(schema.snapshots.c.taken_at,
                                                  schema.snapshots.c.id)
            ).mappings().all()
        return [_info(row) for row in rows]

    def latest(self) -> SnapshotInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots).order_by(schema.snapshots.c.taken_at.desc(),
                                                  schema.snapshots.c.id.desc()).limit(1)
            ).mappings().first()
        return _info(row) if row else None

    def as_of(self, moment: datetime) -> SnapshotInfo | None:
        """The latest snapshot taken at or before ``moment`` (an aware datetime)."""
        if moment.tzinfo is None:
            raise StoreError("'as of' time must carry a time zone")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots)
                .where(schema.snapshots.c.taken_at <= moment.astimezone(UTC).isoformat())
                .order_by(schema.snapshots.c.taken_at.desc(), schema.snapshots.c.id.desc())
                .limit(1)
            ).mappings().first()
        return _info(row) if row else None

    def info(self, snapshot_id: int) -> SnapshotInfo:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots).where(schema.snapshots.c.id == snapshot_id)
            ).mappings().first()
        if row is None:
            raise StoreError(f"no snapshot with id {snapshot_id}")
        return _info(row)

    def assessments(self, snapshot_id: int) -> list[Assessment]:
        """Every host's observation and recorded verdict, in collection order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.results.c.observation, schema.results.c.verdict)
                .where(schema.results.c.snapshot_id == snapshot_id)
                .order_by(schema.results.c.position)
            ).all()
        return [
            Assessment(observation_from_dict(json.loads(obs)), verdict_from_dict(json.loads(ver)))
            for obs, ver in rows
        ]

    def assessment(self, snapshot_id: int, host: str) -> Assessment | None:
        """One host's observation and verdict in a snapshot (name as stored)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.results.c.observation, schema.results.c.verdict)
                .where(schema.results.c.snapshot_id == snapshot_id,
                       schema.results.c.host == host).limit(1)
            ).first()
        if row is None:
            return None
        return Assessment(observation_from_dict(json.loads(row[0])),
                          verdict_from_dict(json.loads(row[1])))

    def verdicts(self, snapshot_id: int) -> list[Verdict]:
        """Only the recorded verdicts (cheaper than ``assessments`` when observations are not needed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.results.c.verdict)
                .where(schema.results.c.snapshot_id == snapshot_id)
                .order_by(schema.results.c.position)
            ).scalars().all()
        return [verdict_from_dict(json.loads(row)) for row in rows]

    def discovered(self, snapshot_id: int) -> list[Host]:
        """The inventory the run started from, in discovery order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.discovered.c.record)
                .where(schema.discovered.c.snapshot_id == snapshot_id)
                .order_by(schema.discovered.c.position)
            ).scalars().all()
        return [host_from_dict(json.loads(row)) for row in rows]

    def host_timeline(self, host: str) -> list[tuple[SnapshotInfo, dict[str, Any]]]:
        """(snapshot, stored verdict) for every snapshot that holds ``host``, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.snapshots, schema.results.c.verdict)
                .join(schema.results, schema.results.c.snapshot_id == schema.snapshots.c.id)
                .where(func.lower(schema.results.c.host) == host.lower())
                .order_by(schema.snapshots.c.taken_at, schema.snapshots.c.id)
            ).mappings().all()
        return [(_info(row), json.loads(row["verdict"])) for row in rows]

    def raw_header(self, snapshot_id: int) -> dict[str, Any]:
        """The stored header row exactly as hashed (plus id, hash, signature, pruned)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.snapshots)
                               .where(schema.snapshots.c.id == snapshot_id)).mappings().first()
        if row is None:
            raise StoreError(f"no snapshot with id {snapshot_id}")
        return dict(row)

    def raw_rows(self, snapshot_id: int) -> tuple[list[tuple[int, str, str, str, str]],
                                                  list[tuple[int, str, str]]]:
        """The stored rows exactly as hashed: results and inventory."""
        with self.engine.connect() as conn:
            results = conn.execute(
                select(schema.results.c.position, schema.results.c.host, schema.results.c.status,
                       schema.results.c.observation, schema.results.c.verdict)
                .where(schema.results.c.snapshot_id == snapshot_id)
                .order_by(schema.results.c.position)).all()
            inventory = conn.execute(
                select(schema.discovered.c.position, schema.discovered.c.host,
                       schema.discovered.c.record)
                .where(schema.discovered.c.snapshot_id == snapshot_id)
                .order_by(schema.discovered.c.position)).all()
        return [tuple(r) for r in results], [tuple(d) for d in inventory]

    # -- verification ---------------------------------------------------------------------

    def verify(self, key: bytes | None = None) -> VerifyReport:
        """Recompute every digest and link; the report names each snapshot that fails."""
        report = VerifyReport()
        previous = chain.GENESIS
        expected_sequence = 0
        with self.engine.connect() as conn:
            headers = conn.execute(select(schema.snapshots)
                                   .order_by(schema.snapshots.c.sequence)).mappings().all()
            head = conn.execute(select(schema.meta.c.value)
                                .where(schema.meta.c.key == "chain_head")).scalar()
        for row in headers:
            info = _info(row)
            expected_sequence += 1
            report.checked += 1

            def problem(message: str, info: SnapshotInfo = info) -> None:
                report.problems.append(ChainProblem(info.id, info.sequence, message))

            if info.sequence != expected_sequence:
                problem(f"chain position {info.sequence} where {expected_sequence} was expected "
                        "(a snapshot was deleted or inserted)")
                expected_sequence = info.sequence
            if info.previous_hash != previous:
                problem("does not link to the snapshot before it (deleted, inserted or "
                        "reordered snapshots, or a changed predecessor)")
            if info.pruned:
                report.pruned += 1
            else:
                results, inventory = self.raw_rows(info.id)
                if chain.digest(dict(row), results, inventory) != info.hash:
                    problem("content does not match its recorded digest (a stored observation, "
                            "verdict, time or header was changed)")
            if key is not None:
                if chain.signature_ok(key, info.hash, info.signature):
                    report.signed += 1
                else:
                    problem("signature missing or wrong for this key")
            previous = info.hash
        if head is not None and head != f"{expected_sequence}:{previous}":
            report.problems.append(ChainProblem(None, None, f"chain head {head} does not match "
                                                "the last snapshot (the newest were removed?)"))
        report.head = previous
        return report

    def dispose(self) -> None:
        self.engine.dispose()


def _info(row: Any) -> SnapshotInfo:
    counts = {status.value: 0 for status in Status}
    counts.update(json.loads(row["counts"]))
    return SnapshotInfo(
        id=row["id"], taken_at=datetime.fromisoformat(row["taken_at"]), source=row["source"],
        label=row["label"], tool_version=row["tool_version"],
        catalog_version=row["catalog_version"], advisory_id=row["advisory_id"],
        advisory_version=row["advisory_version"], host_count=row["host_count"], counts=counts,
        scope=row["scope"], discovered_count=row["discovered_count"], sequence=row["sequence"],
        previous_hash=row["previous_hash"], hash=row["hash"], signature=row["signature"],
        pruned=bool(row["pruned"]),
    )

