"""Schema 5: the audit log becomes a signed chain; pruning is one of its entries.

Existing audit entries are chained in the order they were written. Snapshots already pruned
are named, with their position and digest, in one ``upgrade`` entry: from now on a snapshot
without its hosts is accounted for only by an entry of the audit chain (store/chain.py).
Snapshots stay exactly as recorded; new ones are format 3 (their id in the digest). The chain
heads get (empty) signature rows.

Nothing here is signed, even when the store is opened with the signing key: a migration runs
on whatever the database holds, and anyone who can write it can make it look older and have
the migration run again. What was written before schema 5 is accepted under a key only after
a person adopts it (``python -m store adopt-key``), which is itself a signed entry.

Revision ID: 0005
Revises: 0004
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from store import chain

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild), as in 0002.
    op.add_column("audit_log", sa.Column("sequence", sa.Integer, nullable=True))
    op.add_column("audit_log", sa.Column("previous_hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("signature", sa.String(64), nullable=True))
    op.create_index("uq_audit_log_sequence", "audit_log", ["sequence"], unique=True)
    conn = op.get_bind()
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    audit = sa.table("audit_log", sa.column("id"), sa.column("at"), sa.column("who"),
                     sa.column("action"), sa.column("snapshot_id"), sa.column("detail"),
                     sa.column("sequence"), sa.column("previous_hash"), sa.column("hash"),
                     sa.column("signature"))
    snapshots = sa.table("snapshots", sa.column("id"), sa.column("sequence"),
                         sa.column("hash"), sa.column("pruned"))
    entries = [dict(row) for row in conn.execute(
        sa.select(audit.c.id, audit.c.at, audit.c.who, audit.c.action, audit.c.snapshot_id,
                  audit.c.detail).order_by(audit.c.id)).mappings()]
    pruned = conn.execute(sa.select(snapshots.c.id, snapshots.c.sequence, snapshots.c.hash)
                          .where(snapshots.c.pruned.is_(True))
                          .order_by(snapshots.c.sequence)).all()
    if pruned:
        entries.append({
            "id": None, "at": datetime.now(UTC).isoformat(), "who": "schema upgrade",
            "action": "upgrade", "snapshot_id": None,
            "detail": json.dumps({"schema": 5, "pruned": [
                {"id": i, "sequence": s, "hash": h} for i, s, h in pruned]}, sort_keys=True)})
    previous = chain.GENESIS
    for sequence, entry in enumerate(entries, start=1):
        entry.update(sequence=sequence, previous_hash=previous)
        entry["hash"] = chain.entry_digest(entry)
        fields = {"sequence": sequence, "previous_hash": previous, "hash": entry["hash"],
                  "signature": None}
        if entry["id"] is None:
            conn.execute(sa.insert(audit).values(
                **{k: entry[k] for k in ("at", "who", "action", "snapshot_id", "detail")},
                **fields))
        else:
            conn.execute(sa.update(audit).where(audit.c.id == entry["id"]).values(**fields))
        previous = entry["hash"]
    audit_head = f"{len(entries)}:{previous}"
    conn.execute(sa.insert(meta), [
        {"key": "audit_head", "value": audit_head},
        {"key": "audit_head_signature", "value": ""},
        {"key": "chain_head_signature", "value": ""},
    ])
    conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="5"))
