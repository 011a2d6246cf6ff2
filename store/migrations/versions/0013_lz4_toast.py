"""Schema 13: on PostgreSQL, the large texts of a row are compressed with LZ4.

An observation, a verdict, an investigation record (about 1-2 kB each) and a discovered
inventory record are stored out of line and compressed ("TOAST"); PostgreSQL's default, pglz,
took about 0.1 s of the server's CPU per 10,000-host snapshot to decompress when verify reads
them, half of verify's time at 10,000 hosts x 52 snapshots on two cores (bench/store.py). LZ4
decompresses several times faster. Values are unchanged (compression is how a value is
stored, not what it is): digests and verification are untouched. Applies to values written
from now on; rows already stored keep pglz until rewritten (PostgreSQL never recompresses on
its own). A server without LZ4 (built without it, or before PostgreSQL 14) is left as it is,
and SQLite has nothing to change.

Revision ID: 0013
Revises: 0012
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = {"results": ("observation", "verdict", "investigation_detail"),
           "discovered": ("record",)}


def _alter(method: str) -> str:
    statements = " ".join(
        f"ALTER TABLE {table} " + ", ".join(
            f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in columns) + ";"
        for table, columns in COLUMNS.items())
    # Only where the server offers LZ4: default_toast_compression lists it (PostgreSQL 14+
    # built with LZ4); the statements inside are parsed only when run.
    return ("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_settings WHERE name = "
            "'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN "
            f"{statements} END IF; END $$")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_alter("lz4"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_alter("pglz"))
