"""Schema 2: every snapshot chained by digest (store/chain.py); pruning keeps headers.

Existing snapshots are chained in time order, as they stand at the upgrade.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from store.chain import GENESIS, digest

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, no table rebuild: on SQLite a rebuild drops the old table, and with
    # foreign keys on that would cascade-delete every host row.
    op.add_column("snapshots", sa.Column("sequence", sa.Integer, nullable=True))
    op.add_column("snapshots", sa.Column("previous_hash", sa.String(64), nullable=True))
    op.add_column("snapshots", sa.Column("hash", sa.String(64), nullable=True))
    op.add_column("snapshots", sa.Column("signature", sa.String(64), nullable=True))
    op.add_column("snapshots", sa.Column("pruned", sa.Boolean, nullable=False,
                                         server_default=sa.false()))
    conn = op.get_bind()
    previous, sequence = GENESIS, 0
    headers = conn.execute(sa.text(
        "SELECT id, taken_at, source, label, tool_version, catalog_version, advisory_id, "
        "advisory_version, scope, host_count, counts, discovered_count FROM snapshots "
        "ORDER BY taken_at, id")).mappings().all()
    for row in headers:
        sequence += 1
        header = {**row, "sequence": sequence, "previous_hash": previous}
        results = conn.execute(sa.text(
            "SELECT position, host, status, observation, verdict FROM results "
            "WHERE snapshot_id = :id ORDER BY position"), {"id": row["id"]}).all()
        discovered = conn.execute(sa.text(
            "SELECT position, host, record FROM discovered WHERE snapshot_id = :id "
            "ORDER BY position"), {"id": row["id"]}).all()
        value = digest(header, [tuple(r) for r in results], [tuple(d) for d in discovered])
        conn.execute(sa.text("UPDATE snapshots SET sequence = :s, previous_hash = :p, hash = :h "
                             "WHERE id = :id"),
                     {"s": sequence, "p": previous, "h": value, "id": row["id"]})
        previous = value
    op.create_index("uq_snapshots_sequence", "snapshots", ["sequence"], unique=True)
    if conn.dialect.name != "sqlite":  # SQLite cannot add NOT NULL without a rebuild
        for column, kind in (("sequence", sa.Integer()), ("previous_hash", sa.String(64)),
                             ("hash", sa.String(64))):
            op.alter_column("snapshots", column, existing_type=kind, nullable=False)
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="2"))
    conn.execute(sa.insert(meta).values(key="chain_head", value=f"{sequence}:{previous}"))
