"""Every setting, declared once, resolved from secrets sections and the environment.

Order of precedence: environment variable, then ``.streamlit/secrets.toml`` section key,
then the default. Both sources are handed in, so tests and the command line can supply
their own.
"""

from __future__ import annotations

import difflib
import getpass
import math
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Setting:
    name: str
    section: str
    key: str
    env: str
    default: str
    help: str


SETTINGS = (
    Setting("data_dir", "store", "data_dir", "PROXYLOGON_DATA_DIR", str(DEFAULT_DATA_DIR),
            "Directory of the embedded SQLite store."),
    Setting("store_url", "store", "url", "PROXYLOGON_STORE_URL", "",
            "SQLAlchemy URL of the store; empty means SQLite in data_dir."),
    Setting("signing_key", "store", "signing_key", "PROXYLOGON_SIGNING_KEY", "",
            "Secret for the HMAC of every snapshot digest (optional; keep it off the database host)."),
    Setting("lock_timeout", "store", "lock_timeout", "PROXYLOGON_LOCK_TIMEOUT", "30",
            "Seconds a save waits for another writer's lock before failing with nothing written."),
    Setting("collection_config", "collection", "config", "PROXYLOGON_COLLECTION_CONFIG", "",
            "Collection config file (copy of collection.example.toml); enables 'Collect now'."),
    Setting("collection_inventory", "collection", "inventory", "PROXYLOGON_COLLECTION_INVENTORY",
            "", "Optional CSV/TOML host list merged with AD for 'Collect now'."),
    Setting("demo", "dashboard", "demo", "PROXYLOGON_DEMO", "true",
            "Seed the demo fleet into an empty store (turn off for real use)."),
    Setting("max_age_days", "dashboard", "max_age_days", "PROXYLOGON_MAX_AGE_DAYS", "7",
            "Observations older than this are 'unknown' (stale)."),
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    store_url: str
    signing_key: bytes | None
    lock_timeout: float
    collection_config: Path | None
    collection_inventory: Path | None
    demo: bool
    max_age: timedelta


def _truthy(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"setting {name!r} must be true or false, not {value!r}")


def _number(name: str, value: str, maximum: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"setting {name!r} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise SettingsError(f"setting {name!r} must be a finite number, not {value!r}")
    if number <= 0:
        raise SettingsError(f"setting {name!r} must be positive, not {value!r}")
    if number > maximum:  # past this a duration overflows (1e308 days) or means nothing
        raise SettingsError(f"setting {name!r} must be at most {maximum:g}, not {value!r}")
    return number


# The keys of the secrets sections this tool reads; a key not here is a typo that would fall
# back silently (``[store] signing_ky``: no signing at all). [auth] is Streamlit's own.
SECRET_SECTIONS: dict[str, tuple[str, ...]] = {
    **{section: tuple(s.key for s in SETTINGS if s.section == section)
       for section in {s.section for s in SETTINGS}},
    "ldap": ("password",),
    "winrm": ("password",),
    "access": ("viewers", "admins", "auditors", "viewer_groups", "admin_groups",
               "auditor_groups"),
}


def check_secrets(secrets: Mapping[str, Any]) -> None:
    """``SettingsError`` for a key of one of our sections that no setting has, naming the
    closest known key."""
    for section, keys in SECRET_SECTIONS.items():
        values = secrets.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise SettingsError(f"[{section}] in the secrets must be a table of settings")
        for key in values:
            if key not in keys:
                raise SettingsError(f"[{section}] {key} in the secrets is not a setting"
                                    f"{suggest(key, keys)}")


def suggest(word: object, known: Iterable[str]) -> str:
    """": did you mean 'x'?" for the closest known name, else the list of known names: the
    tail of a message refusing ``word``."""
    names = list(known)
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f": did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"


def load_settings(secrets: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Resolve every setting; raise ``SettingsError`` naming the first bad one (an unknown key
    of one of our secrets sections included)."""
    check_secrets(secrets)
    raw: dict[str, str] = {}
    for setting in SETTINGS:
        section = secrets.get(setting.section, {})
        value = environ.get(setting.env)
        if value is None and isinstance(section, Mapping) and setting.key in section:
            value = str(section[setting.key])
        raw[setting.name] = setting.default if value is None else value
    data_dir = Path(raw["data_dir"]).expanduser()
    url = raw["store_url"] or f"sqlite:///{data_dir / 'compliance.db'}"
    return Settings(
        data_dir=data_dir,
        store_url=url,
        signing_key=raw["signing_key"].encode() if raw["signing_key"] else None,
        lock_timeout=_number("lock_timeout", raw["lock_timeout"], 86_400),
        collection_config=Path(raw["collection_config"]) if raw["collection_config"] else None,
        collection_inventory=(Path(raw["collection_inventory"])
                              if raw["collection_inventory"] else None),
        demo=_truthy("demo", raw["demo"]),
        max_age=timedelta(days=_number("max_age_days", raw["max_age_days"], 36_500)),
    )


def default_actor() -> str:
    """Who runs this process, for the audit log: the OS user at this host."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some service environments
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown user"
    return f"{user}@{socket.gethostname()}"


# The command lines' secrets file (the dashboard sees what ``st.secrets`` sees instead).
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"


def load_secrets(path: Path | None) -> dict[str, Any]:
    """The sections of a secrets file, or nothing when there is none; ``SettingsError`` (one
    line naming the file) when it cannot be read."""
    import tomllib

    if path is None or not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"secrets file {path} cannot be read: {error}") from None
