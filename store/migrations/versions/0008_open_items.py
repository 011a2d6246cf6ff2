"""Schema 8: the open items' clocks (store/clock.py), for deadlines.

For every snapshot, each host that needs work and the time of the first snapshot of its
current open stretch. Derived from the snapshots already stored, in chain order; ``verify``
derives them again and names any row that differs.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from store.clock import backfill
from store.snapshots import open_rows

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if "open_items" not in sa.inspect(bind).get_table_names():
        op.create_table(
            "open_items",
            sa.Column("snapshot_id", sa.Integer,
                      sa.ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("position", sa.Integer, primary_key=True),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("since", sa.String(40), nullable=False),
            sa.Column("pruned_before", sa.Boolean, nullable=False, server_default=sa.false()),
        )
    # The results table of this schema has no investigation column (schema 11 adds it).
    columns = {c["name"] for c in sa.inspect(bind).get_columns("results")}
    backfill(bind, lambda conn, snapshot_id: open_rows(
        conn, snapshot_id, investigations="investigation" in columns))
