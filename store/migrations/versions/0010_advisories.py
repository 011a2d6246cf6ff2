"""Schema 10: each host's verdicts for the other advisories, in brief (issue 19).

A nullable ``advisories`` column of ``results`` (compliance/summary.py ``advisories_text``).
Snapshots saved from now on (format 6) hash it with the row's other summary columns, and
carry the full verdicts in the row's verdict JSON (``others``); the snapshots already stored
keep their format and digest, hold NULL, and read as judged by March 2021 only. A value in a
row of an earlier format matches no digest (store/chain.py).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("results")}
    if "advisories" not in columns:
        op.add_column("results", sa.Column("advisories", sa.Text, nullable=True))
