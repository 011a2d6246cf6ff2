"""compliance/ is the pure core: it imports nothing else of ours and no I/O library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "compliance"
FORBIDDEN_LIBRARIES = {"streamlit", "ldap3", "winrm", "sqlalchemy", "requests"}
OUR_OTHER_PACKAGES = {"collectors", "store", "views"}
CORE_FILES = sorted(CORE.rglob("*.py"))


def _ours() -> set[str]:
    """Every other top-level package or module of the project (app, settings, ...)."""
    names = {p.stem for p in ROOT.glob("*.py")}
    names |= {p.parent.name for p in ROOT.glob("*/__init__.py")}
    return (names | OUR_OTHER_PACKAGES) - {"compliance"}


FORBIDDEN = FORBIDDEN_LIBRARIES | _ours()


def _imported(path: Path) -> list[str]:
    return _imported_from(path.read_text(encoding="utf-8"), path)


def _imported_from(source: str, path: Path) -> list[str]:
    """Absolute module names a file imports, relative imports resolved."""
    tree = ast.parse(source, filename=str(path))
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join(base) if base else "<outside the project>"
                names.append(f"{prefix}.{node.module}" if node.module else prefix)
            else:
                names.append(node.module or "")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
                "import_module", "__import__"}
            and node.args and isinstance(node.args[0], ast.Constant)
        ):
            names.append(str(node.args[0].value))
    return names


def test_core_files_are_found() -> None:
    assert {p.name for p in CORE_FILES} >= {
        "models.py", "builds.py", "advisory.py", "catalog.py", "evaluate.py", "codec.py",
        "__main__.py", "__init__.py",
    }
    assert {"collectors", "store", "views"} <= FORBIDDEN


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(CORE))) for p in CORE_FILES])
def test_core_imports_nothing_forbidden(path: Path) -> None:
    bad = [name for name in _imported(path)
           if name.split(".")[0] in FORBIDDEN or name.startswith("<outside")]
    assert bad == []


def test_the_import_walker_sees_what_it_should() -> None:
    # the check above must be able to fail
    source = ("import store.snapshots\nfrom views import data\nimport requests as r\n"
              "from .. import settings\nfrom . import models\n"
              "importlib.import_module('ldap3')\n")
    names = _imported_from(source, CORE / "sample.py")
    assert {n.split(".")[0] for n in names} >= {"store", "views", "requests", "ldap3"}
    assert "<outside the project>" in names
    assert "compliance" in names


def test_importing_the_core_pulls_in_no_forbidden_module() -> None:
    script = (
        "import json, pkgutil, sys, importlib\n"
        "import compliance\n"
        "for info in pkgutil.walk_packages(compliance.__path__, 'compliance.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout))
    assert {"compliance.evaluate", "compliance.codec", "compliance.__main__"} <= loaded
    assert sorted(name for name in loaded if name.split(".")[0] in FORBIDDEN) == []


CLOCK_OR_ENVIRONMENT = {"now", "utcnow", "today", "time", "environ", "getenv", "monotonic"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(CORE))) for p in CORE_FILES if p.name != "__main__.py"],
)
def test_core_never_reads_the_clock_or_environment(path: Path) -> None:
    # __main__.py is the command-line edge: it may ask for "now"; the core may not.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    uses = [
        node.attr for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_OR_ENVIRONMENT
    ] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        for alias in node.names if alias.name in CLOCK_OR_ENVIRONMENT
    ]
    assert uses == []
