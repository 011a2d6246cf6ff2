"""Schema 11: each host's investigation after the fix (issue 21).

Nullable columns of ``results``: the summary columns the pages filter and count on
(``investigation``, ``investigation_action``, ``fixed_at``, ``next_scan_due``,
``steps_missed``: compliance/summary.py) and the whole record (``investigation_detail``:
compliance/investigation_record.py). Snapshots saved from now on (format 7) judge every member
at save and hash them with the row. The snapshots already stored keep their format and digest
and hold NULL: such a row reads as not investigated ("no traces recorded (collected before
issue 21)"), never as clean, and a value written there later matches no digest
(store/chain.py), so verification is not weakened.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

COLUMNS = (("investigation", sa.Text), ("investigation_action", sa.Text), ("fixed_at", sa.Text),
           ("next_scan_due", sa.Text), ("steps_missed", sa.Integer),
           ("investigation_detail", sa.Text))


def upgrade() -> None:
    # Only the missing ones: a store whose revision was set back by hand runs this again.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("results")}
    for name, kind in COLUMNS:
        if name not in present:
            op.add_column("results", sa.Column(name, kind, nullable=True))
