"""Save and read snapshots. A snapshot is written in one transaction: all of it or none.

Each save appends to the hash chain (store/chain.py) under a lock on the chain head, so two
collectors writing at once are serialised; ``verify`` recomputes every digest and link.

Every snapshot saved holds the whole fleet (format 2): under the same lock, the run's fresh
observations are composed with the previous snapshot's fleet (compliance/fleet.py), so a
partial run, an import or a second collector never shrinks the fleet. Snapshots written
before that (format 1) hold only their run's hosts and stay exactly as recorded; ``fleet()``
composes them the same way when they are read.
The schema is created and upgraded by Alembic migrations (store/migrations) on open. Alembic is
imported only when a store is not at ``schema.HEAD_REVISION`` (a third of a second of every
dashboard page's first run, otherwise).
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    Select,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from compliance.catalog import Catalog
from compliance.codec import (
    host_from_dict,
    host_to_dict,
    observation_from_dict,
    observation_to_dict,
    stored_assessment,
    stored_verdict_to_dict,
    verdict_from_dict,
)
from compliance.evaluate import Policy, evaluate
from compliance.fleet import DEMO, compose, fresh_count, observed_count
from compliance.investigation import Investigation, InvestigationState, judge_observation
from compliance.investigation_record import dumps as investigation_dumps
from compliance.investigation_record import loads as investigation_loads
from compliance.models import (
    Assessment,
    BuildSource,
    Flag,
    Host,
    Observation,
    Snapshot,
    Status,
    Verdict,
)
from compliance.outside_record import EndpointRecord, OutsideRecord, apply_view, carry
from compliance.outside_record import dumps as outside_dumps
from compliance.outside_record import loads as outside_loads
from compliance.summary import COLUMNS as SUMMARY_COLUMNS
from compliance.summary import SEPARATOR, HostSummary, summarise
from compliance.verdicts import judge_others
from compliance.worklist import priority
from store import chain, clock, legacy, schema
from store import outside as outside_table
from store.verification import (
    GENESIS_HEAD,
    ChainProblem,
    RowCheck,
    VerifyReport,
    adoption_detail,
    check_rows,
    header_record,
)
from store.verification import verify as verify_chains

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger(__name__)
# No deadline clock starts before this (Exchange 2010 shipped in 2009): an earlier one is forged.
EARLIEST_CLOCK = datetime(2000, 1, 1, tzinfo=UTC)
# verify hashes the rows in this process and worker processes, one per core in all (at most
# MAX_WORKERS), once there are this many rows to hash again: about a second of them on one
# core, and a worker's start (importing SQLAlchemy and the store) is a fraction of that.
PARALLEL_ROWS = 50_000
# Rows psycopg receives at a time while verify hashes them (_driver_rows): 250 rows (~2 MB)
# are hashed while still in the CPU's cache; chunks of 2,000 took a sixth longer.
STREAM_ROWS = 250
# One snapshot's rows as a caller read them for ``verify(only_rows=...)``: results (ROW_KEYS
# order), inventory (position, host, record), the outside document or None.
OnlyRows = tuple[Sequence[tuple[Any, ...]], Sequence[tuple[Any, ...]], str | None]
HOSTS_PER_QUERY = 10_000  # names in one IN (...): SQLite 3.32+ allows 32,766, PostgreSQL 65,535
MAX_WORKERS = 4


class StoreError(RuntimeError):
    """The store cannot be opened or written; the message says which and why."""


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot's header, without its hosts."""

    id: int
    taken_at: datetime
    source: str
    label: str
    tool_version: str
    catalog_version: str
    advisory_id: str
    advisory_version: str
    host_count: int
    counts: dict[str, int]
    scope: str = ""
    discovered_count: int = 0
    sequence: int = 0
    previous_hash: str = ""
    hash: str = ""
    signature: str | None = None
    pruned: bool = False
    format: int = 1
    observed_count: int | None = None  # format 2: hosts this snapshot's run observed
    fresh_count: int | None = None     # format 2: hosts with a fresh observation

    @property
    def fleet(self) -> bool:
        """Whether the snapshot holds the whole fleet (format 2), not only its run's hosts."""
        return self.format >= 2

    @property
    def coverage(self) -> tuple[int, int]:
        """(hosts with a fresh observation, hosts in the fleet); for a format 1 snapshot,
        (hosts assessed, servers in its inventory) as recorded then."""
        if self.fresh_count is not None:
            return self.fresh_count, self.host_count
        return self.host_count, max(self.host_count, self.discovered_count)


@dataclass(frozen=True)
class OpenSince:
    """When a host's current open stretch began (aware UTC), and whether pruned snapshots may
    hide an earlier start (then ``at`` is the earliest they allow)."""

    at: datetime
    pruned_before: bool = False


def _dumps(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


DEFAULT_LOCK_TIMEOUT = 30.0


def _milliseconds(seconds: float) -> int:
    # 0 means "wait forever" to both databases: never round a short timeout down to it.
    return max(1, round(seconds * 1000))


def _sqlite_pragmas(lock_timeout: float) -> Callable[[Any, Any], None]:
    def enable(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching a new store to WAL takes its lock, and a process
        # that found another migrating it gave up at once ("database is locked") before the
        # timeout was set.
        cursor.execute(f"PRAGMA busy_timeout={_milliseconds(lock_timeout)}")
        # WAL lets the dashboard read while a collection writes; readers never see a
        # half-written snapshot because each save is one transaction.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
    return enable


def _postgres_session(lock_timeout: float) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        # A session setting, not connect_args: those would replace the URL's own ``options``
        # (a search_path, say). Autocommit, so no rollback of the first transaction undoes it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {_milliseconds(lock_timeout)}")
            # PostgreSQL's own operators and functions before any schema's: whoever owns the
            # tables can put their schema before pg_catalog on the search path (a role's or
            # database's setting) and define an "=" of the same types there, which every
            # query would then call in this session, with this role (CVE-2018-1058's
            # pattern). pg_catalog named in the path is dropped from it, so PostgreSQL
            # searches it first, as it does when it is not named (naming it first would make
            # it where new tables go); the rest of the path (the URL's schema) stays.
            cursor.execute("SELECT pg_catalog.current_setting('search_path')")
            path = str(cursor.fetchone()[0])
            kept = _without_pg_catalog(path)
            if kept != path:
                cursor.execute("SELECT pg_catalog.set_config('search_path', %s, false)",
                               (kept,))
        dbapi_connection.autocommit = autocommit
    return apply


# One entry of a search_path setting: a quoted identifier ("" inside it) or plain text.
_PATH_ENTRY = re.compile(r'\s*("(?:[^"]|"")*"|[^,]*?)\s*(?:,|$)')


def _without_pg_catalog(path: str) -> str:
    """``path`` (a search_path setting) without entries naming pg_catalog; unchanged when it
    names none. Empty when nothing else is left (PostgreSQL then searches pg_catalog only)."""
    entries = [m.group(1) for m in _PATH_ENTRY.finditer(path) if m.group(1)]
    kept = [e for e in entries if e.lower() != "pg_catalog" and e != '"pg_catalog"']
    return path if len(kept) == len(entries) else ", ".join(kept) or "''"


def reading_engine(url: str) -> Engine:
    """An engine for a process that only reads the store at ``url`` (verify's workers, the
    dashboard's checker child): on PostgreSQL with the session settings ``open`` gives its own
    (``_postgres_session``: PostgreSQL's operators first on the search path)."""
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_session(DEFAULT_LOCK_TIMEOUT))
    return engine


def _config() -> Any:  # alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _refuse_newer(connection: Connection, shown: str) -> None:
    """The store's schema is its Alembic revision: one this tool has no script for was made
    by a newer version of the tool (``StoreError``: upgrade the tool)."""
    revision = _revision(connection)
    if revision in (None, schema.HEAD_REVISION):
        return
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config())
    known = {script.revision for script in scripts.walk_revisions()}
    if revision is not None and revision not in known:
        raise StoreError(f"store at {shown} has schema revision {revision}, newer than this "
                         f"tool's {scripts.get_current_head()}: upgrade the tool")


def _refuse_foreign(connection: Connection, shown: str) -> None:
    """The tool creates no trigger and no view, and turns on no row-level security: any of them
    in the store could change what the tool writes, or reads back, behind its back
    (``StoreError`` naming it; on PostgreSQL also a store table that is a view, ``_relations``,
    which its rules catalogue does not list)."""
    if connection.dialect.name == "sqlite":
        found = connection.execute(text(
            "SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('trigger', 'view')"
        )).scalars().all()
    elif connection.dialect.name == "postgresql":
        found = connection.execute(text(
            "SELECT 'trigger ' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = "
            "t.tgrelid WHERE NOT t.tgisinternal AND c.relname IN ('meta', 'snapshots', "
            "'results', 'discovered', 'outside', 'audit_log') UNION ALL SELECT 'rule ' || "
            "rulename FROM pg_rules WHERE tablename IN ('meta', 'snapshots', 'results', "
            "'discovered', 'outside', 'audit_log')")).scalars().all()
    else:
        found = []
    # A view in place of a store table, row-level security (pg_rules lists neither).
    found = [*found, *(f"{what} on table {name}" for name, what in _relations(connection))]
    if found:
        raise StoreError(f"store at {shown} holds {', '.join(found[:5])}, which this tool never "
                         "creates: it could change what the tool writes. Remove it (and find "
                         "out who added it) before using the store")


def _revision(connection: Connection) -> str | None:
    """The store's Alembic revision; ``None`` for a store made before migrations, or empty."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if revision is None else str(revision)


# PostgreSQL advisory lock key of a store's migration (any constant: "PLMIGRATE" in ASCII).
MIGRATION_LOCK_KEY = 0x504C4D49475241
# How long a process waits for another's migration of a SQLite store (migration 0008 took 17 s
# on 520,000 rows).
MIGRATION_WAIT_SECONDS = 600.0


def _migration_lock(backend: str, database: str | None) -> AbstractContextManager[object]:
    """A lock file beside a SQLite store's file (``<file>.migrate.lock``), held while one
    process migrates it; nothing for PostgreSQL (an advisory lock in the transaction) or a
    store no other process can open (in memory, a URI filename)."""
    if backend != "sqlite" or database in (None, "", ":memory:") or str(database).startswith("file:"):
        return nullcontext()
    from filelock import FileLock

    return FileLock(f"{database}.migrate.lock", timeout=MIGRATION_WAIT_SECONDS)


class _OpenLock:
    """The migration lock around a whole open of a SQLite file store, when it can be had.

    Switching a new store to WAL takes an exclusive lock SQLite does not always wait for (its
    busy handler is skipped when waiting could deadlock): four processes opening a new store
    together saw "database is locked" from ``PRAGMA journal_mode=WAL`` on a loaded machine.
    So the first connection, the schema check and any migration run under the lock file.
    (Reading the file's header to tell a settled store from a new one would open a second
    descriptor on it, and closing that drops every POSIX lock SQLite holds on the file in this
    process.) Where no lock file can be made (a read-only folder or file system), the store
    opens without it.
    """

    def __init__(self, backend: str, database: str | None) -> None:
        self._lock = _migration_lock(backend, database)
        self.held = False

    def __enter__(self) -> _OpenLock:
        try:
            self._lock.__enter__()
            self.held = True
        except OSError as error:  # no lock file here (read-only folder or file system)
            if not isinstance(error, PermissionError) and error.errno not in (
                    errno.EROFS, errno.EACCES):
                raise
            self.held = False
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.held:
            self._lock.__exit__(None, None, None)  # releases; never swallows the error


def _published(observation: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (internal, external) published names a stored observation's host holds; none from
    a damaged or forged text (verify names the row), which never stops a page."""
    try:
        host = json.loads(observation).get("host")
    except (ValueError, RecursionError, AttributeError):
        return (), ()
    if not isinstance(host, dict):
        return (), ()

    def names(value: Any) -> tuple[str, ...]:
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()

    return names(host.get("internal_names")), names(host.get("external_names"))


def _migrate(connection: Connection) -> None:
    if _revision(connection) == schema.HEAD_REVISION:
        return  # nothing to do: Alembic is not even imported
    from alembic import command

    config = _config()
    config.attributes["connection"] = connection
    tables = set(inspect(connection).get_table_names())
    if "snapshots" in tables and "alembic_version" not in tables:
        command.stamp(config, "0001")  # made by the first version, before migrations existed
    command.upgrade(config, "head")


class SnapshotStore:
    def __init__(self, engine: Engine, signing_key: bytes | None = None,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        self.engine = engine
        self.signing_key = signing_key
        self.lock_timeout = lock_timeout

    @classmethod
    def open(cls, url: str, signing_key: bytes | None = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> SnapshotStore:
        """Open the store at a SQLAlchemy URL, creating or upgrading its schema.

        ``lock_timeout`` (seconds) bounds how long a write waits for another writer's lock
        (SQLite's busy timeout, PostgreSQL's lock_timeout) before failing with nothing written.
        """
        try:
            parsed = make_url(url)
        except Exception:  # the URL may hold a password: it is not repeated
            raise StoreError("the store URL is not a database URL (expected e.g. "
                             "sqlite:///data/compliance.db or postgresql+psycopg://user@host/db)"
                             ) from None
        shown = parsed.render_as_string(hide_password=True)
        try:
            # A SQLite URI filename (file:...?mode=ro&uri=true) names an existing file: making
            # its "parent" would leave a directory called "file:" wherever the tool ran.
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (
                None, "", ":memory:"
            ) and not parsed.database.startswith("file:"):
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            backend = parsed.get_backend_name()
            engine = create_engine(url)
            if backend == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas(lock_timeout))
            elif backend == "postgresql":
                event.listen(engine, "connect", _postgres_session(lock_timeout))
            with _OpenLock(backend, parsed.database) as opening:
                with engine.begin() as conn:  # the first connection sets the journal mode
                    _refuse_newer(conn, shown)
                    _refuse_foreign(conn, shown)
                    current = _revision(conn) == schema.HEAD_REVISION
                if not current:
                    # One process migrates at a time: two that found a new store both created
                    # its tables, and the second failed ("table meta already exists"; a
                    # dashboard and a collector started together). The next finds it at head.
                    # Under the lock already, unless its file could not be made.
                    with (nullcontext() if opening.held else
                          _migration_lock(backend, parsed.database)), engine.begin() as conn:
                        if backend == "postgresql":
                            # lock_timeout (the store's, 30 s) bounds advisory waits too:
                            # waiting for another's migration gets MIGRATION_WAIT_SECONDS.
                            conn.execute(text(f"SET LOCAL lock_timeout = "
                                              f"'{_milliseconds(MIGRATION_WAIT_SECONDS)}ms'"))
                            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                         {"key": MIGRATION_LOCK_KEY})
                        _refuse_newer(conn, shown)
                        _migrate(conn)
        except StoreError:
            raise
        except Exception as error:
            # One line: SQLAlchemy appends a "Background on this error" link on a second one.
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise StoreError(f"cannot open store {shown}: {detail}") from error
        return cls(engine, signing_key, lock_timeout)

    # -- writing --------------------------------------------------------------------------

    def save(self, run: Snapshot, catalog: Catalog, policy: Policy | None = None,
             outside: Sequence[EndpointRecord] = (), others: Sequence[Catalog] = ()) -> int:
        """Append a snapshot of the whole fleet, atomically; returns its id.

        ``run`` holds the run's fresh observations (``compliance.evaluate.assess``). Under the
        chain-head lock, every other member of the latest snapshot's fleet is carried forward
        with its observation unchanged and re-graded at ``run.taken_at`` by ``catalog`` and
        ``policy``; members of a directory scope the run listed completely and did not find
        leave the fleet (compliance/fleet.py).

        ``outside``: the endpoints the run fingerprinted. With the previous snapshot's that
        the run did not read again (while fresh: compliance/outside_record.py ``carry``), they
        are reconciled with the composed fleet (flags, evidence, actions; never a status) and
        stored with the snapshot, under its digest (``outside()`` reads them back).

        ``others``: the catalogues of the other advisories (``compliance.catalog.
        load_catalogs()[1:]``); every member is judged by each at ``run.taken_at`` too
        (compliance/verdicts.py), kept in ``Assessment.others``.

        A database error (locked, full, gone) is a ``StoreError``: the transaction is rolled
        back, so the store holds exactly what it held before.
        """
        try:
            return self._save(run, catalog, policy or Policy(), outside, others)
        except StoreError:
            raise
        except SQLAlchemyError as error:
            raise self._write_error(error, "save the snapshot") from error

    def _save(self, run: Snapshot, catalog: Catalog, policy: Policy,
              outside: Sequence[EndpointRecord], others: Sequence[Catalog]) -> int:
        if run.taken_at.tzinfo is None:
            raise StoreError("snapshot time must carry a time zone")
        inventory = [(position, host.name, _dumps(host_to_dict(host)))
                     for position, host in enumerate(run.discovered)]
        with self.engine.begin() as conn:
            # Taking the write lock on the chain head first serialises concurrent appends, and
            # the fleet is read under it: a second collector's run is composed with the first's.
            head = self._head(conn, "chain_head", lock=True)
            self._refuse_unsigned(conn)
            self._guard(conn, "chain_head", head)
            last_sequence, last_hash = head.split(":")
            # A carried observation's stored text is written back as it was.
            texts: dict[int, tuple[Observation, str]] = {}
            fixes: dict[str, datetime] = {}
            previous = self._members_before(
                conn, int(last_sequence) + 1, last_hash, texts=texts, fixes=fixes,
                # A failed attempt may leave a member's reading in place: decode those.
                skip={a.observation.host.name.lower(): a.observation.observed_at
                      for a in run.assessments if a.observation.failure is None})
            snapshot = compose(previous, run,
                               lambda obs, at: evaluate(obs, catalog, at, policy)).snapshot
            # The outside view as known now (the run's, and the previous one's still fresh),
            # reconciled with the whole fleet: a namespace is judged against every known server.
            assessments, seen = apply_view(snapshot.assessments, carry(
                outside, *self._outside_before(conn, int(last_sequence)), snapshot.assessments,
                run.taken_at, policy), catalog, run.taken_at, policy)
            snapshot = replace(snapshot, assessments=judge_others(assessments, others,
                                                                  run.taken_at, policy))
            investigations: Sequence[Investigation | None] = (
                _investigations(snapshot.assessments, catalog, run.taken_at, fixes)
                if chain.CURRENT_FORMAT >= chain.INVESTIGATION_FORMAT
                else [None] * len(snapshot.assessments))  # a format that holds none
            document = None if seen is None else outside_dumps(seen)
            counts = _dumps(dict(Counter(a.verdict.status.value for a in snapshot.assessments)))
            scope_texts: dict[tuple[str, ...], str] = {}  # a fleet has few distinct scope sets

            def scope_text(scopes: tuple[str, ...]) -> str:
                if scopes not in scope_texts:
                    scope_texts[scopes] = _dumps(list(scopes))
                return scope_texts[scopes]

            rows = [
                (position, a.observation.host.name, a.verdict.status.value,
                 _stored_text(texts, a.observation) or _dumps(observation_to_dict(a.observation)),
                 _dumps(stored_verdict_to_dict(a)), a.observed_in,
                 scope_text(a.scopes), *_summary_values(a, found))
                for position, (a, found) in enumerate(zip(snapshot.assessments, investigations,
                                                          strict=True))
            ]
            header: dict[str, Any] = {
                "taken_at": run.taken_at.astimezone(UTC).isoformat(), "source": run.source,
                "label": run.label, "tool_version": run.tool_version,
                "catalog_version": run.catalog_version, "advisory_id": run.advisory_id,
                "advisory_version": run.advisory_version, "scope": run.scope,
                "host_count": len(rows), "counts": counts, "discovered_count": len(inventory),
                "sequence": int(last_sequence) + 1, "previous_hash": last_hash,
                "format": chain.CURRENT_FORMAT, "observed_count": observed_count(snapshot),
                "fresh_count": fresh_count(snapshot.assessments),
            }
            # The id is part of the digest (format 3): the row is inserted first to learn it,
            # then given its digest, all in this transaction.
            inserted = conn.execute(insert(schema.snapshots).values(
                **header, hash=chain.GENESIS, signature=None, pruned=False)).inserted_primary_key
            assert inserted is not None
            snapshot_id = int(inserted[0])
            value = chain.digest({**header, "id": snapshot_id}, rows, inventory, document)
            signature = chain.sign(self.signing_key, value) if self.signing_key else None
            conn.execute(update(schema.snapshots).where(schema.snapshots.c.id == snapshot_id)
                         .values(hash=value, signature=signature))
            if document is not None:
                outside_table.write(conn, snapshot_id, document)
            if rows:
                conn.execute(insert(schema.results), [
                    {"snapshot_id": snapshot_id, **dict(zip(ROW_KEYS, row, strict=True))}
                    for row in rows])
            # The deadline clocks (store/clock.py): carried from the previous snapshot.
            before = conn.execute(select(schema.snapshots.c.id, schema.snapshots.c.format)
                                  .where(schema.snapshots.c.sequence == int(last_sequence))
                                  ).first()
            clock.write(conn, snapshot_id, clock.derive(
                {} if before is None
                else clock.by_name(clock.read(conn, int(before[0]))) if (before[1] or 1) >= 2
                else clock.replay(conn, int(last_sequence)),  # after format 1: what they carried
                [(position, a.observation.host.name)
                 for position, (a, found) in enumerate(zip(snapshot.assessments, investigations,
                                                           strict=True))
                 if priority(a.verdict.status, a.verdict.flags,
                             None if found is None else found.state) is not None],
                header["taken_at"]))
            if inventory:
                conn.execute(insert(schema.discovered), [
                    {"snapshot_id": snapshot_id, "position": p, "host": h, "record": r}
                    for p, h, r in inventory])
            self._set_head(conn, "chain_head", "snapshots", f"{header['sequence']}:{value}")
        return snapshot_id

    @staticmethod
    def _outside_before(conn: Connection, sequence: int) -> tuple[OutsideRecord | None, int | None]:
        """The outside view of the snapshot at chain position ``sequence`` (the head, whose
        digest ``_members_before`` checked, document included) and its id."""
        snapshot_id, text = outside_table.at_sequence(conn, sequence)
        if text is None:
            return None, snapshot_id
        try:
            return outside_loads(text), snapshot_id
        except ValueError as error:
            raise StoreError(f"the outside view of snapshot #{snapshot_id} cannot be read "
                             f"({error}): run python -m store verify") from None

    def _set_head(self, conn: Connection, name: str, kind: str, head: str) -> None:
        """Move a chain head, and sign both heads together (empty without a signing key):
        an old signed pair can only be put back whole, never one head cut back alone."""
        conn.execute(update(schema.meta).where(schema.meta.c.key == name).values(value=head))
        pair = _pair(dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all()))
        signature = chain.sign_head(self.signing_key, "heads", pair) if self.signing_key else ""
        conn.execute(update(schema.meta)
                     .where(schema.meta.c.key.in_(("chain_head_signature",
                                                   "audit_head_signature")))
                     .values(value=signature))

    def _head(self, conn: Connection, name: str, lock: bool = False) -> str:
        """A chain head ("sequence:digest"), write-locked first when ``lock``. ``StoreError``
        when the head is missing or malformed: the store was changed outside the tool."""
        if lock:
            conn.execute(update(schema.meta).where(schema.meta.c.key == name)
                         .values(value=schema.meta.c.value))
        head = conn.execute(select(schema.meta.c.value)
                            .where(schema.meta.c.key == name)).scalar()
        if not isinstance(head, str) or head.count(":") != 1 or \
                not head.split(":")[0].isdigit():
            raise StoreError(f"the store's {name.replace('_', ' ')} is missing or malformed: it "
                             "was changed outside the tool. Nothing was written; run "
                             "python -m store verify")
        return head

    def _refuse_unsigned(self, conn: Connection) -> None:
        """A write without the key into a store whose heads are signed: ``StoreError``. It
        would leave an unsigned row after signed ones, which no later keyed write or adoption
        may sign over: the store would stay unverifiable with its key."""
        if self.signing_key:
            return
        signature = conn.execute(select(schema.meta.c.value).where(
            schema.meta.c.key == "chain_head_signature")).scalar()
        if signature:
            raise StoreError("this store is signed, and no signing key is set here: nothing "
                             "was written. Give the key ([store] signing_key in the secrets, "
                             "or PROXYLOGON_SIGNING_KEY); a write without it would leave the "
                             "store unverifiable with its key")

    def _guard(self, conn: Connection, name: str, head: str) -> None:
        """Before a write with the signing key extends a chain: the head must carry the key's
        signature and name the chain's last element, whatever the rows say of themselves
        (their ``signature``, ``format`` or ``pruned`` columns are the forger's to set). Only
        an empty chain has no signed head. ``StoreError`` otherwise: the tool never signs on
        top of a head it cannot vouch for (moved back, or never adopted)."""
        if not self.signing_key:
            return
        table = schema.snapshots if name == "chain_head" else schema.audit_log
        kind = "snapshots" if name == "chain_head" else "audit"
        if head == GENESIS_HEAD:
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise StoreError(f"the store's {kind} chain head says the chain is empty, but it "
                                 "is not: the store was changed outside the tool. Nothing was "
                                 "written; run python -m store verify")
            return
        position, digest = head.split(":")
        newest = conn.execute(select(table.c.hash).where(table.c.sequence == int(position))
                              ).scalar()
        heads = dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
        if newest != digest or not chain.head_signature_ok(
                self.signing_key, "heads", _pair(heads), heads.get(f"{name}_signature")):
            raise StoreError(
                f"the store's {kind} chain head is not one this key signed, so nothing was "
                "written. If the key is new to this store, or the store was just upgraded, check "
                "it (python -m store verify, without the key) and adopt it once (python -m "
                "store adopt-key --state <the state digest verify prints>); otherwise the store "
                "was changed outside the tool (its newest "
                f"{'snapshots' if kind == 'snapshots' else 'audit entries'} removed?)")

    def _append_entry(self, conn: Connection, who: str, action: str, snapshot_id: int | None,
                      detail: str, at: datetime | None = None, guarded: bool = True) -> int:
        """Append one entry to the audit chain, in ``conn``'s transaction, under the lock on
        the audit head (two writers' entries are serialised, never forked); returns its id.
        With a key, the head must be one it signed (``_guard``) unless ``guarded`` is False
        (adopt-key)."""
        head = self._head(conn, "audit_head", lock=True)
        self._refuse_unsigned(conn)
        if guarded:
            self._guard(conn, "audit_head", head)
        last_sequence, last_hash = head.split(":")
        entry: dict[str, Any] = {
            "at": (at or datetime.now(UTC)).astimezone(UTC).isoformat(), "who": who[:255],
            "action": action[:32], "snapshot_id": snapshot_id, "detail": detail,
            "sequence": int(last_sequence) + 1, "previous_hash": last_hash,
        }
        entry["hash"] = chain.entry_digest(entry)
        entry["signature"] = (chain.sign(self.signing_key, entry["hash"]) if self.signing_key
                              else None)
        inserted = conn.execute(insert(schema.audit_log).values(**entry))
        self._set_head(conn, "audit_head", "audit", f"{entry['sequence']}:{entry['hash']}")
        key = inserted.inserted_primary_key
        if key is None:  # every backend this tool supports returns it
            raise StoreError("the audit entry was written but its id was not returned")
        return int(key[0])

    def read_error(self, error: SQLAlchemyError) -> StoreError:
        """One line for a failed read (a damaged file, a lost connection)."""
        shown = self.engine.url.render_as_string(hide_password=True)
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        return StoreError(f"cannot read the store {shown}: {detail}. If the file is damaged, "
                          "restore it from a backup and compare its chain head with a bundle "
                          "or an earlier `python -m store verify`")

    def _write_error(self, error: SQLAlchemyError, what: str) -> StoreError:
        """One line for a failed write (locked, read-only, full, gone); nothing was written."""
        shown = self.engine.url.render_as_string(hide_password=True)
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = ""
        if "locked" in detail or "lock timeout" in detail:
            hint = (f". Another process held the store's write lock for more than "
                    f"{self.lock_timeout:g} s: try again when it is done, or raise "
                    "[store] lock_timeout")
        elif "readonly" in detail or "read-only" in detail or "permission denied" in detail:
            hint = ". The store is read-only to this user: run as a user who may write it"
        return StoreError(f"cannot {what} in {shown}: {detail}; nothing was written (the "
                          f"store is as it was){hint}")

    # -- the fleet ------------------------------------------------------------------------

    def _members_before(self, conn: Connection, sequence: int, head_digest: str,
                        skip: Mapping[str, datetime | None],
                        texts: dict[int, tuple[Observation, str]],
                        fixes: dict[str, datetime] | None = None) -> list[Assessment]:
        """For a save: the fleet as the snapshots before chain position ``sequence`` left it,
        each member's ``observed_in`` naming the snapshot that observed it.

        The newest whole-fleet snapshot with its hosts holds it; before the first one, the
        format 1 snapshots are folded (store/legacy.py). Only what composing needs is decoded:
        no stored verdict (every carried member is graded again, so each gets a stand-in),
        and no observation of a host in ``skip`` (lower-case name -> the run's observation
        time) unless the stored one is newer. ``texts`` learns each decoded observation's
        stored JSON (by ``id()``, with the object, to check it is the same one). ``fixes``
        learns each patched member's stored fix time (lower-case name -> aware time: the
        observed fix time carried from snapshot to snapshot, issue 21).
        """
        # The fleet comes from the snapshot at the head, never from one picked by its format
        # or pruned columns (a forger's to set); its stored rows must match its digest, and
        # under a key the head itself was checked to be signed (_guard).
        header = conn.execute(select(schema.snapshots)
                              .where(schema.snapshots.c.sequence == sequence - 1)
                              ).mappings().first()
        if header is None:
            return []
        newest = header["id"]
        results, inventory = self._rows(conn, newest)
        if header["pruned"] or header["hash"] != head_digest or chain.stored_digest(
                dict(header), results, inventory, outside_table.read(conn, newest)
        ) != head_digest:
            raise StoreError(f"snapshot #{newest}, which the new snapshot would carry the fleet "
                             "from, does not match its digest (or is marked pruned): the store "
                             "was changed outside the tool. Nothing was written; run "
                             "python -m store verify")
        if int(header["format"] or 1) < 2:  # only for the first save after an upgrade
            self._check_links(conn, sequence - 1, head_digest)
            return legacy.members(conn, legacy.fold(conn, sequence), _STAND_IN,
                                  verdicts=False)

        def replaced(host: str, stored: str) -> bool:
            if host.lower() not in skip:
                return False
            fresh_at, stored_at = skip[host.lower()], json.loads(stored).get("observed_at")
            try:  # a stored reading newer than the run's stays: decode it
                return not (stored_at and fresh_at
                            and datetime.fromisoformat(stored_at) > fresh_at)
            except ValueError:
                return True

        if fixes is not None:
            fixes.update(_stored_fixes(results))
        members = []
        for _position, host, _status, stored, _verdict, observed_in, scopes, *_ in results:
            if replaced(host, stored):
                observation = Observation(Host(host), None, "replaced by this run")
            else:
                observation = observation_from_dict(json.loads(stored))
                texts[id(observation)] = (observation, stored)
            members.append(Assessment(
                observation, _STAND_IN, observed_in=newest if observed_in is None else observed_in,
                scopes=tuple(json.loads(scopes)) if scopes else ()))
        return members

    def _check_links(self, conn: Connection, last: int, head_digest: str) -> None:
        """Every snapshot up to position ``last`` matches its digest (a pruned one only its
        place) and links to the one before, ending at ``head_digest``: format 1 snapshots are
        folded together, so each of them is carried."""
        previous = chain.GENESIS
        for header in conn.execute(select(schema.snapshots)
                                   .where(schema.snapshots.c.sequence <= last)
                                   .order_by(schema.snapshots.c.sequence)).mappings():
            ok = header["previous_hash"] == previous
            if ok and not header["pruned"]:
                results, inventory = self._rows(conn, header["id"])
                recomputed = chain.stored_digest(dict(header), results, inventory,
                                                 outside_table.read(conn, header["id"]))
                ok = recomputed is not None and recomputed == header["hash"]
            if not ok:
                raise StoreError(f"snapshot #{header['id']} does not match its digest or link: "
                                 "the store was changed outside the tool. Nothing was written; "
                                 "run python -m store verify")
            previous = header["hash"]
        if previous != head_digest:
            raise StoreError("the chain does not end at its head: the store was changed outside "
                             "the tool. Nothing was written; run python -m store verify")

    def fleet(self, snapshot_id: int, catalog: Catalog,
              policy: Policy | None = None) -> list[Assessment]:
        """The whole fleet at a snapshot: its stored rows for a format 2 snapshot; for a format
        1 one, composed from it and the format 1 snapshots before it (store/legacy.py: every
        earlier host carried forward, turned unknown once stale at its time). Empty for a
        pruned snapshot."""
        info = self.info(snapshot_id)
        if info.fleet:
            return self.assessments(snapshot_id)
        if info.pruned:
            return []
        with self.engine.connect() as conn:
            folded = legacy.fold(conn, info.sequence + 1)
            members = legacy.own_rows(
                legacy.members(conn, folded, _STAND_IN),
                folded, snapshot_id)
        chosen = policy or Policy()
        return legacy.carry(members, info.taken_at,
                            lambda obs, at: evaluate(obs, catalog, at, chosen), chosen.max_age,
                            chosen.clock_skew,
                            f"{info.source}: {info.label}" if info.label else info.source)

    def record(self, who: str, action: str, snapshot_id: int | None, detail: str = "",
               at: datetime | None = None) -> int:
        """Append to the audit chain: who did what (collect, import, export, retire, accept);
        returns the entry's id. A failed write is a ``StoreError``."""
        try:
            with self.engine.begin() as conn:
                return self._append_entry(conn, who, action, snapshot_id, detail, at)
        except SQLAlchemyError as error:
            raise self._write_error(error, f"record the {action} in the audit log") from error

    def audit_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The newest audit entries first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.audit_log)
                                .order_by(schema.audit_log.c.id.desc()).limit(limit)).mappings()
            return [dict(row) for row in rows]

    def prune(self, keep: int, who: str = "python -m store prune") -> int:
        """Drop the hosts of all but the newest ``keep`` snapshots; headers and digests stay,
        so the chain remains verifiable. Returns how many snapshots were pruned.

        The pruning is an entry of the audit chain, written in the same transaction, naming
        each pruned snapshot's id, position and digest (signed with the store's key): verify
        accepts a snapshot without hosts only when such an entry accounts for it.

        ``keep`` below 1 is a ``StoreError``: the newest snapshot is always kept whole, as it
        holds the fleet the next run is composed with. So is every format 1 snapshot after the
        newest whole-fleet one (all of them, in a store not yet collected into since the
        upgrade): their hosts are in no other snapshot. A failed write is a ``StoreError``
        with nothing pruned."""
        if keep < 1:
            raise StoreError(f"prune --keep {keep}: keep at least 1 snapshot (the newest holds "
                             "the fleet the next run starts from)")
        try:
            with self.engine.begin() as conn:
                # Under the chain head's lock: no snapshot is appended while this decides.
                self._guard(conn, "chain_head", self._head(conn, "chain_head", lock=True))
                # Pruning deletes rows for good: never the evidence of a change. The whole
                # store (every victim's digest included) verifies first, under the same lock,
                # with the key when there is one.
                report = self._verify_in(conn, self.signing_key, workers=1)
                if not report.ok:
                    first = report.problems[0]
                    raise StoreError(f"the store does not verify ({first.where}: "
                                     f"{first.message}); pruning would delete evidence, so "
                                     "nothing was pruned")
                # A format 1 snapshot holds hosts no later snapshot holds until a whole-fleet
                # one has been saved after it: only snapshots before the newest such one go.
                first_fleet = conn.execute(
                    select(func.max(schema.snapshots.c.sequence))
                    .where(schema.snapshots.c.format >= 2)).scalar() or 0
                victims = conn.execute(
                    select(schema.snapshots)
                    .where(schema.snapshots.c.pruned.is_(False),
                           (schema.snapshots.c.format >= 2)
                           | (schema.snapshots.c.sequence < first_fleet))
                    .order_by(schema.snapshots.c.sequence.desc()).offset(keep)
                ).mappings().all()
                ids = [victim["id"] for victim in victims]
                if ids:
                    conn.execute(delete(schema.results)
                                 .where(schema.results.c.snapshot_id.in_(ids)))
                    conn.execute(delete(schema.discovered)
                                 .where(schema.discovered.c.snapshot_id.in_(ids)))
                    outside_table.forget(conn, ids)
                    clock.forget(conn, ids)
                    conn.execute(update(schema.snapshots).where(schema.snapshots.c.id.in_(ids))
                                 .values(pruned=True))
                # The first snapshot kept after the pruned ones carries clocks that no longer
                # follow from any row: the entry records them, so verify holds them to it.
                kept = conn.execute(select(schema.snapshots.c.id)
                                    .where(schema.snapshots.c.pruned.is_(False))
                                    .order_by(schema.snapshots.c.sequence).limit(1)).scalar()
                clocks = ({str(kept): clock.digest(clock.read(conn, int(kept)))}
                          if ids and kept is not None else {})
                self._append_entry(conn, who, "prune", None, _dumps({
                    "kept_newest": keep,
                    "pruned": [{"id": v["id"], "sequence": v["sequence"], "hash": v["hash"],
                                "header": header_record(dict(v))}
                               for v in sorted(victims, key=lambda v: v["sequence"])],
                    "clocks": clocks}))
        except SQLAlchemyError as error:
            raise self._write_error(error, "prune") from error
        return len(ids)

    def legacy_figures(self, catalog: Catalog,
                       policy: Policy | None = None) -> dict[int, dict[str, Any]]:
        """For each format 1 snapshot with hosts: the ``counts``, ``host_count``,
        ``fresh_count`` and ``observed_count`` of its composed fleet, in one pass
        (store/legacy.py)."""
        chosen = policy or Policy()
        with self.engine.connect() as conn:
            return legacy.figures(conn, chosen.max_age, chosen.clock_skew)

    def summaries(self, snapshot_id: int, catalog: Catalog, policy: Policy | None = None, *,
                  needing_work: bool = False,
                  hosts: Collection[str] | None = None) -> list[HostSummary]:
        """The whole fleet at a snapshot as summaries (compliance/summary.py), in fleet
        order: read from the summary columns alone for a whole-fleet snapshot, no JSON decoded;
        derived from the composed fleet for a format 1 one (``fleet``). Empty when pruned.
        ``needing_work``: only the hosts the worklist takes (compliance.worklist.priority), the
        others never built (a worklist of 10,000 hosts' fleet needs only its open items).
        ``hosts``: only these names (as stored, case and all); not with ``needing_work``."""
        info = self.info(snapshot_id)
        if not info.fleet:
            composed = [summarise(a) for a in self.fleet(snapshot_id, catalog, policy)]
            return [s for s in composed if (not needing_work
                                            or priority(s.status, s.flags,
                                                        s.investigation) is not None)
                    and (hosts is None or s.host in hosts)]
        if hosts is not None:
            return [_summary_of(row) for row in self.summary_rows(snapshot_id, hosts)]
        if not needing_work:
            return [_summary_of(row) for row in self.summary_rows(snapshot_id)]
        # The rule stays compliance.worklist's, and the reading _summary_of's: each distinct
        # combination of the values they judge (a few dozen in any fleet) is read as a row,
        # and the database returns the rows of the combinations that need work.
        with self.engine.connect() as conn:
            wanted = _open_combinations(conn, snapshot_id)
        if not wanted:
            return []
        return [_summary_of(row) for row in self.summary_rows(snapshot_id,
                                                              where=_holding(wanted))]

    def open_judgements(self, snapshot_id: int, catalog: Catalog, policy: Policy | None = None,
                        ) -> list[tuple[str, Status, tuple[Flag, ...],
                                        InvestigationState | None]]:
        """(host, status, flags, investigation state) of each host of a snapshot that needs
        work, as ``summaries`` reads them, in fleet order: the deadlines' input, without
        building whole summaries (for a whole-fleet snapshot, only the judged columns of the
        open rows are read)."""
        if not self.info(snapshot_id).fleet:
            return [(s.host, s.status, s.flags, s.investigation)
                    for s in self.summaries(snapshot_id, catalog, policy, needing_work=True)]
        results = schema.results
        with self.engine.connect() as conn:
            wanted = _open_combinations(conn, snapshot_id)
            if not wanted:
                return []
            judged = {values: (summary.status, summary.flags, summary.investigation)
                      for values, summary in ((v, _judged_summary(v)) for v in wanted)}
            # From the driver's cursor (_driver_rows, typed as SQLAlchemy types them):
            # SQLAlchemy's row objects cost half a second at 50,000 hosts. Ordered here, not
            # by the database: without ORDER BY it reads them from ix_results_judged alone,
            # never through each row's JSON (schema 14).
            rows = sorted(_driver_rows(conn, select(
                results.c.position, results.c.host, *_judged_columns()).where(
                    results.c.snapshot_id == snapshot_id, _holding(wanted))))
        return [(str(row[1]), *judged[tuple(row[2:])]) for row in rows]

    def changed_summaries(self, before_id: int, after_id: int, catalog: Catalog,
                          policy: Policy | None = None,
                          ) -> tuple[list[HostSummary], list[HostSummary]]:
        """Of two snapshots' fleets, the summaries of the hosts ``store.history.diff`` can
        report: a host in one snapshot only, or whose stored status, mitigations, flags, roles,
        indicator count or investigation state (notify/changes.py's new indicators) differ
        (flags, roles and the count also decide whether a row reads as what it claims, or as
        unknown; names compared case-insensitively, as diff does). Every other host is alike
        in both for diff, so ``diff(*changed_summaries(a, b))`` is ``diff`` of the whole fleets, and
        only the changed hosts' summaries are built (100,000 summaries at 50,000 hosts took
        1.5 s). Format 1 snapshots, and fleets holding one name twice, give whole fleets."""
        if not (self.info(before_id).fleet and self.info(after_id).fleet):
            return (self.summaries(before_id, catalog, policy),
                    self.summaries(after_id, catalog, policy))
        results = schema.results
        # Per lower-case name: (name, then what diff compares and what decides whether
        # _summary_of reads the row at all) as stored. Equal values read alike in both.
        keyed: list[dict[str, tuple[Any, ...]]] = []
        compared = (*_judged_columns(), func.coalesce(results.c.mitigations, ""))
        with self.engine.connect() as conn:
            for snapshot_id in (before_id, after_id):
                rows = conn.execute(select(results.c.host, *compared)
                                    .where(results.c.snapshot_id == snapshot_id)).all()
                keyed.append({str(row[0]).lower(): tuple(row) for row in rows})
                if len(keyed[-1]) != len(rows):  # a name twice (case aside): as a whole
                    return (self.summaries(before_id, catalog, policy),
                            self.summaries(after_id, catalog, policy))
        old, new = keyed
        changed = [key for key in old.keys() | new.keys()
                   if (old[key][1:] if key in old else None) != (new[key][1:] if key in new
                                                                 else None)]
        if not all(isinstance(side[key][0], str) for side in keyed for key in changed
                   if key in side):  # a name that is not text (forged): as a whole
            return (self.summaries(before_id, catalog, policy),
                    self.summaries(after_id, catalog, policy))
        return ([_summary_of(row) for row in self.summary_rows(
                    before_id, [old[key][0] for key in changed if key in old])],
                [_summary_of(row) for row in self.summary_rows(
                    after_id, [new[key][0] for key in changed if key in new])])

    def open_since(self, snapshot_id: int) -> dict[str, OpenSince]:
        """When each host of a snapshot that needs work (compliance.worklist.priority, as the
        stored row reads) was first seen needing it in its current open stretch: the time of
        the first of the snapshots up to this one, in chain order, that held it needing work
        since the last that held it needing nothing (store/clock.py; a host absent from a
        run keeps its clock). Keyed by the name as stored; empty for a pruned snapshot. A
        stored time that cannot be read, or is after the snapshot's, is left out: not known,
        which store/deadlines.py counts from the advisory's publication (the earliest)."""
        info = self.info(snapshot_id)
        with self.engine.connect() as conn:
            items = clock.read(conn, snapshot_id)
        found = {}
        for item in items:
            try:
                since = _aware(item.since)
            except (TypeError, ValueError):
                continue  # changed outside the tool (verify names it): counted as not known
            if EARLIEST_CLOCK <= since <= info.taken_at:  # else forged: not known either
                found[item.host] = OpenSince(since, item.pruned_before)
        return found

    def host_history(self, host: str, after: datetime, until: datetime,
                     ) -> list[tuple[datetime, HostSummary | None]]:
        """The host (its name as stored) in each whole-fleet snapshot taken after ``after`` and
        up to ``until`` (aware), in chain order: its summary, or None where the fleet did not
        hold it. Pruned and format 1 snapshots (whose absence says nothing) are left out."""
        wanted = [s for s in self.history()
                  if s.fleet and not s.pruned and after < s.taken_at <= until]
        if not wanted:
            return []
        results = schema.results
        columns = [func.coalesce(results.c[name], _EMPTY[name]) if name in _EMPTY
                   else results.c[name] for name in SUMMARY_COLUMNS]
        with self.engine.connect() as conn:
            rows = conn.execute(select(results.c.snapshot_id, *columns, results.c.observed_in)
                                .where(results.c.host == host,
                                       results.c.snapshot_id.in_([s.id for s in wanted]))
                                .order_by(results.c.position)).all()
        found: dict[int, HostSummary] = {}
        for row in rows:
            found.setdefault(int(row[0]), _summary_of(tuple(row[1:])))
        return [(s.taken_at, found.get(s.id)) for s in wanted]

    def summary_rows(self, snapshot_id: int, hosts: Collection[str] | None = None, *,
                     where: ColumnElement[bool] | None = None,
                     fields: Sequence[str] = SUMMARY_COLUMNS) -> list[tuple[Any, ...]]:
        """The stored summary columns of a snapshot's rows, ``fields`` (a selection of
        ``compliance.summary.COLUMNS``, by default all, in that order) then ``observed_in``,
        in fleet order; a column a damaged row lacks reads as empty (``verify`` names the
        row). ``hosts``: only these names, as stored (looked up by the host index). ``where``:
        only the rows it holds for. Only what a whole-fleet snapshot stores: see
        ``summaries`` for every format."""
        results = schema.results
        columns = [func.coalesce(results.c[name], _EMPTY[name]).label(name)
                   if name in _EMPTY else results.c[name] for name in fields]
        query = select(*columns, results.c.observed_in).where(results.c.snapshot_id == snapshot_id)
        if where is not None:
            query = query.where(where)
        # A fleet's rows repeat a few values (status, CU, site, action...) that the driver
        # hands over as a new string per cell: each is kept once (50,000 rows held 60 MB of
        # copies, most of the Hosts page's peak memory).
        kept: dict[Any, Any] = {}
        keep = kept.setdefault
        with self.engine.connect() as conn:
            if hosts is None:
                # From the driver's cursor (_driver_rows): SQLAlchemy's row objects took a
                # third of the worklist's reading at 50,000 hosts.
                return [tuple([keep(value, value) for value in row])
                        for row in _driver_rows(conn, query.order_by(results.c.position))]
            names, found = list(hosts), []
            for start in range(0, len(names), HOSTS_PER_QUERY):
                found += [tuple([keep(value, value) for value in row]) for row in conn.execute(
                    query.add_columns(results.c.position)
                    .where(results.c.host.in_(names[start:start + HOSTS_PER_QUERY])))]
        found.sort(key=lambda row: row[-1])
        return [row[:-1] for row in found]

    def summary_batches(self, snapshot_id: int, fields: Sequence[str] = SUMMARY_COLUMNS,
                        size: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
        """``summary_rows`` of the whole snapshot in fleet order, in lists of at most ``size``
        rows, streamed from the database (a reader that keeps each list in a compact form
        never holds every row as Python objects: 50,000 of them are ~100 MB)."""
        results = schema.results
        columns = [func.coalesce(results.c[name], _EMPTY[name]).label(name)
                   if name in _EMPTY else results.c[name] for name in fields]
        query = (select(*columns, results.c.observed_in)
                 .where(results.c.snapshot_id == snapshot_id).order_by(results.c.position))
        kept: dict[Any, Any] = {}  # as summary_rows: each repeated value kept once
        keep = kept.setdefault
        with self.engine.connect() as conn:
            # The driver's cursor (_driver_rows: psycopg streams it), cut into lists here.
            rows = _driver_rows(conn, query)
            try:
                while part := list(islice(rows, size)):
                    yield [tuple([keep(value, value) for value in row]) for row in part]
            finally:
                rows.close()  # a reader that stopped early: the stream ends before conn does

    def published_names(self, snapshot_id: int, hosts: Collection[str],
                        ) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per host of ``hosts`` (names as stored) whose stored observation holds published
        names (AD's OWA/ECP virtual directories, issue 18): its (internal, external) names.
        Only observations naming some are decoded (the text is searched first), so a fleet
        discovered before names were read costs one query. Empty for a format 1 snapshot
        (its hosts' roles decide, as ``compliance.worklist.internet_facing`` says)."""
        if not hosts or not self.info(snapshot_id).fleet:
            return {}
        results = schema.results
        found: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        names = list(hosts)
        wanted = set(names)
        query = select(results.c.host, results.c.observation).where(
            results.c.snapshot_id == snapshot_id, results.c.observation.like('%_names"%'))
        with self.engine.connect() as conn:
            # Names one IN (...) holds: asked for. More: one pass over the snapshot, the names
            # kept here (a query per batch searched every observation's text again: five passes
            # over 90 MB at 50,000 hosts). _driver_rows compiles no expanding IN (...).
            rows = (conn.execute(query.where(results.c.host.in_(names)))
                    if len(names) <= HOSTS_PER_QUERY
                    else (row for row in _driver_rows(conn, query) if row[0] in wanted))
            for host, text in rows:
                internal, external = _published(text)
                if internal or external:
                    found[str(host)] = (internal, external)
        return found

    def group_counts(self, snapshot_id: int, catalog: Catalog, policy: Policy | None = None,
                     ) -> list[tuple[str, str, str, str, str, str, int]]:
        """How many hosts of a snapshot share each (product, CU, AD site, DAG, status, flags),
        as stored: what the Overview's charts and headline count, without a row per host
        (counted by the database for a whole-fleet snapshot, from ``summaries`` for format 1).
        A damaged row's status reads as stored; ``compliance.worklist.stored_priority`` and
        the charts count a status no writer makes as unknown."""
        if not self.info(snapshot_id).fleet:
            tally = Counter((s.product, s.cu, s.site, s.dag, s.status.value,
                             SEPARATOR.join(f.value for f in s.flags))
                            for s in self.summaries(snapshot_id, catalog, policy))
            return [(a, b, c, d, e, f, n) for (a, b, c, d, e, f), n in tally.items()]
        results = schema.results
        keys = [func.coalesce(column, "") for column in (
            results.c.product, results.c.cu, results.c.site, results.c.dag, results.c.status,
            results.c.flags)]
        with self.engine.connect() as conn:
            counted = conn.execute(select(*keys, func.count())
                                   .where(results.c.snapshot_id == snapshot_id).group_by(*keys))
            return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), int(r[6]))
                    for r in counted]

    def need_groups(self, snapshot_id: int, catalog: Catalog, policy: Policy | None = None,
                    ) -> list[tuple[str, str, str, str, str, str, str, int]]:
        """``group_counts`` with each row's stored investigation state as the seventh key ("":
        none stored): what decides whether a host needs action
        (``compliance.worklist.stored_priority``: an investigation that found indicators
        counts as compromise indicators, issue 21)."""
        if not self.info(snapshot_id).fleet:
            tally = Counter((s.product, s.cu, s.site, s.dag, s.status.value,
                             SEPARATOR.join(f.value for f in s.flags),
                             s.investigation.value if s.investigation else "")
                            for s in self.summaries(snapshot_id, catalog, policy))
            return [(*key, n) for key, n in tally.items()]
        results = schema.results
        keys = [func.coalesce(column, "") for column in (
            results.c.product, results.c.cu, results.c.site, results.c.dag, results.c.status,
            results.c.flags, results.c.investigation)]
        with self.engine.connect() as conn:
            counted = conn.execute(select(*keys, func.count())
                                   .where(results.c.snapshot_id == snapshot_id).group_by(*keys))
            return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]),
                     int(r[7])) for r in counted]

    def investigation_counts(self, snapshot_id: int, catalog: Catalog,
                             policy: Policy | None = None) -> list[tuple[str, str | None, int]]:
        """How many hosts of a snapshot share each (status, investigation state) as stored
        (issue 21; None: no state stored, a row from before it), counted by the database for
        a whole-fleet snapshot, from ``summaries`` for a format 1 one."""
        if not self.info(snapshot_id).fleet:
            tally = Counter((s.status.value, s.investigation.value if s.investigation else None)
                            for s in self.summaries(snapshot_id, catalog, policy))
            return [(status, state, n) for (status, state), n in tally.items()]
        results = schema.results
        with self.engine.connect() as conn:
            counted = conn.execute(
                select(results.c.status, results.c.investigation, func.count())
                .where(results.c.snapshot_id == snapshot_id)
                .group_by(results.c.status, results.c.investigation))
            return [(str(r[0]), None if r[1] is None else str(r[1]), int(r[2]))
                    for r in counted]

    def investigation_trend(self, snapshot_ids: Collection[int],
                            ) -> dict[int, dict[tuple[str, str | None], int]]:
        """Per snapshot of ``snapshot_ids``: how many of its rows share each (status,
        investigation state) as stored (None: no state stored, a row saved before issue 21),
        in ONE grouped query over the results' primary key (snapshot, position), whatever the
        number of snapshots: the trends of the Overview and the report. Every id asked for is
        a key; a snapshot without rows (pruned, or not stored) counts nothing. The rows as
        stored: a format 1 snapshot's are its run's hosts (``investigation_counts`` composes
        its fleet), none of which holds a state."""
        wanted = sorted(set(snapshot_ids))
        counted: dict[int, dict[tuple[str, str | None], int]] = {i: {} for i in wanted}
        if not wanted:
            return counted
        results = schema.results
        with self.engine.connect() as conn:
            for snapshot_id, status, state, hosts in conn.execute(
                    select(results.c.snapshot_id, results.c.status, results.c.investigation,
                           func.count())
                    .where(results.c.snapshot_id.in_(wanted))
                    .group_by(results.c.snapshot_id, results.c.status,
                              results.c.investigation)):
                key = (str(status), None if state is None else str(state))
                counted[int(snapshot_id)][key] = int(hosts)
        return counted

    def summary_counts(self, snapshot_ids: Sequence[int], catalog: Catalog,
                       policy: Policy | None = None) -> dict[int, dict[str, int]]:
        """Per snapshot: how many hosts carry each flag (``"flag:<Flag value>"``) and how
        many its own run failed on (``"run_failed"``); absent keys count 0. Counted by the
        database from the summary columns for whole-fleet snapshots, from the composed fleet
        (``summaries``) for format 1 ones."""
        results = schema.results
        counted: dict[int, dict[str, int]] = {i: {} for i in snapshot_ids}
        fleets = [i for i in snapshot_ids if self.info(i).fleet]
        rows: list[tuple[Any, ...]] = []
        if fleets:
            with self.engine.connect() as conn:
                rows = [tuple(row) for row in conn.execute(
                    select(results.c.snapshot_id, results.c.flags, results.c.run_failed,
                           func.count())
                    .where(results.c.snapshot_id.in_(fleets))
                    .group_by(results.c.snapshot_id, results.c.flags, results.c.run_failed))]
        for snapshot_id in set(snapshot_ids) - set(fleets):
            rows += [(snapshot_id, SEPARATOR.join(f.value for f in s.flags), s.run_failed, 1)
                     for s in self.summaries(snapshot_id, catalog, policy)]
        for snapshot_id, flags, run_failed, number in rows:
            figures = counted[snapshot_id]
            for flag in (flags or "").split(SEPARATOR):
                if flag:
                    figures[f"flag:{flag}"] = figures.get(f"flag:{flag}", 0) + number
            if run_failed:
                figures["run_failed"] = figures.get("run_failed", 0) + number
        return counted

    def failures(self, snapshot_id: int, catalog: Catalog,
                 policy: Policy | None = None) -> list[tuple[str, str, str, int | None, bool]]:
        """(host, failure reason, detail, observed_in, run_failed) of every host of a
        snapshot whose summary names a failure, in fleet order: read from the summary columns
        (no JSON decoded) for a whole-fleet snapshot, from ``summaries`` for a format 1 one."""
        if not self.info(snapshot_id).fleet:
            return [(s.host, s.failure_reason, s.failure_detail, s.observed_in, s.run_failed)
                    for s in self.summaries(snapshot_id, catalog, policy) if s.failure_reason]
        results = schema.results
        with self.engine.connect() as conn:
            return [(str(h), str(r), str(d or ""), o, bool(f)) for h, r, d, o, f in conn.execute(
                select(results.c.host, results.c.failure_reason, results.c.failure_detail,
                       results.c.observed_in, results.c.run_failed)
                .where(results.c.snapshot_id == snapshot_id, results.c.failure_reason != "")
                .order_by(results.c.position))]

    def unknown_builds(self, snapshot_id: int, catalog: Catalog, policy: Policy | None = None,
                       ) -> list[tuple[str, str, str, str, str, str]]:
        """(host, build, product, CU, status, flags) of every host of a snapshot that reported
        a build the catalogue did not know (``known_build`` false), in fleet order: read by
        the database from the summary columns for a whole-fleet snapshot (the Catalog page
        names them without loading the fleet), from ``summaries`` for a format 1 one."""
        if not self.info(snapshot_id).fleet:
            return [(s.host, s.build, s.product, s.cu, s.status.value,
                     SEPARATOR.join(f.value for f in s.flags))
                    for s in self.summaries(snapshot_id, catalog, policy)
                    if s.build and not s.known_build]
        fields = ("host", "build", "product", "cu", "status", "flags")
        results = schema.results
        unknown = and_(func.coalesce(results.c.build, "") != "",
                       func.coalesce(results.c.known_build, False).is_(False))
        return [(str(h), str(b), str(p), str(c), str(s), str(f))
                for h, b, p, c, s, f, _observed_in in self.summary_rows(
                    snapshot_id, where=unknown, fields=fields)]

    # -- reading --------------------------------------------------------------------------

    def judged_by_others(self, snapshot_id: int) -> bool:
        """Whether any host of the snapshot holds verdicts for other advisories (format 6,
        saved with ``others``); False for a snapshot judged by its own advisory only."""
        with self.engine.connect() as conn:
            return conn.execute(select(schema.results.c.position).where(
                schema.results.c.snapshot_id == snapshot_id,
                schema.results.c.advisories.is_not(None)).limit(1)).first() is not None

    def demo_hosts(self, snapshot_id: int) -> int:
        """How many hosts of a snapshot belong to the fictional demo fleet (format 2: by
        scope; format 1: every host, when a demo snapshot with its hosts precedes it)."""
        with self.engine.connect() as conn:
            version, sequence = conn.execute(
                select(schema.snapshots.c.format, schema.snapshots.c.sequence)
                .where(schema.snapshots.c.id == snapshot_id)).one()
            if version >= 2:
                return int(conn.execute(
                    select(func.count()).select_from(schema.results)
                    .where(schema.results.c.snapshot_id == snapshot_id,
                           schema.results.c.scopes.like(f'%"{DEMO}"%'))).scalar_one())
            demo = conn.execute(
                select(func.max(schema.snapshots.c.host_count))
                .where(schema.snapshots.c.source == DEMO, schema.snapshots.c.pruned.is_(False),
                       schema.snapshots.c.sequence <= sequence)).scalar()
            return int(demo or 0)

    def heads(self) -> str:
        """Both chain heads as one text: it changes with every snapshot saved and every audit
        entry, so readers can key what they cache on it (one small query)."""
        with self.engine.connect() as conn:
            return _pair(dict(conn.execute(
                select(schema.meta.c.key, schema.meta.c.value)
                .where(schema.meta.c.key.in_(("chain_head", "audit_head")))).all()))

    def is_empty(self) -> bool:
        with self.engine.connect() as conn:
            return not conn.execute(select(func.count()).select_from(schema.snapshots)).scalar()

    def history(self) -> list[SnapshotInfo]:
        """Every snapshot header in chain order, the order they were saved in (the newest, last,
        holds the fleet the next run is composed with), whatever a writer's clock said."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.snapshots).order_by(schema.snapshots.c.sequence)
            ).mappings().all()
        return [_info(row) for row in rows]

    def latest(self) -> SnapshotInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots).order_by(schema.snapshots.c.sequence.desc()).limit(1)
            ).mappings().first()
        return _info(row) if row else None

    def as_of(self, moment: datetime) -> SnapshotInfo | None:
        """The newest snapshot (in chain order) taken at or before ``moment`` (aware)."""
        if moment.tzinfo is None:
            raise StoreError("'as of' time must carry a time zone")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots)
                .where(schema.snapshots.c.taken_at <= moment.astimezone(UTC).isoformat())
                .order_by(schema.snapshots.c.sequence.desc()).limit(1)
            ).mappings().first()
        return _info(row) if row else None

    def info(self, snapshot_id: int) -> SnapshotInfo:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.snapshots).where(schema.snapshots.c.id == snapshot_id)
            ).mappings().first()
        if row is None:
            raise StoreError(f"no snapshot with id {snapshot_id}")
        return _info(row)

    def assessments(self, snapshot_id: int) -> list[Assessment]:
        """Every stored row of a snapshot, in fleet order, exactly as recorded (for a format 1
        snapshot, only its run's hosts: ``fleet()`` composes the rest)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.results.c.observation, schema.results.c.verdict,
                       schema.results.c.observed_in, schema.results.c.scopes)
                .where(schema.results.c.snapshot_id == snapshot_id)
                .order_by(schema.results.c.position)
            ).all()
        return [_assessment(*row) for row in rows]

    def assessment(self, snapshot_id: int, host: str) -> Assessment | None:
        """One host's stored row in a snapshot (name as stored)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.results.c.observation, schema.results.c.verdict,
                       schema.results.c.observed_in, schema.results.c.scopes)
                .where(schema.results.c.snapshot_id == snapshot_id,
                       schema.results.c.host == host).limit(1)
            ).first()
        return None if row is None else _assessment(*row)

    def investigation(self, snapshot_id: int, host: str) -> Investigation | None:
        """One host's stored investigation after the fix (issue 21; name as stored): None
        when the snapshot holds none for it (saved before issue 21, format 1, or no such
        host). A record no writer of this tool makes is a ``StoreError`` (verify names it)."""
        with self.engine.connect() as conn:
            text_ = conn.execute(
                select(schema.results.c.investigation_detail)
                .where(schema.results.c.snapshot_id == snapshot_id,
                       schema.results.c.host == host).limit(1)).scalar()
        try:
            return investigation_loads(text_)
        except ValueError as error:
            raise StoreError(f"the investigation of {host!r} in snapshot #{snapshot_id} cannot "
                             f"be read ({error}): run python -m store verify") from None

    def investigations(self, snapshot_id: int) -> dict[str, Investigation]:
        """Every stored investigation of a snapshot by host name as stored (the evidence
        bundle's); a row without one, or with one that does not read, is left out."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.results.c.host, schema.results.c.investigation_detail)
                .where(schema.results.c.snapshot_id == snapshot_id,
                       schema.results.c.investigation_detail.is_not(None))
                .order_by(schema.results.c.position)).all()
        found = {}
        for host, text_ in rows:
            try:
                record = investigation_loads(text_)
            except ValueError:
                continue
            if record is not None:
                found[str(host)] = record
        return found

    def verdicts(self, snapshot_id: int) -> list[Verdict]:
        """Only the recorded verdicts (cheaper than ``assessments`` when observations are not needed)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.results.c.verdict)
                .where(schema.results.c.snapshot_id == snapshot_id)
                .order_by(schema.results.c.position)
            ).scalars().all()
        return [verdict_from_dict(json.loads(row)) for row in rows]

    def discovered(self, snapshot_id: int) -> list[Host]:
        """The inventory the run started from, in discovery order."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.discovered.c.record)
                .where(schema.discovered.c.snapshot_id == snapshot_id)
                .order_by(schema.discovered.c.position)
            ).scalars().all()
        return [host_from_dict(json.loads(row)) for row in rows]

    def host_timeline(self, host: str) -> list[tuple[SnapshotInfo, dict[str, Any], int | None]]:
        """(snapshot, stored verdict, observed_in) for every snapshot that stores ``host``,
        oldest first; ``observed_in`` is None where the snapshot's own run observed it (a format
        1 snapshot that did not assess the host does not list it)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(schema.snapshots, schema.results.c.verdict, schema.results.c.observed_in)
                .join(schema.results, schema.results.c.snapshot_id == schema.snapshots.c.id)
                .where(func.lower(schema.results.c.host) == host.lower())
                .order_by(schema.snapshots.c.taken_at, schema.snapshots.c.id)
            ).mappings().all()
        return [(_info(row), json.loads(row["verdict"]), row["observed_in"]) for row in rows]

    def raw_header(self, snapshot_id: int) -> dict[str, Any]:
        """The stored header row exactly as hashed (plus id, hash, signature, pruned)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.snapshots)
                               .where(schema.snapshots.c.id == snapshot_id)).mappings().first()
        if row is None:
            raise StoreError(f"no snapshot with id {snapshot_id}")
        return dict(row)

    def raw_outside(self, snapshot_id: int) -> str | None:
        """The stored outside document exactly as hashed (None: not fingerprinted, or pruned)."""
        with self.engine.connect() as conn:
            return outside_table.read(conn, snapshot_id)

    def outside(self, snapshot_id: int) -> OutsideRecord | None:
        """What the snapshot holds of the outside view: ``endpoints`` (each fingerprint in brief:
        endpoint, kind, disclosures with source and certainty, TLS, the OWA and ECP answers'
        status and seconds, failure; ``observed_in`` set on one carried from an earlier run)
        and ``namespaces`` (the findings). None when it was not fingerprinted (every snapshot
        saved before schema 9) or was pruned. A document no writer of this tool makes is a
        ``StoreError`` (``verify`` names the snapshot)."""
        text = self.raw_outside(snapshot_id)
        if text is None:
            return None
        try:
            return outside_loads(text)
        except ValueError as error:
            raise StoreError(f"the outside view of snapshot #{snapshot_id} cannot be read "
                             f"({error}): run python -m store verify") from None

    def raw_rows(self, snapshot_id: int) -> tuple[list[tuple[Any, ...]],
                                                  list[tuple[int, str, str]]]:
        """The stored rows exactly as hashed: results (``ROW_KEYS``: position, host, status,
        observation, verdict, observed_in, scopes, then the summary columns) and inventory
        (position, host, record)."""
        with self.engine.connect() as conn:
            return self._rows(conn, snapshot_id)

    @staticmethod
    def _rows(conn: Connection, snapshot_id: int) -> tuple[list[tuple[Any, ...]],
                                                           list[tuple[int, str, str]]]:
        # From the driver's cursor (_driver_rows: typed as SQLAlchemy types them), without
        # SQLAlchemy's row objects (a twelfth of an evidence bundle's time at 10,000 hosts).
        results = list(_driver_rows(conn, select(*(schema.results.c[key] for key in ROW_KEYS))
                                    .where(schema.results.c.snapshot_id == snapshot_id)
                                    .order_by(schema.results.c.position)))
        inventory = _driver_rows(conn, select(schema.discovered.c.position,
                                              schema.discovered.c.host,
                                              schema.discovered.c.record)
                                 .where(schema.discovered.c.snapshot_id == snapshot_id)
                                 .order_by(schema.discovered.c.position))
        return results, [(d[0], d[1], d[2]) for d in inventory]

    # -- verification ---------------------------------------------------------------------

    def verify(self, key: bytes | None = None, only: int | None = None,
               workers: int | None = None, only_rows: OnlyRows | None = None) -> VerifyReport:
        """Recompute every digest and link of both chains (snapshots and audit log) and check
        the heads, prunings and, with ``key``, every HMAC (store/verification.py). The report
        names each snapshot or audit entry that fails; damaged rows are problems, never
        exceptions (a database that cannot be read at all raises ``SQLAlchemyError``).
        ``only``: hash the rows of that one snapshot again, and of no other (an evidence
        bundle's check: every link, head and signature is still checked). ``workers``: how
        many processes hash the rows, this one among them (default: one per core, at most
        ``MAX_WORKERS``, once the headers claim ``PARALLEL_ROWS`` rows to hash; 1 hashes them
        here alone). The report is the same either way: workers only compute each snapshot's
        ``RowCheck``. Workers are started with "spawn": a script that calls this on a large
        store needs the usual ``if __name__ == "__main__":`` guard, or ``workers=1``.
        ``only_rows`` (with ``only``): that snapshot's rows as the caller read them (results in
        ``ROW_KEYS`` order, inventory rows, the outside document or None), hashed instead of
        read again: an evidence bundle proves the very rows it holds. ``ValueError`` without
        ``only``."""
        if only_rows is not None and only is None:
            raise ValueError("only_rows needs only: the one snapshot they are the rows of")
        # Rows are streamed, one snapshot at a time: each result row is hashed as it is read
        # (_driver_rows), the other large reads use a server-side cursor on PostgreSQL.
        with self.engine.connect().execution_options(stream_results=True,
                                                     yield_per=2000) as conn:
            return self._verify_in(conn, key, only, workers, only_rows)

    def _verify_in(self, conn: Connection, key: bytes | None, only: int | None = None,
                   workers: int | None = None,
                   only_rows: OnlyRows | None = None) -> VerifyReport:
        # Inside a write transaction (prune, adopt-key) pass workers=1: what is checked must be
        # what this connection, holding the lock, reads.
        headers = [dict(h) for h in conn.execute(
            select(schema.snapshots).order_by(schema.snapshots.c.sequence)).mappings()]
        entries = conn.execute(select(schema.audit_log)
                               .order_by(schema.audit_log.c.sequence,
                                         schema.audit_log.c.id)).mappings().all()
        heads = dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
        wanted = [h for h in headers if only is None or h["id"] == only]
        checks = None if only_rows is not None else self._parallel_checks(wanted, workers)
        if only_rows is not None:
            def checker(header: Mapping[str, Any]) -> RowCheck:
                # Asked for the one snapshot ``only`` names (verify_chains asks no other).
                results, inventory, outside = only_rows
                return check_rows(header, results, inventory, outside)
        elif checks is None:
            def checker(header: Mapping[str, Any]) -> RowCheck:
                return _row_check(conn, header)
        else:
            def checker(header: Mapping[str, Any]) -> RowCheck:
                return checks[header["id"]]
        opened: dict[int, tuple[tuple[int, str], ...]] = {}

        def noting(header: Mapping[str, Any]) -> RowCheck:
            check = checker(header)
            opened[header["id"]] = check.open_rows
            return check

        def present(header: Mapping[str, Any]) -> frozenset[str] | None:
            # A format 1 snapshot held its run's hosts only (store/clock.py carry).
            if header["pruned"] or _format_of(header) >= 2:
                return None
            return frozenset(str(h).casefold() for h in conn.execute(
                select(schema.results.c.host)
                .where(schema.results.c.snapshot_id == header["id"])).scalars())

        report = verify_chains(headers, noting, [dict(e) for e in entries], heads, key, only)
        report.problems += [ChainProblem(None, None, line) for line in _relation_problems(conn)]
        if only is None:  # the deadline clocks, derived along the whole chain (store/clock.py)
            stored: dict[int, list[clock.OpenItem]] = {}
            table = schema.open_items
            # From the driver's cursor (_driver_rows): 275,000 rows at 10,000 x 52, where
            # SQLAlchemy's row objects cost a third of a second.
            for item in _driver_rows(conn, select(table.c.snapshot_id, table.c.position,
                                                  table.c.host, table.c.since,
                                                  table.c.pruned_before)):
                stored.setdefault(item[0], []).append(clock.OpenItem(
                    item[1], str(item[2]), str(item[3]), bool(item[4])))
            walked = [(h["id"], str(h["taken_at"]), bool(h["pruned"]),
                       [] if h["pruned"] else opened.get(h["id"], ()), present(h))
                      for h in headers]
            sequences = {h["id"]: h["sequence"] for h in headers}
            # A snapshot already named (its rows changed) is not named again for its clocks.
            named = {p.snapshot_id for p in report.problems}
            report.problems += [ChainProblem(snapshot_id, sequences[snapshot_id], message)
                                for snapshot_id, message in clock.problems(
                                    walked, stored, _clock_anchors([dict(e) for e in entries]))
                                if snapshot_id not in named]
            known = set(sequences)
            report.problems += [ChainProblem(None, None, f"open_items holds rows of snapshot "
                                             f"#{snapshot_id}, which is not in the store")
                                for snapshot_id in sorted(set(stored) - known)]
        return report

    def _parallel_checks(self, headers: Sequence[dict[str, Any]],
                         workers: int | None) -> dict[int, RowCheck] | None:
        """Each snapshot's RowCheck from ``workers`` processes, this one among them, or None to
        check them all on verify's connection: one process wanted, too few rows, or a store
        only this process can see (in memory)."""
        database = self.engine.url.database
        if workers is None:
            rows = sum(h["host_count"] for h in headers
                       if isinstance(h["host_count"], int) and not h["pruned"])
            workers = (min(os.cpu_count() or 1, MAX_WORKERS, len(headers))
                       if rows >= PARALLEL_ROWS else 1)
        workers = min(workers, len(headers))
        if workers <= 1 or (self.engine.dialect.name == "sqlite"
                            and database in (None, "", ":memory:")):
            return None
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        # The URL (which may hold a password) reaches the workers through a pipe, never a
        # command line. "spawn": a fork of a process running threads (a dashboard) can hang.
        url = self.engine.url.render_as_string(hide_password=False)
        context = multiprocessing.get_context("spawn")
        # Whoever is free takes the next snapshot: this process starts at once, while each
        # worker first spends a third of a second starting, and a busy core slows one alone.
        claims = context.Value("i", 0)
        others = workers - 1
        checks: dict[int, RowCheck] = {}
        try:
            with ProcessPoolExecutor(others, mp_context=context, initializer=_share_claims,
                                     initargs=(claims,)) as pool:
                done = pool.map(_claimed_checks, [url] * others, [headers] * others)
                with self.engine.connect().execution_options(stream_results=True,
                                                             yield_per=2000) as conn:
                    checks.update(_checks_claimed(conn, headers, claims))
                for part in done:
                    checks.update(part)
        except (BrokenProcessPool, OSError):
            # A worker that died (killed on a loaded machine, or one that cannot start) says
            # nothing about the store: the rows are checked here instead, more slowly.
            log.warning("verify: a worker process ended abruptly; checking the rows in this "
                        "process instead")
            return None
        return checks

    def adopt_key(self, who: str, expected_state: str) -> str:
        """Accept, under the signing key, every snapshot and audit entry as it stands now: one
        signed ``adopt-key`` entry naming both heads and the header of every pruned snapshot,
        and both heads signed. For a store written before the key was set, or before schema 5.

        ``expected_state`` (at least 16 hex digits) must begin the store's state digest (both
        chain heads and every pruned header; ``verify`` prints it): a person compares it with
        one kept elsewhere, since nothing inside the database can tell history from a rewrite
        by someone who stripped every signature. Everything is checked again under the write
        lock, in the transaction that writes the adoption. Refused (``StoreError``) without a
        key, on a mismatch, when the chains do not verify without the key, or when an unsigned
        row follows a signed one (written after the key was in use). Returns the detail."""
        if not self.signing_key:
            raise StoreError("adopt-key needs the signing key: set PROXYLOGON_SIGNING_KEY or "
                             "[store] signing_key")
        wanted = expected_state.strip().lower()
        try:
            with self.engine.begin() as conn:
                snapshots_head = self._head(conn, "chain_head", lock=True)
                audit_head = self._head(conn, "audit_head", lock=True)
                report = self._verify_in(conn, None, workers=1)
                if not report.ok:
                    first = report.problems[0]
                    raise StoreError(f"the store does not verify even without the key "
                                     f"({first.where}: {first.message}); nothing was adopted")
                if len(wanted) < 16 or not report.state.startswith(wanted):
                    # The store's own digest is not shown: copying it from here into the
                    # command would vouch for whatever the store holds now.
                    raise StoreError(f"--state {expected_state[:64]!r} does not begin the "
                                     "store's state digest: give the one you kept from before "
                                     "(at least 16 digits), not the one verify prints now unless "
                                     "you compared the two; nothing was adopted")
                late = self._unsigned_after_signed(conn)
                if late:
                    raise StoreError(f"{late} is unsigned but was written after this key was in "
                                     "use (it follows rows signed with it, or names a snapshot "
                                     "saved with it), and adopting it would bless a change. "
                                     "Nothing was adopted; run python -m store verify")
                pruned = {str(row["id"]): header_record(dict(row)) for row in conn.execute(
                    select(schema.snapshots).where(schema.snapshots.c.pruned.is_(True))
                ).mappings()}
                detail = adoption_detail(snapshots_head, audit_head, pruned)
                self._set_head(conn, "chain_head", "snapshots", snapshots_head)
                self._append_entry(conn, who, "adopt-key", None, detail, guarded=False)
        except SQLAlchemyError as error:
            raise self._write_error(error, "adopt the key") from error
        return detail

    def _unsigned_after_signed(self, conn: Connection) -> str | None:
        """The first unsigned snapshot or audit entry that cannot predate the key: it follows
        one signed with it in its chain, or (an audit entry) names a snapshot saved under schema
        5 with the key, when every audit entry was signed."""
        assert self.signing_key
        key = self.signing_key
        keyed: set[int] = set()
        for table, label in ((schema.snapshots, "snapshot"),
                             (schema.audit_log, "audit entry")):
            signed = False
            for row in conn.execute(select(table).where(table.c.sequence.is_not(None))
                                    .order_by(table.c.sequence)).mappings():
                if row["signature"] and chain.signature_ok(key, row["hash"], row["signature"]):
                    signed = True
                    if label == "snapshot" and (row["format"] or 1) >= 3:
                        keyed.add(row["id"])
                elif signed or (label == "audit entry" and row["snapshot_id"] in keyed):
                    return f"{label} #{row['id']}"
        return None

    def dispose(self) -> None:
        self.engine.dispose()


def _aware(taken_at: str) -> datetime:
    """A stored snapshot time (written with its offset) as an aware time; UTC if it has none."""
    moment = datetime.fromisoformat(taken_at)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _info(row: Any) -> SnapshotInfo:
    counts = {status.value: 0 for status in Status}
    counts.update(json.loads(row["counts"]))
    return SnapshotInfo(
        id=row["id"], taken_at=datetime.fromisoformat(row["taken_at"]), source=row["source"],
        label=row["label"], tool_version=row["tool_version"],
        catalog_version=row["catalog_version"], advisory_id=row["advisory_id"],
        advisory_version=row["advisory_version"], host_count=row["host_count"], counts=counts,
        scope=row["scope"], discovered_count=row["discovered_count"], sequence=row["sequence"],
        previous_hash=row["previous_hash"], hash=row["hash"], signature=row["signature"],
        pruned=bool(row["pruned"]), format=int(row["format"] or 1),
        observed_count=row["observed_count"], fresh_count=row["fresh_count"],
    )


def _assessment(observation: str, verdict: str, observed_in: int | None,
                scopes: str | None) -> Assessment:
    return stored_assessment(json.loads(observation), json.loads(verdict), observed_in,
                             tuple(json.loads(scopes)) if scopes else ())


def _pair(heads: Mapping[str, str]) -> str:
    """Both chain heads as one signed text."""
    return f"{heads.get('chain_head')}|{heads.get('audit_head')}"


# The summary columns whose values decide how _summary_of reads a row (a status, flag or role
# no writer makes, or text for the indicator count, makes it unknown), with the empty value
# summary_rows gives a damaged row.
_JUDGED = ("status", "flags", "roles", "indicator_count", "investigation")


def _judged_columns(investigations: bool = True) -> list[ColumnElement[Any]]:
    """The ``_JUDGED`` columns as read (``investigations`` False: without the investigation's,
    for a results table from before schema 11, which has none: the migrations' backfill)."""
    names = _JUDGED if investigations else _JUDGED[:-1]
    return [func.coalesce(schema.results.c[name], _EMPTY.get(name, "")) for name in names]


def _judged_summary(values: tuple[Any, ...]) -> HostSummary:
    """A row holding these ``_JUDGED`` values (the rest empty), read by _summary_of as any
    row is (the only reading of stored columns)."""
    row = dict.fromkeys(SUMMARY_COLUMNS, "") | {name: _EMPTY[name] for name in _EMPTY}
    row.update(zip(_JUDGED, values, strict=True))
    return _summary_of((*(row[name] for name in SUMMARY_COLUMNS), None))


def _needs_work(values: tuple[Any, ...]) -> bool:
    """Whether a row holding these ``_JUDGED`` values is on the worklist, as compliance.worklist
    judges ``_judged_summary``'s reading of it (values without the investigation's: none)."""
    summary = _judged_summary((*values, *("" for _ in _JUDGED[len(values):])))
    return priority(summary.status, summary.flags, summary.investigation) is not None


def _format_of(header: Mapping[str, Any]) -> int:
    try:
        return int(header.get("format") or 1)
    except (TypeError, ValueError):
        return 1


def _clock_anchors(entries: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """Snapshot id -> the digest of its clocks, as the chained prune entries recorded them
    (store/clock.py ``digest``; the newest wins). Entries outside the chain count for nothing
    (verify names them)."""
    anchors: dict[int, str] = {}
    for entry in entries:
        if entry["action"] != "prune" or entry["sequence"] is None:
            continue
        try:
            recorded = json.loads(entry["detail"]).get("clocks") or {}
            anchors.update({int(k): str(v) for k, v in recorded.items()})
        except (ValueError, TypeError, AttributeError, RecursionError):
            continue
    return anchors


def _open_combinations(conn: Connection, snapshot_id: int,
                       investigations: bool = True) -> list[tuple[Any, ...]]:
    """The distinct ``_JUDGED`` values (as ``_judged_columns`` reads them) of a snapshot's rows
    that need work: a few dozen in any fleet, each judged once by ``_needs_work``."""
    keys = _judged_columns(investigations)
    combinations = conn.execute(select(*keys).where(schema.results.c.snapshot_id == snapshot_id)
                                .group_by(*keys)).all()
    return [tuple(values) for values in combinations if _needs_work(tuple(values))]


def _holding(combinations: Sequence[tuple[Any, ...]],
             investigations: bool = True) -> ColumnElement[bool]:
    """A condition true of the rows holding one of ``combinations`` (``_open_combinations``)."""
    keys = _judged_columns(investigations)
    return or_(*(and_(*(key == value for key, value in zip(keys, values, strict=True)))
                 for values in combinations))


def open_rows(conn: Connection, snapshot_id: int,
              investigations: bool = True) -> list[tuple[int, str]]:
    """(position, host) of a snapshot's stored rows that need work, as ``_summary_of`` reads
    them (a row holding values no writer makes is unknown: open), in position order.
    ``investigations`` False: the results table has no investigation column yet (a migration
    before schema 11; no row holds an investigation then)."""
    results = schema.results
    wanted = _open_combinations(conn, snapshot_id, investigations)
    if not wanted:
        return []
    return [(int(r[0]), str(r[1])) for r in conn.execute(
        select(results.c.position, results.c.host)
        .where(results.c.snapshot_id == snapshot_id, _holding(wanted, investigations))
        .order_by(results.c.position))]


class _OpenRows:
    """``open_rows`` of rows given one at a time (``ROW_KEYS`` order), judged as ``open_rows``
    judges the stored values: for verify, which reads every row anyway. Each distinct
    combination of the judged values (a few dozen) is judged once."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str]] = []
        self._judged: dict[tuple[Any, ...], bool] = {}
        self._key = itemgetter(*(ROW_KEYS.index(name) for name in _JUDGED))

    def __call__(self, row: tuple[Any, ...]) -> None:
        key = self._key(row)
        open_ = self._judged.get(key)
        if open_ is None:
            open_ = self._judged[key] = _needs_work(tuple(
                _EMPTY.get(name, "") if value is None else value
                for name, value in zip(_JUDGED, key, strict=True)))
        if open_:
            self.found.append((int(row[0]), str(row[1])))


def _summary_of(row: tuple[Any, ...]) -> HostSummary:
    """A stored summary row (``summary_rows``); one holding a value no writer of this tool
    makes (a status, flag or role it does not know, text for a number) is unknown, never
    what it claims, and says why (``verify`` names the row)."""
    try:
        return HostSummary.from_columns(row[:-1], observed_in=row[-1])
    except (ValueError, TypeError, OverflowError):  # OverflowError: int() of an infinite REAL
        return HostSummary(
            host=str(row[0]), fqdn="", status=Status.UNKNOWN, product="", cu="", build="",
            build_source="", known_build=False, release="", site="", dag="", roles=(),
            flags=(), mitigations=(), cves_open=(),
            action="Run python -m store verify: this stored row was changed outside the tool",
            reason="the stored row holds values this tool never writes", observed_at="",
            failure_reason="", failure_detail="", run_failed=False, indicator_count=0,
            observed_in=row[-1] if isinstance(row[-1], int) else None)


# What a summary column of a damaged row (one the migration could not derive) reads as.
# By the field's type: false, 0, or "" for the texts and the lists stored as text.
_EMPTY: dict[str, Any] = {
    name: {"bool": False, "int": 0}.get(str(HostSummary.__dataclass_fields__[name].type), "")
    for name in chain.SUMMARY_FIELDS}
# A result row as stored and hashed (store/chain.py Row), in this order.
ROW_KEYS = ("position", "host", "status", "observation", "verdict", "observed_in", "scopes",
            *chain.SUMMARY_FIELDS, "investigation_detail")


def _summary_values(assessment: Assessment,
                    investigation: Investigation | None = None) -> tuple[Any, ...]:
    columns = summarise(assessment, investigation).to_columns()
    return (*(columns[name] for name in chain.SUMMARY_FIELDS),
            None if investigation is None else investigation_dumps(investigation))


# Builds read from the server itself: only these show that the fix is installed on it.
_SERVER_BUILDS = (BuildSource.EXSETUP, BuildSource.INSTALLED_UPDATE)


def _investigations(assessments: Sequence[Assessment], catalog: Catalog, now: datetime,
                    fixes: Mapping[str, datetime]) -> list[Investigation]:
    """Each member's investigation after the fix for the snapshot's own advisory, judged at
    ``now`` (compliance/investigation.py). The observed fix time of a patched member: the
    earliest time it was seen patched from a build the server itself gave (ExSetup.exe or an
    installed update), carried from the previous snapshot's rows (``fixes``) and this
    observation's time; a member not patched now starts again. A member whose judging raises
    fails closed (``not_investigated``, the error's type in its evidence): one server's document
    must never stop the fleet's save."""
    found = []
    for member in assessments:
        verdict, observation = member.verdict, member.observation
        try:
            observed = None
            if verdict.status is Status.PATCHED:
                observed = fixes.get(observation.host.name.lower())
                if (verdict.build_source in _SERVER_BUILDS and observation.failure is None
                        and observation.observed_at is not None):
                    seen = _utc(observation.observed_at)
                    observed = seen if observed is None else min(observed, seen)
            found.append(judge_observation(observation, verdict, catalog.advisory, now, observed))
        except Exception as error:
            # Only the type is said: the error's text may be the server's.
            kind = type(error).__name__
            log.warning("the investigation of %r could not be judged: %s", observation.host.name,
                        kind)
            found.append(Investigation(
                InvestigationState.NOT_INVESTIGATED, None,
                (f"the investigation could not be judged: {kind}; re-collect",),
                f"Re-collect: the investigation could not be judged ({kind})"))
    return found


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stored_fixes(results: Sequence[tuple[Any, ...]]) -> dict[str, datetime]:
    """Lower-case name -> the stored fix time of each row graded patched (``ROW_KEYS``
    order); a time that does not read is left out (not known)."""
    at = ROW_KEYS.index("fixed_at")
    found = {}
    for row in results:
        if row[2] != Status.PATCHED.value or not row[at]:
            continue
        try:
            found[str(row[1]).lower()] = _utc(datetime.fromisoformat(str(row[at])))
        except ValueError:
            continue
    return found


def _stored_text(texts: dict[int, tuple[Observation, str]], observation: Observation) -> str | None:
    known = texts.get(id(observation))
    return known[1] if known is not None and known[0] is observation else None


# The verdict of a member that is graded again (or replaced by the run) before anyone sees
# it: a carried one read for a save, a never-probed one. Never stored or shown.
_STAND_IN = Verdict(host="", status=Status.UNKNOWN, reason="stand-in", action="",
                    as_of=datetime(1970, 1, 1, tzinfo=UTC))


# In a verify worker: the index of the next snapshot to check, shared with the process that
# started it and the other workers (SnapshotStore._parallel_checks).
_claims: Synchronized[int] | None = None


def _share_claims(claims: Synchronized[int]) -> None:
    """A verify worker's start (its pool's initializer)."""
    global _claims
    _claims = claims


def _claimed_checks(url: str, headers: Sequence[Mapping[str, Any]]) -> dict[int, RowCheck]:
    """A verify worker: the RowCheck of each snapshot of ``headers`` it claims, read from
    ``url``."""
    assert _claims is not None, "started without _share_claims"
    engine = reading_engine(url)
    try:
        with engine.connect().execution_options(stream_results=True, yield_per=2000) as conn:
            return _checks_claimed(conn, headers, _claims)
    finally:
        engine.dispose()


def _checks_claimed(conn: Connection, headers: Sequence[Mapping[str, Any]],
                    claims: Synchronized[int]) -> dict[int, RowCheck]:
    """The RowCheck of each snapshot of ``headers`` this process claims, one at a time, until
    ``claims`` has passed the last."""
    checks: dict[int, RowCheck] = {}
    while True:
        with claims.get_lock():
            index = claims.value
            claims.value = index + 1
        if index >= len(headers):
            return checks
        checks[headers[index]["id"]] = _row_check(conn, headers[index])


def _row_check(conn: Connection, header: Mapping[str, Any]) -> RowCheck:
    """One snapshot's RowCheck, with its open rows, its rows hashed as they are read. A value
    SQLite cannot hand over as text (bytes that are not UTF-8, which no writer of this tool
    stores) makes the snapshot's rows match no digest: a problem naming it, not a traceback
    (review 2026-12-02)."""
    try:
        return _rows_checked(conn, header)
    except DBAPIError as error:
        if conn.dialect.name != "sqlite" or "decode" not in str(error.orig):
            raise
        return RowCheck(True, None, False, None)


def _rows_checked(conn: Connection, header: Mapping[str, Any]) -> RowCheck:
    snapshot_id = header["id"]
    inventory = list(_driver_rows(conn, select(
        schema.discovered.c.position, schema.discovered.c.host, schema.discovered.c.record)
        .where(schema.discovered.c.snapshot_id == snapshot_id)
        .order_by(schema.discovered.c.position)))
    outside = outside_table.read(conn, snapshot_id)
    opened = _OpenRows()
    # The rows ``_rows`` reads (ROW_KEYS), streamed: never a whole snapshot in memory. From
    # format 8 on PostgreSQL, the JSON columns as their SHA-256, computed where they lie.
    hashed_json = _format_of(header) >= chain.HASHED_JSON_FORMAT and _hashes_json(conn)
    columns = [_json_digest(schema.results.c[key]) if hashed_json and key in _JSON_KEYS
               else schema.results.c[key] for key in ROW_KEYS]
    results = _driver_rows(conn, select(*columns)
                           .where(schema.results.c.snapshot_id == snapshot_id)
                           .order_by(schema.results.c.position))
    return replace(check_rows(header, results, inventory, outside, opened, hashed_json),
                   open_rows=tuple(opened.found))


# The result columns a format 8 digest takes as their SHA-256 (store/chain.py json_digest).
_JSON_KEYS = frozenset({"observation", "verdict", "investigation_detail"})


def _json_digest(column: ColumnElement[Any]) -> ColumnElement[bytes]:
    """PostgreSQL's SHA-256 of a text column's UTF-8 bytes (NULL for NULL): what
    ``chain.json_digest`` computes from the same text. Schema-qualified, so no function a
    writer of the database creates in another schema is called instead."""
    return func.pg_catalog.sha256(
        func.pg_catalog.convert_to(column, literal_column("'UTF8'")), type_=LargeBinary)


# pg_type's OID of text: OIDs below 10,000 are fixed in every PostgreSQL installation.
_TEXT_OID = 25
# Catalogue queries below compare only with OPERATOR(pg_catalog.=) on operands of exactly its
# types: an unqualified "=" without an exact built-in match (oid = regclass) resolves to an
# operator whoever owns the tables may define in another schema (CVE-2018-1058's pattern), and
# it would run in verify's session, with verify's role (review 2026-12-02).
_RELATION = (
    "SELECT c.relkind, c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid "
    "OPERATOR(pg_catalog.=) pg_catalog.to_regclass(CAST(:name AS pg_catalog.text))"
    "::pg_catalog.oid")
_COLUMN_TYPES = (
    "SELECT a.attname::pg_catalog.text, a.atttypid FROM pg_catalog.pg_attribute a WHERE "
    "a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(CAST(:name AS pg_catalog.text))"
    "::pg_catalog.oid AND NOT a.attisdropped")


def _hashes_json(conn: Connection) -> bool:
    """Whether this database hashes the results' JSON columns for verify: PostgreSQL, with
    each of them still of type text. Someone who owns the table could change a column's type
    to one whose cast to text shows verify other bytes than the pages read: then the text is
    read and hashed here, as on SQLite (where a BLOB could pose as a digest). The table is
    locked (as every read of it in verify's transaction does) before its types are read, so
    they cannot change before the rows are."""
    if conn.dialect.name != "postgresql":
        return False
    table = conn.dialect.identifier_preparer.quote(schema.results.name)
    # On the driver's own cursor: verify's connection streams through server-side cursors,
    # which hold queries only (and the lock is the transaction's, which both share).
    with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(f"LOCK TABLE {table} IN ACCESS SHARE MODE")
    types = {str(name): typed for name, typed in
             conn.execute(text(_COLUMN_TYPES), {"name": schema.results.name}).all()}
    return all(types.get(name) == _TEXT_OID for name in _JSON_KEYS)


def _relations(conn: Connection) -> list[tuple[str, str]]:
    """What makes the store's tables able to show ``verify`` other rows than the pages read,
    as (table, what) pairs: on PostgreSQL, a table that is a view (or anything but a plain
    table), whose rows can depend on the query reading them (``current_query()``), or
    row-level security, whose policies can hide rows from some queries only. Empty on SQLite,
    which has neither (its views are refused by name). Someone who owns the tables can set
    these up without touching a stored byte."""
    if conn.dialect.name != "postgresql":
        return []
    found = []
    for name in sorted(schema.metadata.tables):
        row = conn.execute(text(_RELATION), {"name": name}).first()
        if row is None:
            continue  # reading it fails, and says so
        kind, row_security = row
        if kind != "r":
            found.append((name, f"a relation of kind {kind!r} (a view?), not a plain table"))
        elif row_security:
            found.append((name, "row-level security"))
    return found


def _relation_problems(conn: Connection) -> list[str]:
    """``_relations`` as verify's problem lines."""
    return [f"table {name} has {what}: what verify reads from it may differ from what the "
            "pages read" for name, what in _relations(conn)]


def _driver_rows(conn: Connection, statement: Select[Any]) -> Generator[tuple[Any, ...]]:
    """The rows of ``statement``, each as SQLAlchemy returns it (every value through its
    column type's result processor: SQLite's 0/1 becomes a bool), one at a time; read it to
    its end before ``conn`` runs anything else. A driver's error is raised as SQLAlchemy
    raises it (``DBAPIError``). From the driver's own cursor when it is sqlite3 or psycopg
    (psycopg streams it in chunks of ``STREAM_ROWS``): SQLAlchemy's row objects, a list of
    a whole snapshot's rows and the garbage collector's passes over it took a quarter of
    verify's time at 10,000 hosts x 52, and a row hashed as it arrives is still in the CPU's
    cache."""
    dialect = conn.dialect
    driver = conn.connection.driver_connection  # in conn's transaction
    if driver is None or dialect.driver not in ("pysqlite", "psycopg"):
        for found in conn.execute(statement):
            yield tuple(found)
        return
    compiled = statement.compile(dialect=dialect)
    params = compiled.construct_params()
    args = (tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional
            else params)
    failure = dialect.loaded_dbapi.Error
    try:
        yield from _typed_rows(driver, str(compiled), args, statement, dialect)
    except failure as error:
        raise DBAPIError.instance(str(compiled), args, error, failure, dialect=dialect,
                                  hide_parameters=conn.engine.hide_parameters) from error


def _typed_rows(driver: Any, sql: str, args: Any, statement: Select[Any],
                dialect: Dialect) -> Iterator[tuple[Any, ...]]:
    """``_driver_rows`` from a cursor of ``driver`` (a sqlite3 or psycopg connection)."""
    cursor = driver.cursor()
    rows: Iterator[tuple[Any, ...]] = iter(())
    try:
        if dialect.driver == "psycopg":
            from psycopg import capabilities

            # Chunks need libpq 17 (psycopg[binary] bundles it); before it, a row at a time.
            rows = cursor.stream(sql, args,
                                 size=STREAM_ROWS if capabilities.has_stream_chunked() else 1)
        else:
            rows = cursor.execute(sql, args)
        processors: list[tuple[int, Callable[[Any], Any]]] | None = None
        for row in rows:
            if processors is None:  # the column types the driver reports come with the rows
                processors = [
                    (i, process) for i, (column, described) in enumerate(
                        zip(statement.selected_columns, cursor.description, strict=True))
                    if (process := column.type.dialect_impl(dialect).result_processor(
                        dialect, described[1])) is not None]
            if processors:
                values = list(row)
                for i, typed in processors:
                    values[i] = typed(values[i])
                row = tuple(values)
            yield row
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # psycopg: a stream left part-read is cancelled and drained
        cursor.close()

