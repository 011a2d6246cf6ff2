"""views/server.py: run.sh's server imports what the pages need, and never a page script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from views import server

ROOT = Path(__file__).resolve().parents[2]


def test_the_page_scripts_are_app_pys_pages():
    registered = set(re.findall(r'st\.Page\("views/(\w+)\.py"', (ROOT / "app.py").read_text()))
    assert registered == server.PAGE_SCRIPTS


def test_warming_imports_the_pages_modules_and_runs_no_page():
    probe = "import json, sys; from views import server; server.warm(); print(json.dumps(list(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    imported = set(json.loads(done.stdout))
    assert {"views.data", "views.charts", "views.integrity", "store", "compliance",
            "collectors", "pandas", "plotly"} <= imported
    assert not imported & {f"views.{page}" for page in server.PAGE_SCRIPTS}
    assert "warning" not in done.stderr, done.stderr  # every module imported


def test_a_module_that_fails_to_import_is_named_and_the_rest_still_load(monkeypatch, capsys):
    monkeypatch.setattr(server, "modules", lambda: ["json", "no_such_module_here", "csv"])
    server.warm()
    assert "could not import no_such_module_here" in capsys.readouterr().err
    assert "csv" in sys.modules


def test_only_a_server_start_warms_and_its_cache_notices_are_not_printed(monkeypatch):
    import logging

    import streamlit.web.cli as cli

    warmed, started = [], []

    def fake_warm(freeze: bool = False) -> float:  # what warm() does when a cached function is made early
        logging.getLogger("streamlit.runtime.caching.cache_data_api").warning(
            "No runtime found, using MemoryCacheStorageManager")
        warmed.append(freeze)
        return 0.0
    monkeypatch.setattr(server, "warm", fake_warm)
    monkeypatch.setattr(cli, "main", lambda args, prog_name: started.append(args))
    printed: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: printed.append(record.getMessage())  # type: ignore[method-assign]
    caching = logging.getLogger("streamlit.runtime.caching.cache_data_api")
    caching.addHandler(handler)
    monkeypatch.setattr(caching, "level", logging.WARNING)
    server.main(["--help"])
    server.main(["run", "app.py", "--help"])
    assert not warmed and len(started) == 2
    server.main(["run", "app.py", "--server.port", "1"])
    assert warmed == [True] and started[-1] == ["run", "app.py", "--server.port", "1"]
    caching.removeHandler(handler)
    assert warmed and not printed
    caching.addHandler(handler)
    try:  # the same notice outside the server's start is printed as ever
        caching.warning("No runtime found, using MemoryCacheStorageManager")
    finally:
        caching.removeHandler(handler)
    assert printed


def test_a_server_start_freezes_what_it_imported_out_of_the_collectors_walks():
    """run.sh's server (``main``) warms with ``freeze=True``: the imported objects are moved to
    the garbage collector's permanent generation, so a page's first run does not walk them
    again in every full collection. A plain ``warm()`` (tests, other callers) freezes nothing."""
    probe = ("import gc, sys; from views import server; server.warm(freeze=sys.argv[1] == 'y'); "
             "print(gc.get_freeze_count())")
    counts = {}
    for flag in ("y", "n"):
        done = subprocess.run([sys.executable, "-c", probe, flag], cwd=ROOT, capture_output=True,
                              text=True, check=True, timeout=120)
        counts[flag] = int(done.stdout)
    assert counts["n"] == 0 and counts["y"] > 100_000
