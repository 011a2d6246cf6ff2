"""The ``outside`` table: a snapshot's outside view as one JSON document (compliance/outside_record.py).

Written in the snapshot's own transaction and covered by its digest from format 5 on (the
document, or its absence: store/chain.py); pruning removes it with the snapshot's hosts. A
snapshot without a row was not fingerprinted (every snapshot saved before schema 9).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select

from store import schema


def read(conn: Connection, snapshot_id: int) -> str | None:
    """The stored document of a snapshot, exactly as hashed; None when it has none."""
    text = conn.execute(select(schema.outside.c.document)
                        .where(schema.outside.c.snapshot_id == snapshot_id)).scalar()
    return None if text is None else str(text)


def at_sequence(conn: Connection, sequence: int) -> tuple[int | None, str | None]:
    """(id, stored document) of the snapshot at chain position ``sequence``; (None, None) for
    an empty chain."""
    snapshot_id = conn.execute(select(schema.snapshots.c.id)
                               .where(schema.snapshots.c.sequence == sequence)).scalar()
    if snapshot_id is None:
        return None, None
    return int(snapshot_id), read(conn, int(snapshot_id))


def write(conn: Connection, snapshot_id: int, document: str) -> None:
    conn.execute(insert(schema.outside).values(snapshot_id=snapshot_id, document=document))


def forget(conn: Connection, snapshot_ids: Sequence[int]) -> None:
    """Pruning: the documents go with the snapshots' hosts."""
    conn.execute(delete(schema.outside).where(schema.outside.c.snapshot_id.in_(snapshot_ids)))
