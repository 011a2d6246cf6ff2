"""``python -m compliance classify [--advisory ID|all] BUILD [BUILD ...]``: grade ExSetup builds.

Each build is taken as a host's ExSetup.exe file version with no mitigation data; an
Exchange 2010 build is judged as if the Unified Messaging role were installed (the only
case in which 2010 is affected by the March 2021 advisory; the later ones name 2010 as not
affected). Builds come from stdin, one per line, when none are given.
``--advisory all`` (the default) prints one JSON line per build and advisory, in the order of
``compliance.catalog.ADVISORY_IDS``, each with its ``advisory`` id; ``--advisory ID`` prints one
line per build for that advisory alone, without the ``advisory`` key.
Exit status: 0 when at least one input parsed, 1 when none did, 2 on usage errors (an unknown
advisory id among them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from compliance.builds import BuildParseError, parse_dotted
from compliance.catalog import ADVISORY_IDS, Catalog, load_catalog, load_catalogs
from compliance.evaluate import evaluate
from compliance.models import Host, Observation, ServerRole
from compliance.summary import ALL

ASSUMED_ROLES = frozenset({ServerRole.UNIFIED_MESSAGING})


def classify(text: str, catalog: Catalog, as_of: datetime) -> dict[str, Any]:
    """The JSON object the command prints for one input."""
    try:
        parse_dotted(text)
    except BuildParseError as error:
        return {
            "input": text, "build": None, "product": None, "cu": None, "name": None,
            "known": False, "status": "unknown", "cves_open": list(catalog.advisory.cve_ids),
            "flags": [], "action": "Give a four-part build such as 15.1.2176.9",
            "error": str(error),
        }
    observation = Observation(
        host=Host(name=text.strip(), roles=ASSUMED_ROLES), observed_at=as_of,
        source="command line", exsetup_version=text,
    )
    verdict = evaluate(observation, catalog, as_of)
    return {
        "input": text, "build": verdict.build, "product": verdict.product, "cu": verdict.cu,
        "name": verdict.release_name, "known": verdict.known, "status": verdict.status.value,
        "cves_open": list(verdict.cves_open), "flags": [f.value for f in verdict.flags],
        "action": verdict.action, "reason": verdict.reason,
    }


def _inputs(builds: Sequence[str], stdin: TextIO) -> Iterable[str]:
    if builds:
        yield from builds
        return
    for line in stdin:
        if line.strip():
            yield line.strip()


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin,
         stdout: TextIO = sys.stdout, stderr: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compliance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    classify_cmd = commands.add_parser("classify", help="grade builds as ExSetup file versions")
    classify_cmd.add_argument("builds", nargs="*", metavar="BUILD")
    classify_cmd.add_argument(
        "--advisory", default=ALL, metavar="ID|all",
        help=f"the advisory to grade by: one of {', '.join(ADVISORY_IDS)}, or {ALL} (the "
             "default: one line per build and advisory)")
    args = parser.parse_args(argv)

    if args.advisory != ALL and args.advisory not in ADVISORY_IDS:
        (stderr or sys.stderr).write(
            f"python -m compliance classify: unknown advisory {args.advisory!r} (known: "
            f"{', '.join(ADVISORY_IDS)}, or {ALL})\n")
        return 2
    every = args.advisory == ALL
    catalogs = load_catalogs() if every else (load_catalog(args.advisory),)
    as_of = datetime.now(UTC)
    parsed = 0
    for text in _inputs(args.builds, stdin):
        for catalog in catalogs:
            result = classify(text, catalog, as_of)
            if every:
                result = {"advisory": catalog.advisory.id, **result}
            stdout.write(json.dumps(result) + "\n")
        parsed += "error" not in result
    return 0 if parsed else 1


if __name__ == "__main__":
    sys.exit(main())
