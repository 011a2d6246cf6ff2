"""Schema 6: the schema version is Alembic's revision alone (``alembic_version``); the copy
kept in ``meta.schema_version`` since the first version is dropped.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = sa.table("meta", sa.column("key"), sa.column("value"))
    op.get_bind().execute(sa.delete(meta).where(meta.c.key == "schema_version"))
