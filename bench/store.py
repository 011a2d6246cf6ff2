"""Benchmark: the snapshot store at audit scale (issue #5), on SQLite and PostgreSQL.

52 weekly snapshots of 10,000 hosts each. Prints, per backend: the save of one 10,000-host
snapshot (target < 2 s), the save of a two-host run that carries the other 9,998 forward
(re-graded: < 3 s), the trend over all 52 (< 0.3 s), an as-of lookup (< 0.1 s), a diff
of two snapshots (< 1 s), verification of the whole chain (< 10 s), and the database size.
With fewer than 52 snapshots (seeding 52 takes minutes), verify is also extrapolated to 52:
a straight line through verify's time (the best of 3, with as many processes as at 52) on
half the snapshots and on all of them, so its start-up is not multiplied with the rows.
Run: .venv/bin/python bench/store.py [--hosts N] [--snapshots S] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.machine import speed_note  # noqa: E402
from collectors.demo import demo_observations  # noqa: E402
from compliance.catalog import load_catalog  # noqa: E402
from compliance.evaluate import assess  # noqa: E402
from compliance.models import Host, Snapshot  # noqa: E402
from compliance.verdicts import other_catalogs  # noqa: E402
from store import SnapshotStore  # noqa: E402
from store.history import diff  # noqa: E402
from store.snapshots import MAX_WORKERS  # noqa: E402

# A partial save does what a full one does and also grades the carried hosts again: the
# ideal is a full save plus one evaluation per carried host (~0.1 ms each).
TARGETS = {"save": 2.0, "save_partial": 3.0, "trend": 0.3, "as_of": 0.1, "diff": 1.0,
           "verify": 10.0}
AUDIT_SNAPSHOTS = 52  # what the targets are for


def fleet(catalog, hosts: int, at: datetime, week: int = 7) -> Snapshot:
    """A realistic mix: the demo fleet's observations of ``week`` (0-7 of its roll-out; the
    last by default), observed shortly before ``at``, repeated under new names and assessed
    at ``at``."""
    template = demo_observations(catalog, week, at)
    observations = []
    for i in range(hosts):
        obs = template[i % len(template)]
        name = f"H{i:05d}"
        observations.append(replace(obs, host=Host(name, f"{name.lower()}.bench.example",
                                                   obs.host.site, obs.host.dag, obs.host.roles,
                                                   obs.host.ad_build)))
    return assess(observations, catalog, at, source="bench", tool_version="bench",
                  discovered=[o.host for o in observations])


def _verify_best(store: SnapshotStore, repeat: int = 3) -> float:
    """Seconds of the fastest of ``repeat`` verifies, with as many processes as verify uses at
    audit scale (fewer rows would be checked in one)."""
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        assert store.verify(workers=workers).ok
        times.append(time.perf_counter() - t0)
    return min(times)


def run(url: str, hosts: int, count: int, size) -> dict[str, float]:
    catalog = load_catalog()
    # As a collection saves: every member judged by each other shipped advisory too (issue 19).
    others = other_catalogs(catalog)
    start = datetime(2025, 11, 1, tzinfo=UTC)
    base = fleet(catalog, hosts, start)
    store = SnapshotStore.open(url)
    saves = []
    points = []  # (snapshots, seconds) for the line verify is extrapolated along
    for week in range(count):
        at = start + timedelta(weeks=week)
        snapshot = replace(base, taken_at=at, label=f"week {week}")
        t0 = time.perf_counter()
        store.save(snapshot, catalog, others=others)
        saves.append(time.perf_counter() - t0)
        if count < AUDIT_SNAPSHOTS and week + 1 == max(1, count // 2):
            points.append((week + 1, _verify_best(store)))
    two = replace(base, taken_at=start + timedelta(weeks=count - 1, days=1), label="two hosts",
                  assessments=base.assessments[:2], discovered=(), complete_scopes=())
    t0 = time.perf_counter()
    partial = store.save(two, catalog, others=others)
    partial_time = time.perf_counter() - t0
    assert store.info(partial).host_count == hosts and store.info(partial).observed_count == 2
    count += 1
    history = store.history()
    t0 = time.perf_counter()
    trend = [(s.taken_at, s.counts) for s in store.history()]
    trend_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = store.as_of(start + timedelta(weeks=30, days=2))
    as_of_time = time.perf_counter() - t0
    assert found is not None and len(trend) == count
    t0 = time.perf_counter()
    # As the Snapshots page does: from the summary columns, no JSON decoded.
    changes = diff(store.summaries(history[0].id, catalog), store.summaries(history[-1].id,
                                                                             catalog))
    diff_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = store.verify()
    verify_time = time.perf_counter() - t0
    assert report.ok and report.checked == count, report.problems[:3]
    figures = {"save": statistics.median(saves), "save_partial": partial_time, "trend": trend_time, "as_of": as_of_time,
               "diff": diff_time, "verify": verify_time, "size_mb": size(store) / 2**20}
    if points:
        # The store at audit scale holds 52 snapshots and the two-host one.
        (few, early), late = points[0], _verify_best(store)
        per_snapshot = max(0.0, (late - early) / (count - few))
        figures["verify_52"] = late + per_snapshot * (AUDIT_SNAPSHOTS + 1 - count)
        figures["verify_per_snapshot"] = per_snapshot
    assert not changes.new_hosts
    store.dispose()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    print(speed_note(), flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        if args.backend in ("sqlite", "both"):
            path = Path(workdir) / "bench.db"
            results["SQLite"] = run(f"sqlite:///{path}", args.hosts, args.snapshots,
                                    lambda _s: path.stat().st_size + sum(
                                        p.stat().st_size for p in Path(workdir).glob("bench.db-*")))
        if args.backend in ("postgresql", "both"):
            from tests.peers.postgres import start_postgres

            peer = start_postgres("pgbench")
            try:
                def pg_size(store: SnapshotStore) -> float:
                    with store.engine.connect() as conn:
                        return float(conn.execute(text(
                            "SELECT pg_database_size(current_database())")).scalar_one())

                results["PostgreSQL"] = run(peer.url, args.hosts, args.snapshots, pg_size)
            finally:
                peer.stop()
    print(f"{args.snapshots} snapshots x {args.hosts} hosts")
    for backend, figures in results.items():
        print(f"-- {backend}")
        for name, target in TARGETS.items():
            verdict = "MET" if figures[name] < target else "MISSED"
            print(f"  {name:12} {figures[name]:8.3f} s   (target < {target} s: {verdict})")
        if "verify_52" in figures:
            line = figures["verify_52"]
            verdict = "MET" if line < TARGETS["verify"] else "MISSED"
            print(f"  {'verify at 52':12} {line:8.3f} s   (extrapolated, "
                  f"{figures['verify_per_snapshot']:.3f} s a snapshot; target < "
                  f"{TARGETS['verify']} s: {verdict})")
        print(f"  {'size':12} {figures['size_mb']:8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
