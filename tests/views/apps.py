"""The dashboard under streamlit.testing's AppTest, on a store in a folder of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def open_app(monkeypatch: pytest.MonkeyPatch, data_dir: Path, demo: bool = True) -> AppTest:
    """app.py with its data folder at ``data_dir`` (the demo fleet seeded when ``demo``)."""
    monkeypatch.setenv("PROXYLOGON_DATA_DIR", str(data_dir))
    monkeypatch.setenv("PROXYLOGON_DEMO", "true" if demo else "false")
    monkeypatch.delenv("PROXYLOGON_STORE_URL", raising=False)
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
