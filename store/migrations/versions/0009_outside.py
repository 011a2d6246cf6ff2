"""Schema 9: a snapshot's outside view (issue 18; compliance/outside_record.py).

One JSON document per fingerprinted snapshot: each endpoint's fingerprint in brief and the
namespaces' findings. Snapshots saved from now on (format 5) hash it, or its absence, with the
rest of the snapshot (store/chain.py); the snapshots already stored keep their format and
digest, and read as not fingerprinted.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "outside" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table(
            "outside",
            sa.Column("snapshot_id", sa.Integer,
                      sa.ForeignKey("snapshots.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("document", sa.Text, nullable=False),
        )

