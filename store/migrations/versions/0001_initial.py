"""Schema 1: snapshots with their hosts' observations and verdicts, and the inventory.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("taken_at", sa.String(40), nullable=False, index=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("tool_version", sa.String(32), nullable=False),
        sa.Column("catalog_version", sa.String(64), nullable=False),
        sa.Column("advisory_id", sa.String(64), nullable=False),
        sa.Column("advisory_version", sa.String(16), nullable=False),
        sa.Column("host_count", sa.Integer, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("discovered_count", sa.Integer, nullable=False),
    )
    op.create_table(
        "results",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("observation", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, nullable=False),
    )
    op.create_index("ix_results_host", "results", ["host"])
    op.create_table(
        "discovered",
        sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.bulk_insert(sa.table("meta", sa.column("key"), sa.column("value")),
                   [{"key": "schema_version", "value": "1"}])
