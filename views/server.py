"""Streamlit's own command line, after importing what every page needs.

``./run.sh`` starts the dashboard as ``python -m views.server run app.py [options]``: the same
``streamlit run`` with the same options, except that the project's modules, pandas, plotly and
the rest are imported before the server listens (about a second), not during the first page
someone opens. Without it every page's first view after a restart paid that second on top of
its own work (issue 15: measured by ``bench/pages.py``, which warms the same way).

Page scripts (``PAGE_SCRIPTS``) are not imported: each is a script Streamlit runs, and importing
one would run it. Nor are command-line entries (``__main__``) or the Alembic migrations.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("compliance", "store", "collectors", "views")
TOP_MODULES = ("settings", "files")
# The views Streamlit runs as pages (app.py's st.Page files; tests/views/test_server.py checks
# the two agree).
PAGE_SCRIPTS = frozenset({"overview", "hosts", "worklist", "collection", "snapshots", "catalog"})
# Imported by Streamlit's own code only when a page first shows a table or chart.
THIRD_PARTY = ("pandas", "pyarrow", "plotly.graph_objects", "pandas.io.formats.style")


def modules() -> list[str]:
    """The modules ``warm`` imports, in order: third-party ones, then the project's."""
    names = [*THIRD_PARTY, *TOP_MODULES]
    for package in PACKAGES:
        names.append(package)
        for info in pkgutil.iter_modules([str(ROOT / package)]):
            if info.ispkg or info.name == "__main__" or (
                    package == "views" and info.name in PAGE_SCRIPTS):
                continue
            names.append(f"{package}.{info.name}")
    return names


def warm(freeze: bool = False) -> float:
    """Import every module of ``modules()``; the seconds it took. An import that fails is named
    on stderr and left for the page that needs it to report in full (a server that cannot
    import a collector still shows the Overview).

    ``freeze`` (the server's start): then move every object made so far out of the garbage
    collector's reach (``gc.freeze``). The imports leave ~1 million long-lived objects that
    each full collection would walk again, and a page's first run allocates enough (10,000
    rows) to trigger several: at 10,000 hosts the Hosts page's first run went from 1.2 s to
    0.7-0.8 s with them frozen. Nothing imported here is ever freed, so nothing is lost."""
    started = time.perf_counter()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    for name in modules():
        try:
            importlib.import_module(name)
        except Exception as error:  # the page that needs it reports it in full
            sys.stderr.write(f"warning: could not import {name} ahead of the first page: "
                             f"{type(error).__name__}: {error}\n")
    try:  # plotly reads a template's JSON on its first use: 0.17 s of the first chart
        from views.charts import template

        template()
    except Exception as error:
        sys.stderr.write(f"warning: could not load the charts' template: {error}\n")
    if freeze:
        gc.collect()
        gc.freeze()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> None:
    """``streamlit`` with ``argv`` (default: this command's own), after ``warm()`` when it
    starts a server (``run``): ``--help`` or a mistake is answered at once."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"] and not {"-h", "--help"} & set(args):
        # Each cached function made before the server runs checks its options against an
        # in-memory cache and says "No runtime found" (its cache is made at its first call,
        # with the server's): nothing is wrong, so nothing is printed.
        import logging

        def quiet(record: logging.LogRecord) -> bool:
            return "No runtime found" not in record.getMessage()

        caching = logging.getLogger("streamlit.runtime.caching.cache_data_api")
        caching.addFilter(quiet)
        try:
            warm(freeze=True)
        finally:
            caching.removeFilter(quiet)
    from streamlit.web.cli import main as streamlit

    streamlit(args=args, prog_name="streamlit")


if __name__ == "__main__":
    main()
