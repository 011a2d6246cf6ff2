"""Benchmark: a store from before whole-fleet snapshots (format 1), upgraded (issue #11).

Writes S format 1 snapshots of H hosts the way the previous version did (schema 3: a full
collection every week, each followed by an import of one hand-run document), opens the store
with this version (migration to schema 4), then times what composing the old snapshots costs:
- ``figures``: every old snapshot's fleet figures for the dashboard's trend (target < 10 s,
  once per dashboard process: cached for as long as it runs);
- ``fleet``: the composed fleet of the newest old snapshot (one page view; target < 5 s);
- ``first save``: the first save after the upgrade, which composes under the chain-head
  lock (target < 10 s, well inside the default 30 s lock_timeout a second collector waits).
The ideal for each is one decode of every host's newest observation plus one grading each.
Run: .venv/bin/python bench/upgrade.py [--hosts N] [--snapshots S]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bench.store import fleet  # noqa: E402
from compliance.catalog import load_catalog  # noqa: E402
from compliance.codec import observation_to_dict, verdict_to_dict  # noqa: E402
from compliance.evaluate import assess  # noqa: E402
from compliance.models import Snapshot  # noqa: E402
from store import SnapshotStore, chain  # noqa: E402
from store.snapshots import MIGRATIONS  # noqa: E402

TARGETS = {"figures": 10.0, "fleet": 5.0, "first save": 10.0}


def _dumps(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_format_1(url: str, snapshots: list[Snapshot]) -> None:
    """Schema 3 and format 1 snapshots, as the previous version saved them."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        previous = chain.GENESIS
        for sequence, snapshot in enumerate(snapshots, start=1):
            rows = [(p, a.observation.host.name, a.verdict.status.value,
                     _dumps(observation_to_dict(a.observation)), _dumps(verdict_to_dict(a.verdict)))
                    for p, a in enumerate(snapshot.assessments)]
            header = {"taken_at": snapshot.taken_at.isoformat(), "source": snapshot.source,
                      "label": snapshot.label, "tool_version": "0.1.0",
                      "catalog_version": snapshot.catalog_version,
                      "advisory_id": snapshot.advisory_id,
                      "advisory_version": snapshot.advisory_version, "scope": snapshot.scope,
                      "host_count": len(rows),
                      "counts": _dumps(dict(Counter(r[2] for r in rows))),
                      "discovered_count": 0, "sequence": sequence, "previous_hash": previous}
            digest = chain.digest(header, rows, [])
            conn.execute(text(
                "INSERT INTO snapshots (taken_at, source, label, tool_version, catalog_version, "
                "advisory_id, advisory_version, scope, host_count, counts, discovered_count, "
                "sequence, previous_hash, hash, pruned) VALUES (:taken_at, :source, :label, "
                ":tool_version, :catalog_version, :advisory_id, :advisory_version, :scope, "
                ":host_count, :counts, :discovered_count, :sequence, :previous_hash, :hash, "
                "false)"), {**header, "hash": digest})
            snapshot_id = conn.execute(text("SELECT max(id) FROM snapshots")).scalar_one()
            conn.execute(text("INSERT INTO results (snapshot_id, position, host, status, "
                              "observation, verdict) VALUES (:s, :p, :h, :st, :o, :v)"),
                         [{"s": snapshot_id, "p": p, "h": h, "st": st, "o": o, "v": v}
                          for p, h, st, o, v in rows])
            previous = digest
            conn.execute(text("UPDATE meta SET value = :v WHERE key = 'chain_head'"),
                         {"v": f"{sequence}:{digest}"})
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=12, help="weeks (two snapshots each)")
    args = parser.parse_args()
    catalog = load_catalog()
    start = datetime.now(UTC) - timedelta(weeks=args.snapshots)
    base = fleet(catalog, args.hosts, start)
    history = []
    for week in range(args.snapshots):
        at = start + timedelta(weeks=week)
        history.append(Snapshot(**{**base.__dict__, "taken_at": at, "source": "collect",
                                   "label": f"week {week}"}))
        one = base.assessments[week % len(base.assessments)].observation
        history.append(assess([one], catalog, at + timedelta(days=1), source="import",
                              tool_version="0.1.0", label="import of 1 probe documents"))
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite:///{Path(workdir) / 'old.db'}"
        started = time.perf_counter()
        write_format_1(url, history)
        print(f"wrote {len(history)} format 1 snapshots x {args.hosts} hosts in "
              f"{time.perf_counter() - started:.0f} s")
        store = SnapshotStore.open(url)  # migrates to schema 4
        figures = {}
        t0 = time.perf_counter()
        legacy = store.legacy_figures(catalog)
        figures["figures"] = time.perf_counter() - t0
        newest = store.history()[-1]
        t0 = time.perf_counter()
        composed = store.fleet(newest.id, catalog)
        figures["fleet"] = time.perf_counter() - t0
        assert len(composed) == args.hosts and legacy[newest.id]["host_count"] == args.hosts
        one = base.assessments[0].observation
        run = assess([one], catalog, datetime.now(UTC), source="import", tool_version="bench")
        t0 = time.perf_counter()
        saved = store.save(run, catalog)
        figures["first save"] = time.perf_counter() - t0
        assert store.info(saved).host_count == args.hosts and store.verify().ok
        store.dispose()
    for name, target in TARGETS.items():
        verdict = "MET" if figures[name] < target else "MISSED"
        print(f"  {name:11} {figures[name]:8.3f} s   (target < {target} s: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
