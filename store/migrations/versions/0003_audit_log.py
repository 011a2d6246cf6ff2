"""Schema 3: the audit log of collections, imports and exports.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False, index=True),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("snapshot_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    op.get_bind().execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="3"))
