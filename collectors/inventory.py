"""Inventory files (CSV or TOML) and merging them with what AD discovered.

CSV: a header with ``name`` and optionally ``fqdn``, ``winrm_url``, ``site``, ``dag``.
TOML: ``[[hosts]]`` tables with the same keys. ``winrm_url`` overrides the endpoint (Edge
servers, jump addresses, test peers).
"""

from __future__ import annotations

import csv
import io
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from compliance.models import Host

KEYS = ("name", "fqdn", "winrm_url", "site", "dag")


class InventoryError(ValueError):
    """The inventory file is unreadable; the message names the file, line and fix."""


@dataclass(frozen=True)
class InventoryEntry:
    name: str
    fqdn: str | None = None
    winrm_url: str | None = None
    site: str | None = None
    dag: str | None = None


def _entry(row: dict[str, object], where: str) -> InventoryEntry:
    name = str(row.get("name") or "").strip()
    if not name:
        raise InventoryError(f"{where}: a host without a name")
    unknown = set(row) - set(KEYS)
    if unknown:
        raise InventoryError(f"{where}: unknown columns {sorted(unknown)} (known: {', '.join(KEYS)})")

    def text(key: str) -> str | None:
        value = str(row.get(key) or "").strip()
        return value or None

    url = text("winrm_url")
    if url and not url.lower().startswith(("http://", "https://")):
        raise InventoryError(f"{where}: winrm_url must start with https:// or http://")
    return InventoryEntry(name, text("fqdn"), url, text("site"), text("dag"))


def parse_inventory(text: str, kind: str, origin: str = "inventory") -> list[InventoryEntry]:
    entries: list[InventoryEntry] = []
    if kind == "toml":
        try:
            data = tomllib.loads(text)
        except ValueError as error:  # TOMLDecodeError, or a number of 5,000 digits
            raise InventoryError(f"{origin}: not valid TOML: "
                                 f"{str(error).splitlines()[0][:200]}") from None
        hosts = data.get("hosts", [])
        if not isinstance(hosts, list):
            raise InventoryError(f"{origin}: [[hosts]] tables expected")
        entries = [_entry(dict(h), f"{origin} host {i + 1}") for i, h in enumerate(hosts)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "name" not in reader.fieldnames:
            raise InventoryError(f"{origin}: the first line must be a header with a 'name' column")
        entries = [_entry({k: v for k, v in row.items() if k}, f"{origin} line {i + 2}")
                   for i, row in enumerate(reader)]
    seen: set[str] = set()
    for entry in entries:
        if entry.name.lower() in seen:
            raise InventoryError(f"{origin}: {entry.name} is listed twice")
        seen.add(entry.name.lower())
    return entries


def load_inventory(path: Path) -> list[InventoryEntry]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InventoryError(f"inventory {path} cannot be read: {error}") from None
    return parse_inventory(text, "toml" if path.suffix.lower() == ".toml" else "csv", str(path))


def merge(discovered: list[Host], entries: list[InventoryEntry]) -> tuple[list[Host], dict[str, str]]:
    """Hosts by name (case-insensitive): AD's record, completed or overridden by the file.

    Returns the hosts to probe and the per-host WinRM URL overrides.
    """
    by_name = {host.name.lower(): host for host in discovered}
    order = [host.name.lower() for host in discovered]
    overrides: dict[str, str] = {}
    for entry in entries:
        key = entry.name.lower()
        known = by_name.get(key)
        if known is None:
            by_name[key] = Host(entry.name, entry.fqdn, entry.site, entry.dag)
            order.append(key)
        else:
            by_name[key] = replace(known, fqdn=entry.fqdn or known.fqdn,
                                   site=entry.site or known.site, dag=entry.dag or known.dag)
        if entry.winrm_url:
            overrides[key] = entry.winrm_url
    return [by_name[key] for key in order], overrides
