"""Schema 7: the summary columns of each result row (compliance/summary.py).

The pages read these short columns instead of decoding every observation and verdict. New
snapshots (format 4) hash them with the rest of the row. Rows written before keep their
format and digest: the migration derives their columns from the row's own stored JSON
(``store.legacy.fill_summaries``), and ``verify`` checks them against it (they are not signed;
the JSON they come from is). A row whose JSON cannot be read is left without them and named
by ``verify``.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from store.legacy import fill_summaries

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TEXT_COLUMNS = ("fqdn", "product", "cu", "build", "build_source", "release", "site", "dag",
                "roles", "flags", "mitigations", "cves_open", "action", "reason", "observed_at",
                "failure_reason", "failure_detail")


def upgrade() -> None:
    # Only the missing ones: a store whose revision was set back by hand runs this again.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("results")}
    wanted = [*((name, sa.Text) for name in TEXT_COLUMNS), ("known_build", sa.Boolean),
              ("run_failed", sa.Boolean),
              ("indicator_count", sa.Integer)]
    for name, kind in wanted:
        if name not in present:
            op.add_column("results", sa.Column(name, kind, nullable=True))
    fill_summaries(op.get_bind())
