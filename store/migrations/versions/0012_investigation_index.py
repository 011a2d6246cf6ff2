"""Schema 12: an index of results on (snapshot, status, investigation state).

The investigation trend of the Overview and the one-page report (issue 21) counts the hosts
of every snapshot shown per (status, state) in one grouped query; with this index the
database answers it from the index alone, instead of reading each row's state past its
observation and verdict JSON (1.2-2 s at 10,000 hosts x 52 snapshots, under 0.1 s from the
index). No row changes: digests and verification are untouched. Building it on a large store
reads every row once (about 2 s at 10,000 x 52 on SQLite).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

NAME = "ix_results_investigation"


def upgrade() -> None:
    # Only when missing: a store whose revision was set back by hand runs this again.
    present = {index["name"] for index in sa.inspect(op.get_bind()).get_indexes("results")}
    if NAME not in present:
        op.create_index(NAME, "results", ["snapshot_id", "status", "investigation"])
