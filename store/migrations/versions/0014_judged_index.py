"""Schema 14: an index of results holding what the deadlines and the demo check read of a row.

Which hosts need work (``SnapshotStore.open_judgements``: the distinct judged values, then the
rows holding the open ones) and whether a snapshot holds demo hosts read a few short columns of
every row of a snapshot. In a row those columns come after its observation and verdict JSON,
so SQLite reads through every row's overflow pages to reach them (about 0.3 s per pass at
50,000 hosts); this index holds them (snapshot, status, flags, roles, indicator count,
investigation state, position, host, scopes), so those reads come from it alone. No row
changes: digests and verification are untouched. Building it on a large store reads every row
once.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NAME = "ix_results_judged"
COLUMNS = ["snapshot_id", "status", "flags", "roles", "indicator_count", "investigation",
           "position", "host", "scopes"]


def upgrade() -> None:
    # Only when missing: a store whose revision was set back by hand runs this again.
    present = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("results")}
    if NAME not in present:
        op.create_index(NAME, "results", COLUMNS)


def downgrade() -> None:
    op.drop_index(NAME, "results")
