"""Save and read snapshots. A snapshot is written in one transaction: all of it or none."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select
from sqlalchemy.engine import make_url

from compliance.codec import (
    host_from_dict,
    host_to_dict,
    observation_from_dict,
    observation_to_dict,
    verdict_from_dict,
    verdict_to_dict,
)
from compliance.models import Assessment, Host, Snapshot, Status
from store import schema


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


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _enable_sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while a collection writes; readers never see a
    # half-written snapshot because each save is one transaction.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class SnapshotStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> SnapshotStore:
        """Open (and create if needed) the store at a SQLAlchemy URL."""
        parsed = make_url(url)
        try:
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (
                None, "", ":memory:"
            ):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url)
            if parsed.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _enable_sqlite_wal)
            schema.metadata.create_all(engine)
            with engine.begin() as conn:
                existing = conn.execute(
                    select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
                ).scalar()
                if existing is None:
                    conn.execute(insert(schema.meta).values(
                        key="schema_version", value=str(schema.SCHEMA_VERSION)))
                elif int(existing) > schema.SCHEMA_VERSION:
                    raise StoreError(
                        f"store at {parsed.render_as_string(hide_password=True)} has schema "
                        f"version {existing}, newer than this tool's {schema.SCHEMA_VERSION}: "
                        "upgrade the tool"
                    )
        except StoreError:
            raise
        except Exception as error:
            raise StoreError(
                f"cannot open store {parsed.render_as_string(hide_password=True)}: {error}"
            ) from error
        return cls(engine)

    def save(self, snapshot: Snapshot) -> int:
        """Write a whole snapshot atomically and return its id."""
        if snapshot.taken_at.tzinfo is None:
            raise StoreError("snapshot time must carry a time zone")
        counts = Counter(a.verdict.status.value for a in snapshot.assessments)
        rows = [
            {
                "position": position,
                "host": a.observation.host.name,
                "status": a.verdict.status.value,
                "observation": _dumps(observation_to_dict(a.observation)),
                "verdict": _dumps(verdict_to_dict(a.verdict)),
            }
            for position, a in enumerate(snapshot.assessments)
        ]
        with self.engine.begin() as conn:
            inserted = conn.execute(
                insert(schema.snapshots).values(
                    taken_at=snapshot.taken_at.astimezone(UTC).isoformat(), source=snapshot.source,
                    label=snapshot.label, tool_version=snapshot.tool_version,
                    catalog_version=snapshot.catalog_version, advisory_id=snapshot.advisory_id,
                    advisory_version=snapshot.advisory_version,
                    host_count=len(snapshot.assessments), counts=_dumps(dict(counts)),
                    scope=snapshot.scope, discovered_count=len(snapshot.discovered),
                )
            ).inserted_primary_key
            assert inserted is not None
            snapshot_id = inserted[0]
            if rows:
                conn.execute(insert(schema.results),
                             [{"snapshot_id": snapshot_id, **row} for row in rows])
            if snapshot.discovered:
                conn.execute(insert(schema.discovered), [
                    {"snapshot_id": snapshot_id, "position": position, "host": host.name,
                     "record": _dumps(host_to_dict(host))}
                    for position, host in enumerate(snapshot.discovered)
                ])
        return int(snapshot_id)

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

    def discovered(self, snapshot_id: int) -> list[Host]:
        """The inventory the run started from, in discovery order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.discovered.c.record)
                .where(schema.discovered.c.snapshot_id == snapshot_id)
                .order_by(schema.discovered.c.position)
            ).scalars().all()
        return [host_from_dict(json.loads(row)) for row in rows]

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
        scope=row["scope"], discovered_count=row["discovered_count"],
    )
