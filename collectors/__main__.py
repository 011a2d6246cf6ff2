"""``python -m collectors``: the collection jobs.

    discover --config FILE [--format json|table] [--secrets FILE]
        list the Exchange servers Active Directory knows (read-only LDAP)

Exit status: 0 on success, 1 when the directory could not be read, 2 on configuration errors.
Errors are one line naming the server, the operation and the fix; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from collectors.config import ConfigError, ldap_password, load_config, load_secrets
from collectors.directory import DirectoryError, DirectoryServer, discover

DEFAULT_SECRETS = Path(__file__).resolve().parent.parent / ".streamlit" / "secrets.toml"


def table(servers: Sequence[DirectoryServer]) -> str:
    headers = ("name", "fqdn", "ad_build", "roles", "site", "dag", "problems")
    rows = [(s.name, s.fqdn or "-", s.ad_build or "-", ",".join(s.roles or ()) or "?",
             s.site or "-", s.dag or "-", str(len(s.problems)) if s.problems else "")
            for s in servers]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m collectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    discover_cmd = commands.add_parser("discover", help="list Exchange servers from AD")
    discover_cmd.add_argument("--config", required=True, type=Path)
    discover_cmd.add_argument("--format", choices=("json", "table"), default="json")
    discover_cmd.add_argument("--secrets", type=Path, default=DEFAULT_SECRETS,
                              help="secrets TOML with [ldap] password (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=stderr)

    try:
        config = load_config(args.config)
        if config.directory is None:
            raise ConfigError(f"{args.config} has no [ldap] section")
        password = ldap_password(load_secrets(args.secrets), os.environ)
    except ConfigError as error:
        stderr.write(f"configuration error: {error}\n")
        return 2
    try:
        found = discover(config.directory, password)
    except DirectoryError as error:
        stderr.write(f"error: {error}\n")
        return 1
    for warning in found.warnings:
        stderr.write(f"warning: {warning}\n")
    if args.format == "json":
        json.dump([s.as_json() for s in found.servers], stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write(table(found.servers) + "\n")
    with_problems = sum(1 for s in found.servers if s.problems)
    stderr.write(f"{len(found.servers)} Exchange servers from {found.server} "
                 f"({with_problems} with problems)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
