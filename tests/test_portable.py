"""Issue 14: the collector, the store and the dashboard import where POSIX-only modules do not
exist (Windows, where Exchange shops schedule the collector with Task Scheduler).

A child interpreter makes ``fcntl``, ``resource`` and ``termios`` unimportable for this
project's own code (third-party libraries such as filelock pick their own Windows path by
platform, so they are left alone), then imports every module of the collector, the store, the
core and the dashboard's views.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSIX_ONLY = ("fcntl", "resource", "termios")

CHILD = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    from pathlib import Path

    ROOT = Path(sys.argv[1]).resolve()
    BLOCKED = set(sys.argv[2].split(","))
    OURS = ("app", "settings", "files", "compliance", "collectors", "store", "views")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] not in BLOCKED:
                return None
            frame = sys._getframe(1)
            while frame is not None:  # the first frame outside the import machinery
                module = frame.f_globals.get("__name__", "")
                if not module.startswith(("importlib", "_frozen_importlib")):
                    break
                frame = frame.f_back
            if frame is not None and module.split(".")[0] in OURS:
                raise ImportError(f"{name} is POSIX-only (imported by {module})")
            return None

    for name in BLOCKED:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, Block())
    sys.path.insert(0, str(ROOT))
    # Streamlit runs the dashboard's pages (and app.py) as scripts: what they import is
    # imported here, the scripts themselves are not run.
    PAGES = {"views.overview", "views.hosts", "views.worklist", "views.collection",
             "views.snapshots", "views.catalog"}
    imported = []

    def script_imports(path):
        import ast
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield node.module

    # An import a library made first is cached and never asks the finder again: every
    # import statement of ours, even one inside a function, is read from the source too.
    for path in [ROOT / "app.py", ROOT / "settings.py", ROOT / "files.py",
                 *(p for package in OURS[3:] for p in (ROOT / package).rglob("*.py"))]:
        for name in script_imports(path):
            if name.split(".")[0] in BLOCKED:
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                raise ImportError(f"{name} is POSIX-only (imported by {module})")
    for package in ("compliance", "collectors", "store", "views"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if ".migrations" in info.name:
                continue  # run by Alembic, not imported
            if info.name in PAGES:
                names = list(script_imports(ROOT / (info.name.replace(".", "/") + ".py")))
            else:
                names = [info.name]
            for name in names:
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is POSIX-only (imported by {info.name})")
                importlib.import_module(name)
            imported.append(info.name)
    for name in ("settings", "files", *script_imports(ROOT / "app.py")):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is POSIX-only (imported by app)")
        importlib.import_module(name)
        imported.append(name)
    print(len(imported))
""")


def _child(blocked: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, str(ROOT), ",".join(blocked)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_every_module_imports_without_posix_only_modules():
    done = _child(POSIX_ONLY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) > 30  # every module of the four packages was imported


def test_the_block_catches_an_import_of_ours():
    """The control: the same child refuses a module of ours that imports one of them."""
    probe = ROOT / "collectors" / "_posix_probe_for_test.py"
    probe.write_text("import fcntl  # noqa: F401\n")
    try:
        done = _child(POSIX_ONLY)
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert "fcntl is POSIX-only (imported by collectors._posix_probe_for_test)" in done.stderr
