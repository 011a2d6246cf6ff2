"""Schema 4: every snapshot holds the whole fleet (compliance/fleet.py).

Snapshots get a ``format`` (1: the run's hosts only, as written before; 2: the whole fleet),
the number of hosts the run itself observed and the number with a fresh observation. Result
rows get ``observed_in`` (the snapshot whose run made a carried observation) and ``scopes``
(why the host is in the fleet). Existing snapshots stay exactly as recorded: format 1.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("snapshots", sa.Column("format", sa.Integer, nullable=False,
                                         server_default="1"))
    op.add_column("snapshots", sa.Column("observed_count", sa.Integer, nullable=True))
    op.add_column("snapshots", sa.Column("fresh_count", sa.Integer, nullable=True))
    op.add_column("results", sa.Column("observed_in", sa.Integer, nullable=True))
    op.add_column("results", sa.Column("scopes", sa.Text, nullable=True))
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    op.get_bind().execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="4"))
