"""Benchmark: the worklist downloads (``store.export.to_csv`` and ``to_xlsx``) at 10,000 rows
(issue 15), without a seeded store.

``bench/pages.py`` judges the same writers on the worklist of a seeded store (every host made
vulnerable), but seeding 10,000 hosts x 52 snapshots takes minutes. This builds the rows
directly: every column of ``WORKLIST_COLUMNS`` filled with values shaped as
``store.export.worklist_rows`` and ``views.data.worklist_rows`` give them (ints, booleans, ISO
8601 times in UTC, "" for none), at realistic lengths: each host observed at its own second,
a few due dates, one host in fifty with a long reason and one in 200 a hostile name.

Targets: CSV <= 0.3 s, Excel <= 0.3 s at 10,000 rows (median of ``--repeat``, default 5; the
min is printed, and the CPU time of this process beside it: on shared CPUs the wall-clock
figures grow with other work, which the line before the figures reports).

Run:
  .venv/bin/python bench/excel.py
  .venv/bin/python bench/excel.py --rows 50000 --repeat 3
  .venv/bin/python bench/excel.py --profile     # cProfile of one to_xlsx, top 25 by own time
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages import CSV_TARGET, XLSX_TARGET, line, load_note  # noqa: E402
from store.export import WORKLIST_COLUMNS, to_csv, to_xlsx  # noqa: E402

SCALE = 10_000  # rows: the targets are at this many
TAKEN_AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PRODUCTS = (("Exchange Server 2016", "CU19", "15.1.2176.2"),
            ("Exchange Server 2019", "CU8", "15.2.792.3"),
            ("Exchange Server 2013", "CU23", "15.0.1497.2"),
            ("Exchange Server 2010", "SP3 RU31", "14.3.509.0"))
STEPS = ("Install KB5000871 (March 2021 Security Update for Exchange Server 2016 CU19)",
         "Upgrade to CU21, then install the latest Security Update",
         "read the build first: no usable reading")
REASONS = ("CU19 without the March 2021 update",
           "unreachable: WinRM connection refused (TCP 5985) after 3 attempts",
           "only the interim mitigations (EOMT): the update is still due")


def rows(count: int, seed: int = 15) -> list[dict[str, Any]]:
    """``count`` worklist rows, keys WORKLIST_COLUMNS, every host needing work."""
    pick = random.Random(seed)
    made = []
    for number in range(count):
        product, cu, build = pick.choice(PRODUCTS)
        site = f"Site-{number % 40:02d}"
        dag = f"DAG{number % 700:03d}" if number % 3 else ""
        host = f"EXMBX{number:05d}"
        if number % 200 == 7:
            host = f'=HYPERLINK("http://evil.example/{number}","x")'  # neutralised as text
        reason = pick.choice(REASONS)
        if number % 50 == 3:
            reason = ("the build read over WinRM disagrees with the one AD publishes; " * 8)[:500]
        due = (TAKEN_AT + timedelta(days=7 * (number % 4))).isoformat() if number % 5 else ""
        made.append({
            "wave": number // 25 + 1 if number % 11 else "",
            "priority": number % 6,
            "host": host,
            "fqdn": f"{host.lower()}.emea.corp.example.com",
            "status": pick.choice(("vulnerable", "mitigated", "unknown", "patched")),
            "product": product, "cu": cu, "build": build,
            "build_source": pick.choice(("exsetup", "ad", "owa")),
            "action": "Install KB5000871" if number % 4 else "Collect again: no usable reading",
            "next_step": pick.choice(STEPS),
            "next_kb": "KB5000871" if number % 4 else "",
            "next_link": "https://support.microsoft.com/help/5000871" if number % 4 else "",
            "reason": reason,
            "flags": "indicators_found, webshell_suspect" if number % 37 == 0 else "",
            "mitigations": "EOMT, URL rewrite" if number % 7 == 0 else "",
            "site": site, "dag": dag,
            "owner": f"messaging-{site.lower()}@corp.example.com" if number % 9 else "",
            "accepted": ("accepted until 2026-12-31 by ciso@corp.example.com"
                         if number % 97 == 0 else ""),
            "due": due,
            "overdue": bool(due) and number % 4 == 0,
            "deadline_rule": "internet-facing: 7 days" if number % 2 else "default: 30 days",
            "roles": "Mailbox, Cafe, FrontendTransport" if number % 3 == 0 else "Mailbox",
            "observed_at": (TAKEN_AT - timedelta(seconds=3 * number + 60)).isoformat(),
            "observed_in": 52 if number % 13 else 51,
            "carried": number % 13 == 0,
            "snapshot_id": 52,
            "snapshot_taken_at": TAKEN_AT.isoformat(),
            "investigation": pick.choice(("not_investigated", "incomplete", "indicators_found")),
            "investigation_action": ("run MSERT /F /Q and collect again: no full scan after the "
                                     "fix is recorded"),
        })
    return made


def timed(call: Callable[[], Any], repeat: int) -> tuple[Any, list[float], list[float]]:
    """(result, wall-clock seconds, CPU seconds of this process) over ``repeat`` calls."""
    walls, cpus = [], []
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return result, walls, cpus


def report(title: str, walls: list[float], cpus: list[float], target: float | None,
           extra: str) -> None:
    line(title, statistics.median(walls), min(walls), len(walls), target,
         f"  [CPU median {statistics.median(cpus):.3f} s; {extra}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=SCALE)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    table = rows(args.rows)
    assert all(set(WORKLIST_COLUMNS) <= set(row) for row in table)
    about = [("snapshot", "52"), ("taken at", TAKEN_AT.isoformat())]
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(to_xlsx, table, about)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    small = args.rows <= SCALE
    print(load_note())
    text, walls, cpus = timed(lambda: to_csv(table), args.repeat)
    report("worklist CSV (to_csv)", walls, cpus, CSV_TARGET if small else None,
           f"{len(table)} rows, {len(text) / 1e6:.1f} MB")
    book, walls, cpus = timed(lambda: to_xlsx(table, about), args.repeat)
    report("worklist Excel (to_xlsx)", walls, cpus, XLSX_TARGET if small else None,
           f"{len(table)} rows, {len(book) / 1e6:.1f} MB")
    print(load_note())


if __name__ == "__main__":
    main()
