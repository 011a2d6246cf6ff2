"""Attacks by whoever owns the store's tables on PostgreSQL (a role that is not a superuser and
owns the database) and holds no signing key, against what verify proves (review 2026-12-02 of
snapshot format 8, issue 15; each test failed before its fix).

Format 8 gave verify's row query a fingerprint no page query has (``sha256(convert_to(``), so
a relation that can tell its readers apart (a view, a row-security policy, both calling
``pg_catalog.current_query()``) could show verify the signed rows and the pages forged ones;
the same held before format 8 for any query-text-dependent view. Such a store is now refused
when opened, and a store that becomes one fails verify. The catalogue queries verify makes
call no operator a writer can define (CVE-2018-1058's pattern).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from compliance.evaluate import assess
from compliance.models import Host, Observation
from store import SnapshotStore
from store.snapshots import StoreError

KEY = b"review-signing-key"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
_ROLES = itertools.count(1)
# Only verify's format 8 row query computes this: every page query lacks it.
VERIFY_ONLY = "pg_catalog.strpos(pg_catalog.current_query(), 'sha256') > 0"


@pytest.fixture
def owner_url(postgres_peer, postgres_url):
    """The fresh database of ``postgres_url``, owned by a new LOGIN role that is not a
    superuser (superusers bypass row security): the URL connecting as that role."""
    from psycopg import sql

    role = f"review_owner_{next(_ROLES)}"
    database = postgres_url.rsplit("/", 1)[1]
    with peer_admin(postgres_peer) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database), sql.Identifier(role)))
    with postgres_peer.connect(database) as admin:  # PG 15: public belongs to the db owner
        admin.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    return postgres_url.replace(f"{postgres_peer.user}@", f"{role}@", 1)


def peer_admin(peer):
    return peer.connect("postgres")


def _saved(url: str, catalog) -> tuple[SnapshotStore, int]:
    """A keyed store holding one format 8 snapshot: EX0 and EX2 vulnerable, EX1, EX3 patched."""
    store = SnapshotStore.open(url, signing_key=KEY)
    at = NOW - timedelta(days=1)
    observations = [Observation(Host(f"EX{i}"), at, "test",
                                exsetup_version="15.1.2176.9" if i % 2 else "15.1.2176.2")
                    for i in range(4)]
    snapshot_id = store.save(assess(observations, catalog, at, source="test", tool_version="t",
                                    discovered=[o.host for o in observations]), catalog)
    assert store.info(snapshot_id).format == 8
    assert store.verify(key=KEY, workers=1).ok
    return store, snapshot_id


def _as_owner(store: SnapshotStore, *statements: str) -> None:
    with store.engine.begin() as conn:
        assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                            ).scalar_one() is False
        for statement in statements:
            conn.execute(text(statement))


def _caught(store: SnapshotStore, url: str, workers: int, problem: str, refused: str) -> None:
    """verify (with the key) of the store as a dashboard opened it before the forgery fails,
    naming ``problem``; opening the store now is refused (``refused``)."""
    report = store.verify(key=KEY, workers=workers)
    assert not report.ok and problem in report.problems[0].message, report.problems
    with pytest.raises(StoreError, match=refused):
        SnapshotStore.open(url, signing_key=KEY)


def _statuses(store: SnapshotStore, snapshot_id: int) -> dict[str, str]:
    """Each host's status as the Hosts page reads it (views/data.py ``_host_table``)."""
    return {row[0]: row[1] for batch in store.summary_batches(snapshot_id,
                                                               fields=("host", "status"))
            for row in batch}


# Whom the view shows the signed rows: verify's format 8 query alone (the next save, which
# reads the head's rows by _rows, is then refused), or every query reading a whole row
# (verify, _rows: saves and evidence bundles), so only the pages see the forgery.
SIGNED_FOR = {"verify": VERIFY_ONLY,
              "whole rows": "pg_catalog.strpos(pg_catalog.current_query(), "
                            "'investigation_detail') > 0"}


@pytest.mark.parametrize("shown", sorted(SIGNED_FOR))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_view_in_place_of_results_that_shows_verify_the_signed_rows_is_caught(
        owner_url, shipped_catalog, workers, shown):
    # The owner renames results and puts a view of the same name and columns in its place:
    # to verify's query (or to every query reading whole rows) it shows the signed status, to
    # the pages EX0 "patched". A dashboard that opened the store before sees the forgery and
    # its verify fails; opening the store now is refused (pg_rules lists no view's rule).
    store, snapshot_id = _saved(owner_url, shipped_catalog)
    try:
        _as_owner(store, *_view(store, SIGNED_FOR[shown]))
        assert _statuses(store, snapshot_id)["EX0"] == "patched"  # what the pages show
        _caught(store, owner_url, workers, "table results", "not a plain table on table results")
    finally:
        store.dispose()


def _view(store: SnapshotStore, signed_for: str) -> list[str]:
    """Statements replacing results by a view showing EX0 patched except where signed_for."""
    with store.engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = "
            "'results' AND table_schema = 'public' ORDER BY ordinal_position")).scalars().all()
    kept = ", ".join(c for c in columns if c != "status")
    return ["ALTER TABLE results RENAME TO results_signed",
            f"CREATE VIEW results AS SELECT {kept}, CASE WHEN {signed_for} OR host <> 'EX0' "
            f"THEN status ELSE 'patched' END AS status FROM results_signed"]


@pytest.mark.parametrize("workers", [1, 2])
def test_row_security_hiding_a_host_from_the_pages_is_caught(owner_url, shipped_catalog,
                                                              workers):
    # The owner turns on (and forces, so it applies to the owner too) row-level security on
    # results with a policy that shows EX0 only to verify's format 8 query.
    store, snapshot_id = _saved(owner_url, shipped_catalog)
    try:
        _as_owner(store, "ALTER TABLE results ENABLE ROW LEVEL SECURITY",
                  "ALTER TABLE results FORCE ROW LEVEL SECURITY",
                  f"CREATE POLICY shown ON results USING (host <> 'EX0' OR {VERIFY_ONLY})")
        assert "EX0" not in _statuses(store, snapshot_id)  # hidden from the pages
        _caught(store, owner_url, workers, "row-level security",
                "row-level security on table results")
    finally:
        store.dispose()


def test_verifys_type_check_calls_no_operator_a_writer_defined(owner_url, shipped_catalog):
    # _hashes_json decides between the database's hash and the client's by comparing
    # pg_attribute.atttypid (oid) with 'pg_catalog.text'::regtype: an unqualified "=" with no
    # exact built-in match (oid, regtype), so an operator of exactly those types in public
    # (on the default search path) is chosen over pg_catalog's, whatever the search path's
    # order (CVE-2018-1058's pattern). It runs in verify's session, with verify's role (an
    # auditor's, maybe more privileged), and decides which path verify takes. Here it only
    # notes that it was called.
    store, _snapshot_id = _saved(owner_url, shipped_catalog)
    try:
        _as_owner(
            store,
            # A sequence: verify's transaction is rolled back, nextval is not.
            "CREATE SEQUENCE public.trojan_calls",
            "CREATE FUNCTION public.trojan_eq(oid, regtype) RETURNS boolean LANGUAGE plpgsql "
            "AS $$ BEGIN PERFORM pg_catalog.nextval('public.trojan_calls'); "
            "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid; END $$",
            "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regtype, "
            "FUNCTION = public.trojan_eq)")
    finally:
        store.dispose()
    reopened = SnapshotStore.open(owner_url, signing_key=KEY)

    def calls() -> int:
        with reopened.engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                "FROM public.trojan_calls")).scalar_one())

    try:
        # (psycopg's own type look-up on a new connection compares oid with regtype too: the
        # pool's connection is made before the count, so only verify's queries are counted.)
        before = calls()
        assert reopened.verify(key=KEY, workers=1).ok
        made = calls() - before
        assert made == 0, f"verify called the writer's operator {made} times"
    finally:
        reopened.dispose()


def test_a_shadowed_type_check_cannot_send_a_jsonb_column_down_the_hashed_path(
        owner_url, shipped_catalog):
    # The same operator, now saying "text" for every column: with investigation_detail made
    # jsonb (which has no implicit cast to text), verify asks PostgreSQL for
    # sha256(convert_to(a jsonb)) and dies with a traceback instead of naming the snapshot.
    store, snapshot_id = _saved(owner_url, shipped_catalog)
    try:
        _as_owner(
            store,
            # "Is text" for every column; any other comparison as pg_catalog's (psycopg's
            # own type look-ups on connect compare oid with regtype too).
            "CREATE FUNCTION public.always(oid, regtype) RETURNS boolean LANGUAGE sql "
            "AS $$ SELECT $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid OR "
            "$2::pg_catalog.oid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype"
            "::pg_catalog.oid $$",
            "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regtype, "
            "FUNCTION = public.always)",
            "ALTER TABLE results ALTER COLUMN investigation_detail TYPE jsonb "
            "USING investigation_detail::jsonb")
    finally:
        store.dispose()
    reopened = SnapshotStore.open(owner_url, signing_key=KEY)
    try:
        report = reopened.verify(key=KEY, workers=1)  # raised ProgrammingError before
        assert [p.snapshot_id for p in report.problems] == [snapshot_id]
    finally:
        reopened.dispose()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_view_stays_unseen_behind_an_operator_shadowing_the_relation_check(
        owner_url, shipped_catalog, workers):
    # The relation check's first version joined pg_class ON c.oid = to_regclass(name): oid =
    # regclass, an unqualified operator with no exact built-in match, so the owner's
    # public.=(oid, regclass) was chosen over pg_catalog's. Saying "no match" made every table
    # read as missing (skipped), and the type check, comparing the same way, sent verify down
    # the client's path: the view passed. Every comparison is now OPERATOR(pg_catalog.=).
    store, snapshot_id = _saved(owner_url, shipped_catalog)
    try:
        _as_owner(store, *_view(store, SIGNED_FOR["whole rows"]),
                  "CREATE FUNCTION public.unseen(oid, regclass) RETURNS boolean LANGUAGE sql "
                  "AS $$ SELECT false $$",
                  "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, "
                  "FUNCTION = public.unseen)")
        assert _statuses(store, snapshot_id)["EX0"] == "patched"  # what the pages show
        _caught(store, owner_url, workers, "table results", "not a plain table on table results")
    finally:
        store.dispose()


def test_operators_a_writer_puts_before_pg_catalog_are_never_called(owner_url, shipped_catalog):
    # The owner defines "=" for the types the store's queries compare (integer ids, text
    # names) in public, each counting its calls, and puts public before pg_catalog on the
    # database's search path: every query of a plain session would call them, with that
    # session's role. The store's sessions drop pg_catalog from the path, so PostgreSQL
    # searches it first and its own operators are the exact matches found.
    store, snapshot_id = _saved(owner_url, shipped_catalog)
    statements = ["CREATE SEQUENCE public.trojan_calls"]
    for left, right, builtin in (("integer", "integer", "int4eq"), ("integer", "bigint", "int48eq"),
                                 ("integer", "smallint", "int42eq"), ("text", "text", "texteq"),
                                 ("bigint", "bigint", "int8eq")):
        name = f"trojan_{left}_{right}"
        statements += [
            f"CREATE FUNCTION public.{name}({left}, {right}) RETURNS boolean LANGUAGE plpgsql "
            f"AS $$ BEGIN PERFORM pg_catalog.nextval('public.trojan_calls'); "
            f"RETURN pg_catalog.{builtin}($1, $2); END $$",
            f"CREATE OPERATOR public.= (LEFTARG = {left}, RIGHTARG = {right}, "
            f"FUNCTION = public.{name})"]
    try:
        with store.engine.connect() as conn:
            database = conn.execute(text("SELECT current_database()")).scalar_one()
        _as_owner(store, *statements,
                  f'ALTER DATABASE "{database}" SET search_path = public, pg_catalog')
    finally:
        store.dispose()

    def calls(conn) -> int:
        return int(conn.execute(text("SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                     "FROM public.trojan_calls")).scalar_one())

    import psycopg

    with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://")) as raw:
        raw.execute("SELECT 1 WHERE 1 = 1")  # a plain session calls the trojan
        assert raw.execute("SELECT last_value FROM public.trojan_calls").fetchone()[0] >= 1
    reopened = SnapshotStore.open(owner_url, signing_key=KEY)
    try:
        with reopened.engine.connect() as conn:
            before = calls(conn)
        assert reopened.verify(key=KEY, workers=2).ok
        assert "EX0" in _statuses(reopened, snapshot_id)
        assert reopened.summaries(snapshot_id, shipped_catalog, hosts=["EX0"])
        with reopened.engine.connect() as conn:
            assert calls(conn) == before, "the store's queries called the writer's operators"
    finally:
        reopened.dispose()
