"""Tables of the snapshot store (SQLAlchemy Core, portable to PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from compliance.summary import COLUMNS as SUMMARY_COLUMNS

# The schema's version is its Alembic revision (store/migrations/versions: 2 the hash chain
# and pruning; 3 the audit log; 4 whole-fleet snapshots; 5 the signed audit chain, snapshot ids
# in the digest, signed heads; 6 one version number; 7 the summary columns of results; 8 the
# open items' clocks for deadlines; 9 the outside view; 10 per-advisory verdicts; 11 the
# investigation after the fix; 12 the index of the investigation trend).
# A store at this revision is opened without Alembic; tests/store/test_migrations.py checks
# that it is the head of store/migrations/versions, so a new migration must move it.
HEAD_REVISION = "0014"

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # ISO 8601 with offset: kept as text so what is stored is exactly what was recorded.
    Column("taken_at", String(40), nullable=False, index=True),
    Column("source", String(32), nullable=False),
    Column("label", Text, nullable=False, default=""),
    Column("tool_version", String(32), nullable=False),
    Column("catalog_version", String(64), nullable=False),
    Column("advisory_id", String(64), nullable=False),
    Column("advisory_version", String(16), nullable=False),
    Column("host_count", Integer, nullable=False),
    # Status counts as JSON, so trends need not read every host of every snapshot.
    Column("counts", Text, nullable=False),
    # What the run was pointed at (directory server and base, inventory file), for auditors.
    Column("scope", Text, nullable=False, default=""),
    Column("discovered_count", Integer, nullable=False, default=0),
    # The chain: position, the previous snapshot's digest, this one's, and an optional HMAC.
    Column("sequence", Integer, nullable=False, unique=True),
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signature", String(64), nullable=True),
    # Retention: a pruned snapshot keeps its header and digest, not its hosts.
    Column("pruned", Boolean, nullable=False, default=False),
    # 1: the run's hosts only (before schema 4); 2: the whole fleet (compliance/fleet.py).
    Column("format", Integer, nullable=False, default=1, server_default="1"),
    # Format 2: hosts the run itself observed, and hosts with a fresh observation (coverage).
    Column("observed_count", Integer, nullable=True),
    Column("fresh_count", Integer, nullable=True),
)

results = Table(
    "results",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id", ondelete="CASCADE"),
           primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("observation", Text, nullable=False),
    Column("verdict", Text, nullable=False),
    # Format 2: the snapshot whose run made a carried observation (NULL: this snapshot's run),
    # and the JSON list of scopes that make the host a fleet member.
    Column("observed_in", Integer, nullable=True),
    Column("scopes", Text, nullable=True),
    # Schema 7: what the pages show, filter and count (compliance/summary.py), so they read
    # these instead of decoding the JSON. Hashed from format 4 on; for rows written before,
    # derived by the migration and checked against the JSON by verify. Every page query is by
    # snapshot, which the primary key indexes; a host's timeline uses ix_results_host.
    Column("fqdn", Text, nullable=True),
    Column("product", Text, nullable=True),
    Column("cu", Text, nullable=True),
    Column("build", Text, nullable=True),
    Column("build_source", Text, nullable=True),
    Column("known_build", Boolean, nullable=True),
    Column("release", Text, nullable=True),
    Column("site", Text, nullable=True),
    Column("dag", Text, nullable=True),
    Column("roles", Text, nullable=True),
    Column("flags", Text, nullable=True),
    Column("mitigations", Text, nullable=True),
    Column("cves_open", Text, nullable=True),
    Column("action", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("observed_at", Text, nullable=True),
    Column("failure_reason", Text, nullable=True),
    Column("failure_detail", Text, nullable=True),
    Column("run_failed", Boolean, nullable=True),
    Column("indicator_count", Integer, nullable=True),
    # Schema 10: the other advisories' verdicts in brief (compliance/summary.py
    # advisories_text); NULL for a host judged by the snapshot's own advisory only, which is
    # every row of a snapshot before format 6 (store/chain.py refuses a value there).
    Column("advisories", Text, nullable=True),
    # Schema 11 (issue 21): the investigation after the fix, judged at save for the
    # snapshot's own advisory (compliance/investigation_record.py): its summary columns and
    # its whole record (``investigation_detail``: evidence, window, directive steps) as JSON.
    # Hashed from format 7 on; NULL in every row of an earlier format (store/chain.py refuses
    # a value there), which reads as not investigated.
    Column("investigation", Text, nullable=True),
    Column("investigation_action", Text, nullable=True),
    Column("fixed_at", Text, nullable=True),
    Column("next_scan_due", Text, nullable=True),
    Column("steps_missed", Integer, nullable=True),
    Column("investigation_detail", Text, nullable=True),
)

# The summary columns in compliance.summary.COLUMNS order (host and status included).
SUMMARY = tuple(results.c[name] for name in SUMMARY_COLUMNS)

Index("ix_results_host", results.c.host)
# Schema 12: the investigation trend (``SnapshotStore.investigation_trend``) counts (status,
# state) over many snapshots from this index alone; reading the state from the rows means
# reading past their observation and verdict JSON (1.2-2 s at 10,000 hosts x 52 snapshots,
# under 0.1 s from the index).
Index("ix_results_investigation", results.c.snapshot_id, results.c.status,
      results.c.investigation)
# Schema 14: which hosts need work (the judged columns, store.snapshots._JUDGED) and the demo
# check (scopes) read from this index alone, not through each row's JSON.
Index("ix_results_judged", results.c.snapshot_id, results.c.status, results.c.flags,
      results.c.roles, results.c.indicator_count, results.c.investigation, results.c.position,
      results.c.host, results.c.scopes)

# The inventory a run started from (every server AD knows), so coverage can be shown.
discovered = Table(
    "discovered",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id", ondelete="CASCADE"),
           primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("record", Text, nullable=False),
)

# Schema 8: per snapshot, each host that needs work and when its current open stretch began
# (store/clock.py): derived at save from the previous snapshot's rows, checked by verify.
open_items = Table(
    "open_items",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id", ondelete="CASCADE"),
           primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("host", String(255), nullable=False),
    Column("since", String(40), nullable=False),
    Column("pruned_before", Boolean, nullable=False, default=False),
)

# Schema 9: a snapshot's outside view (compliance/outside_record.py: each endpoint's fingerprint
# in brief and the namespaces' findings), one JSON document per snapshot that has one; covered
# by the snapshot's digest from format 5 on (store/chain.py), and removed with its hosts by
# pruning. No row: not fingerprinted.
outside = Table(
    "outside",
    metadata,
    Column("snapshot_id", Integer, ForeignKey("snapshots.id", ondelete="CASCADE"),
           primary_key=True),
    Column("document", Text, nullable=False),
)

# Who collected, imported or exported what, and when (read by auditors).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False, index=True),
    Column("who", String(255), nullable=False),
    Column("action", String(32), nullable=False),
    Column("snapshot_id", Integer, nullable=True),
    Column("detail", Text, nullable=False),
    # Schema 5: the audit chain (store/chain.py entry_digest), like the snapshots'.
    Column("sequence", Integer, nullable=True, unique=True),
    Column("previous_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
    Column("signature", String(64), nullable=True),
)
