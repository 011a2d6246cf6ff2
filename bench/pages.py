"""Benchmark: every dashboard page, the worklist downloads, the evidence bundle and verification
at audit scale (issues #6 and #15).

What it measures, on a SQLite store seeded with ``--hosts`` hosts x ``--snapshots`` weekly
snapshots (each snapshot's verdicts assessed at its own time, as a collection would):

- Each page (Overview, Hosts, Worklist, Collection, Snapshots, Catalogue), each in a fresh
  Python process (``--repeat`` times, default 3) running ``streamlit.testing.v1.AppTest`` on
  app.py, switched to the page before its first run, so no other page runs in that process:
  - *first run*: the page's first script run in that process, as after a restart: the store
    opened, every ``st.cache_data``/``st.cache_resource`` empty. What the server does at start,
    before it serves any page, is done before the clock starts: AppTest's custom component
    discovery, and ``views.server.warm(freeze=True)`` (run.sh's server imports the pages'
    modules and freezes them out of the garbage collector's walks; the seconds it took are
    printed, as "server start", beside the page's figures);
  - *cached run*: the run right after it, every cache warm;
  - *after new snapshot*: ``st.cache_data`` cleared (what the dashboard does when a collection
    saves a snapshot) and the per-snapshot tables kept as resources forgotten (a new snapshot
    is a new key for them: ``views.data.forget_snapshot_tables``), other resources and modules
    kept, then one run;
  - *peak RSS*: the process's ``ru_maxrss`` after the first and cached runs (Linux starts a
    child's ru_maxrss at its parent's peak, so seeding runs in a child process of its own and
    the process starting the drivers stays small; VmHWM is printed beside it as a check);
  - that no run raised (``at.exception`` empty; the driver turns on full error details, which
    the app's config redacts, so the report names the error) and that it landed on the page.
  Judged on the median of the processes; min and median are printed.
- Before each page and at the end: how busy the CPUs are with other work (1 s of /proc/stat).
- In this process, after the pages: the worklist with every host of the latest snapshot
  needing work (all made vulnerable): rank + waves and the rows (no target), the CSV and the
  Excel writer on those rows (judged alone; rows + writer printed beside); the evidence bundle
  of the latest snapshot; ``verify()`` of the whole store (median of ``--repeat``).
- With ``--browser``: first paint in headless Chromium (Overview until its KPIs and charts show),
  on a freshly started server and again on a warm one.

Targets (the 50,000-host ones apply when ``--hosts`` > 20,000):
- 10,000 hosts x 52 snapshots: each page's first run <= 1.0 s, cached run <= 0.3 s;
- 50,000 hosts x 12 snapshots: each page's first run <= 3 s, peak RSS < 500 MB (10^6 bytes);
- worklist CSV <= 0.3 s and Excel <= 0.3 s, evidence bundle <= 2 s, verify <= 10 s;
- first paint in Chromium < 3 s.

Run (seeding 52 x 10,000 takes minutes: ``--keep`` keeps the store for the next run, and seeds
only when DIR holds no store):
  .venv/bin/python bench/pages.py --hosts 500 --snapshots 3
  .venv/bin/python bench/pages.py --keep /tmp/bench10k                  # 10,000 x 52
  .venv/bin/python bench/pages.py --hosts 50000 --snapshots 12 --keep /tmp/bench50k
Options: --repeat N, --pages overview,hosts,..., --browser.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import speed_note  # noqa: E402

PAGES = {"overview": "views/overview.py", "hosts": "views/hosts.py",
         "worklist": "views/worklist.py", "collection": "views/collection.py",
         "snapshots": "views/snapshots.py", "catalog": "views/catalog.py"}
LARGE_FLEET = 20_000  # above this many hosts, the 50,000-host targets apply
TARGETS_10K = {"first": 1.0, "cached": 0.3, "rss_mb": None}
TARGETS_50K = {"first": 3.0, "cached": None, "rss_mb": 500.0}
CSV_TARGET = XLSX_TARGET = 0.3
BUNDLE_TARGET = 2.0
VERIFY_TARGET = 10.0
PAINT_TARGET = 3.0
DEMO_WEEKS = 8  # the demo fleet's roll-out (collectors/demo.py), replayed over the snapshots


# -- the driver: one page in this fresh process ---------------------------------------------

def driver(page: str) -> dict[str, Any]:
    """Run ``page`` of app.py under AppTest in this process (which must not have run any other
    page) and return the figures; the store is the one PROXYLOGON_DATA_DIR names."""
    import streamlit as st
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    config.set_option("client.showErrorDetails", "full")  # name the error this bench reports
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    try:  # AppTest's start-up, done by `streamlit run` before it serves any page
        from streamlit.components.v2.component_manager import BidiComponentManager

        manager = BidiComponentManager()
        manager.discover_and_register_components(start_file_watching=False)
        if hasattr(at, "_bidi_component_manager"):
            at._bidi_component_manager = manager
    except ImportError:
        pass
    from streamlit import delta_generator

    # AppTest runs without a Streamlit runtime, so the first element a process writes looks for
    # a REPL to warn about (inspect.stack() over the whole call stack: ~0.15 s); a server,
    # which has a runtime, never does. Counted once per process, so only first runs paid it.
    if hasattr(delta_generator, "_use_warning_has_been_displayed"):
        delta_generator._use_warning_has_been_displayed = True
    from views.server import warm  # run.sh's server imports the pages' modules before it serves

    result_warm = warm(freeze=True)
    at.switch_page(page)  # before the first run: the page's hash is its file name's
    result: dict[str, Any] = {"page": page, "mode": "switched before the first run",
                              "warm": result_warm}

    def timed_run() -> float:
        t0 = time.perf_counter()
        at.run()
        return time.perf_counter() - t0

    result["first"] = timed_run()
    result["landed"] = _landed(at)
    if result["landed"] != page:
        # Not reached directly: clear every cache the first run filled, then switch and run,
        # so the measured first run still starts with empty caches (modules stay imported).
        st.cache_data.clear()
        st.cache_resource.clear()
        at.switch_page(page)
        result["mode"] = f"landed on {result['landed']} first; caches cleared, then switched"
        result["first"] = timed_run()
        result["landed"] = _landed(at)
    problems = _problems(at)
    result["cached"] = timed_run()
    problems += _problems(at)
    result["rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["hwm_kib"] = _vm_hwm()
    st.cache_data.clear()  # as after a new snapshot (views.data.invalidate)
    # The tables kept as resources are keyed by the snapshot's id and digest: a new snapshot
    # is a new key, so its page builds them again. Here the snapshot is the same: forget them.
    from views import data

    data.forget_snapshot_tables()
    result["new_snapshot"] = timed_run()
    problems += _problems(at)
    result["exceptions"] = sorted({p for p in problems if p.startswith("exception")})
    result["errors"] = sorted({p for p in problems if not p.startswith("exception")})
    return result


def _vm_hwm() -> int | None:
    """This process's own peak RSS in KiB (Linux's VmHWM: not inherited from the parent)."""
    try:
        for text in Path("/proc/self/status").read_text().splitlines():
            if text.startswith("VmHWM:"):
                return int(text.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _landed(at: Any) -> str:
    """The page the last run rendered, relative to the app (AppTest keeps no public record)."""
    pages = getattr(at, "_registered_pages", {}) or {}
    info = pages.get(getattr(at, "_finished_page_script_hash", ""), {})
    path = info.get("script_path")
    return str(Path(str(path)).resolve().relative_to(ROOT)) if path else "?"


def _problems(at: Any) -> list[str]:
    found = [" ".join(f"exception: {e.message} | {' | '.join(e.stack_trace[-3:])}".split())
             for e in at.exception]
    found += [f"st.error: {e.value}"[:300] for e in at.error]
    return found


# -- seeding ---------------------------------------------------------------------------------

def seed(url: str, hosts: int, count: int) -> tuple[float, float]:
    """``count`` weekly snapshots of ``hosts`` hosts, the last a few hours ago; each one's
    verdicts are assessed at its own time. Returns (assessing, saving) seconds."""
    from bench.store import fleet
    from compliance.catalog import load_catalog
    from store import SnapshotStore

    catalog = load_catalog()
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    store = SnapshotStore.open(url)
    assessing = saving = 0.0
    try:
        for i in range(count):
            at = last - timedelta(weeks=count - 1 - i)
            week = round(i * (DEMO_WEEKS - 1) / (count - 1)) if count > 1 else DEMO_WEEKS - 1
            t0 = time.perf_counter()
            snapshot = replace(fleet(catalog, hosts, at, week=week),
                               label=f"bench week {i + 1} of {count}")
            assert snapshot.taken_at == at, (snapshot.taken_at, at)
            t1 = time.perf_counter()
            store.save(snapshot, catalog)
            t2 = time.perf_counter()
            assessing += t1 - t0
            saving += t2 - t1
            if count >= 10 and (i + 1) % 10 == 0:
                print(f"  seeded {i + 1}/{count} snapshots ({assessing + saving:.0f} s)", flush=True)
    finally:
        store.dispose()
    return assessing, saving


def prepare(data_dir: Path, hosts: int, count: int) -> bool:
    """Seed the store in ``data_dir`` unless it holds one; refuse a kept store of another size.
    Returns whether it seeded."""
    from store import SnapshotStore

    url = f"sqlite:///{data_dir / 'compliance.db'}"
    if (data_dir / "compliance.db").exists():
        store = SnapshotStore.open(url)
        try:
            history = store.history()
        finally:
            store.dispose()
        if history:
            shape = (history[-1].host_count, len(history))
            if shape != (hosts, count):
                sys.exit(f"{data_dir} holds {shape[1]} snapshots x {shape[0]} hosts, not "
                         f"{count} x {hosts}: delete it or pass its size")
            print(f"reusing the store in {data_dir}: {count} snapshots x {hosts} hosts, the "
                  f"latest taken {history[-1].taken_at:%Y-%m-%d %H:%M} UTC (not seeded again)")
            return False
    # In a child process: on Linux a process's ru_maxrss starts from its parent's peak at fork,
    # so the process that starts the page drivers must stay small.
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--seed-into", str(data_dir),
                    "--hosts", str(hosts), "--snapshots", str(count)], cwd=ROOT, check=True)
    return True


def seed_into(data_dir: Path, hosts: int, count: int) -> None:
    started = time.perf_counter()
    assessing, saving = seed(f"sqlite:///{data_dir / 'compliance.db'}", hosts, count)
    print(f"seeded {count} snapshots x {hosts} hosts in {time.perf_counter() - started:.1f} s "
          f"(assessing {assessing:.1f} s, saving {saving:.1f} s) into {data_dir}", flush=True)


# -- pages, each in fresh processes ----------------------------------------------------------

def page_runs(page: str, env: dict[str, str], repeat: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--driver", page],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            runs.append({"page": page, "failed": f"driver exit {proc.returncode}: "
                                                 + " | ".join(tail)})
            continue
        runs.append(json.loads(lines[-1]))
    return runs


def verdict(value: float, target: float | None, unit: str = "s", strict: bool = False) -> str:
    if target is None:
        return "target: none at this scale"
    met = value < target if strict else value <= target
    return f"target {'<' if strict else '<='} {target:g} {unit}: {'MET' if met else 'MISSED'}"


def report_page(name: str, runs: list[dict[str, Any]], targets: dict[str, float | None]) -> None:
    failed = [r["failed"] for r in runs if "failed" in r]
    good = [r for r in runs if "failed" not in r]
    label = f"{name:10}"
    for message in failed:
        print(f"{label} driver FAILED: {message}")
    if not good:
        print(f"{label} no figures: every process failed (MISSED)")
        return
    modes = sorted({r["mode"] for r in good})
    landed = sorted({r["landed"] for r in good})
    exceptions = sorted({e for r in good for e in r["exceptions"]})
    errors = sorted({e for r in good for e in r["errors"]})
    n = f"n={len(good)}"
    for key, title, target in (("first", "first run", targets["first"]),
                               ("cached", "cached run", targets["cached"]),
                               ("new_snapshot", "after new snapshot", targets["first"])):
        values = [r[key] for r in good]
        median = statistics.median(values)
        print(f"{label} {title:19} median {median:6.2f} s  min {min(values):6.2f} s  ({n})  "
              f"{verdict(median, target)}")
    warm = [r["warm"] for r in good]
    print(f"{label} {'server start':19} median {statistics.median(warm):6.2f} s  min "
          f"{min(warm):6.2f} s  ({n})  not a page view: imports once per server process")
    rss = [r["rss_kib"] * 1024 / 1e6 for r in good]
    hwm = [r["hwm_kib"] * 1024 / 1e6 for r in good if r.get("hwm_kib")]
    print(f"{label} {'peak RSS':19} median {statistics.median(rss):6.0f} MB max {max(rss):6.0f} MB "
          f"({n})  {verdict(statistics.median(rss), targets['rss_mb'], 'MB', strict=True)}"
          + (f"  [VmHWM median {statistics.median(hwm):.0f} MB]" if hwm else ""))
    clean = not exceptions and not failed
    print(f"{label} {'no exception':19} {'yes' if clean else 'NO'}  (landed on {', '.join(landed)}; "
          f"{'; '.join(modes)})  {'MET' if clean else 'MISSED'}")
    for problem in exceptions + errors:
        print(f"{label}   {problem}")


# -- in this process: worklist downloads, evidence bundle, verification ----------------------

def timed(call: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """(result, median, min) seconds over ``repeat`` calls."""
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times), min(times)


def line(title: str, median: float, least: float, repeat: int, target: float | None,
         extra: str = "") -> None:
    print(f"{title:36} median {median:7.3f} s  min {least:7.3f} s  (n={repeat})  "
          f"{verdict(median, target)}{extra}")


def offline(url: str, repeat: int) -> None:
    from compliance.catalog import load_catalog
    from compliance.models import Status
    from compliance.worklist import plan_waves, rank
    from store import SnapshotStore
    from store.evidence import build_bundle
    from store.export import to_csv, to_xlsx, worklist_rows

    catalog = load_catalog()
    store = SnapshotStore.open(url)
    try:
        latest = store.latest()
        assert latest is not None
        summaries = store.summaries(latest.id, catalog)
        # The targets for these are at 10,000 hosts; at 50,000 the figures are shown.
        small = len(summaries) <= LARGE_FLEET
        every = [replace(s, status=Status.VULNERABLE) for s in summaries]
        items, median, least = timed(lambda: plan_waves(rank(every), 10), repeat)
        line(f"worklist rank + waves ({len(items)} hosts)", median, least, repeat, None)
        rows, rows_median, least = timed(
            lambda: worklist_rows(items, latest.id, latest.taken_at.isoformat()), repeat)
        line("worklist rows (worklist_rows)", rows_median, least, repeat, None)
        text, median, least = timed(lambda: to_csv(rows), repeat)
        line("worklist CSV (to_csv)", median, least, repeat, CSV_TARGET if small else None,
             f"  [{len(rows)} rows, {len(text) / 1e6:.1f} MB; rows + CSV {rows_median + median:.3f} s]")
        book, median, least = timed(lambda: to_xlsx(rows, about=[("snapshot", "1")]), repeat)
        line("worklist Excel (to_xlsx)", median, least, repeat, XLSX_TARGET if small else None,
             f"  [{len(book) / 1e6:.1f} MB; rows + Excel {rows_median + median:.3f} s]")
        info = store.info(latest.id)
        bundle, median, least = timed(lambda: build_bundle(store, info, datetime.now(UTC)), repeat)
        line(f"evidence bundle (snapshot #{latest.id})", median, least, repeat,
             BUNDLE_TARGET if small else None,
             f"  [{len(bundle) / 1e6:.1f} MB]")
        report, median, least = timed(store.verify, repeat)
        line("verify (whole store)", median, least, repeat, VERIFY_TARGET if small else None,
             f"  [{report.checked} snapshots, {'ok' if report.ok else 'PROBLEMS: '}"
             f"{'' if report.ok else report.problems[:3]}]")
    finally:
        store.dispose()


# -- optional: first paint in Chromium -------------------------------------------------------

def first_paint(env: dict[str, str]) -> tuple[float, float]:
    """(first paint on a freshly started server, first paint of a new tab once it is warm)."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py",
                               "--server.headless", "true", "--server.address", "127.0.0.1",
                               "--server.port", str(port), "--server.fileWatcherType", "none",
                               "--browser.gatherUsageStats", "false"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic",
                "--no-first-run", "--disable-dev-shm-usage"]
        paints = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            for _ in range(2):
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector('[data-testid="stMetric"]', timeout=120_000)
                page.wait_for_selector(".main-svg", timeout=120_000)
                paints.append(time.perf_counter() - t0)
                page.close()
            browser.close()
        return paints[0], paints[1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


# -- main ------------------------------------------------------------------------------------

def load_note(seconds: float = 1.0) -> str:
    """How busy the CPUs are with other work (this process idles while it samples /proc/stat):
    other work on them inflates every figure here."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total, idle = sample()
        time.sleep(seconds)
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return f"load average {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs"
    busy = 1 - (idle2 - idle) / max(1, total2 - total)
    return (f"[CPUs busy with other work: {busy:.0%} of {os.cpu_count()}"
            + ("]" if busy < 0.1 else ": figures near this are inflated]"))


def bench(data_dir: Path, args: argparse.Namespace) -> None:
    prepare(data_dir, args.hosts, args.snapshots)
    env = {**os.environ, "PROXYLOGON_DATA_DIR": str(data_dir), "PROXYLOGON_DEMO": "false"}
    large = args.hosts > LARGE_FLEET
    targets = TARGETS_50K if large else TARGETS_10K
    print(f"targets: the {'50,000 x 12' if large else '10,000 x 52'} ones "
          f"({args.snapshots} snapshots x {args.hosts} hosts here)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(speed_note())
    print(f"{load_note()}\n-- pages: {args.repeat} fresh processes each (AppTest on app.py; this "
          f"process's peak RSS, a floor of each child's ru_maxrss on Linux: {own:.0f} MB)",
          flush=True)
    names = args.pages.split(",") if args.pages else list(PAGES)
    for name in names:
        report_page(name, page_runs(PAGES[name], env, args.repeat), targets)
        print(load_note(), flush=True)
    print("-- in this process, latest snapshot, every host needing work", flush=True)
    offline(f"sqlite:///{data_dir / 'compliance.db'}", args.repeat)
    print(load_note(), flush=True)
    if args.browser:
        try:
            cold, warm = first_paint(env)
        except Exception as error:  # a page that never shows its KPIs and charts: say so, go on
            print(f"first paint in Chromium: no figure, {type(error).__name__}: "
                  f"{' '.join(str(error).split())[:300]}  target < {PAINT_TARGET:g} s: MISSED")
            return
        print(f"{'first paint, fresh server (Overview)':36} {cold:7.2f} s  {verdict(cold, PAINT_TARGET, strict=True)}")
        print(f"{'first paint, warm server (Overview)':36} {warm:7.2f} s  {verdict(warm, PAINT_TARGET, strict=True)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=52)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="data dir to keep between runs (seeded only when it has no store)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per page")
    parser.add_argument("--pages", help=f"comma-separated subset of {','.join(PAGES)}")
    parser.add_argument("--browser", action="store_true",
                        help="also measure first paint in headless Chromium")
    parser.add_argument("--driver", metavar="PAGE", help=argparse.SUPPRESS)
    parser.add_argument("--seed-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(driver(args.driver)))
        return 0
    if args.seed_into:
        seed_into(args.seed_into, args.hosts, args.snapshots)
        return 0
    if args.pages and not set(args.pages.split(",")) <= set(PAGES):
        parser.error(f"--pages: choose from {','.join(PAGES)}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        bench(args.keep.resolve(), args)
    else:
        with tempfile.TemporaryDirectory() as data_dir:
            bench(Path(data_dir), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
