"""Issue 14: dependencies point inward (ARCHITECTURE.md). The core imports nothing of the
edges, the store nothing of the collectors or the views, the views nothing of the collectors
(the frame, app.py, hands the demo seeder in); and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "compliance": {"store", "collectors", "views", "settings", "streamlit"},
    "store": {"collectors", "views", "streamlit"},
    "views": {"collectors"},
    "collectors": {"views", "streamlit"},
    # After a snapshot is saved (the collection job calls it): compliance, settings, store only.
    "notify": {"views", "collectors", "streamlit"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts)


# The dashboard's Collection page is the collection job's second front-end (the command line
# is the first): it may start the job. No other view may reach into the collectors.
FRONT_ENDS = {"views/collection.py"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_import(package):
    wrong = [(str(path.relative_to(ROOT)), name) for path in _modules(package)
             if str(path.relative_to(ROOT)) not in FRONT_ENDS
             for name in sorted(_imports(path)) if name.split(".")[0] in FORBIDDEN[package]]
    assert wrong == []


def test_no_import_cycle():
    """No two modules of ours import each other (the collectors' process shards and remote.py
    did, until one process was shown to keep up: bench/collection.py)."""
    graph: dict[str, set[str]] = {}
    for package in FORBIDDEN:
        for path in _modules(package):
            if path.name == "__init__.py":
                continue  # a package re-exporting its modules is not a cycle
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            graph[module] = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN}
    cycles = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a < b and a in graph.get(b, set()))
    assert cycles == []
