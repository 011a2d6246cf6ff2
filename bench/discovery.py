"""Benchmark: LDAP discovery of 5,000 Exchange servers from the test slapd (issues #3, #15).

Prints the wall time of ``collectors.directory.discover`` next to what ``ldapsearch`` takes
for the same paged queries on the same server (the ideal it is compared with), and, between
the two, ldap3's own paged searches with no parsing (discover's floor: what the library costs
before this project's code runs). The queries are the servers' and, since issue 18, the OWA/ECP
virtual directories' (each bulk server has 4, 2 of them front-end ones with a URL, which the
search returns). Targets: < 2 s (issue #3) and <= 5x ldapsearch (issue #15, a ratio, so it
holds on a slower or busier machine too).
Run: .venv/bin/python bench/discovery.py [--servers N] [--runs R] [--no-virtual-directories]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ldap3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.directory import (  # noqa: E402
    ATTRIBUTES,
    SERVER_FILTER,
    VIRTUAL_DIRECTORY_ATTRIBUTES,
    VIRTUAL_DIRECTORY_FILTER,
    DirectoryConfig,
    _search,
    discover,
    open_connection,
)
from tests.peers.ad_tree import ad_ldif, bulk_fleet  # noqa: E402
from tests.peers.slapd import start_slapd  # noqa: E402

TARGET_SECONDS = 2.0  # issue #3
TARGET_RATIO = 5.0  # issue #15: discover() <= 5x ldapsearch on the same paged query
PAGE_SIZE = 1000  # discover()'s default (AD's MaxPageSize), and ldapsearch's pr= below


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-virtual-directories", action="store_true",
                        help="a directory without OWA/ECP virtual directories (as before issue 18)")
    args = parser.parse_args()
    vdirs = 0 if args.no_virtual_directories else 4 * args.servers
    queries = ((SERVER_FILTER, ATTRIBUTES), (VIRTUAL_DIRECTORY_FILTER, VIRTUAL_DIRECTORY_ATTRIBUTES))

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        peer = start_slapd(Path(workdir), ad_ldif(bulk_fleet(
            args.servers, virtual_directories=not args.no_virtual_directories)))
        print(f"slapd with {args.servers} servers (+{2 * args.servers} transport sub-objects, "
              f"+{vdirs} virtual directories) ready in {time.perf_counter() - started:.2f} s")
        try:
            config = DirectoryConfig(servers=(peer.ldaps_url,), bind_user=peer.service_dn,
                                     ca_file=str(peer.ca_file))
            env = {**os.environ, "LDAPTLS_CACERT": str(peer.ca_file)}
            ours: list[float] = []
            bare: list[float] = []
            theirs: list[float] = []
            found_vdirs = 0
            # One round times all three back to back, so a busy machine slows each alike and
            # the ratio stays comparable between runs.
            for _ in range(args.runs):
                t0 = time.perf_counter()
                found = discover(config, peer.service_password)
                ours.append(time.perf_counter() - t0)
                assert len(found.servers) == args.servers, len(found.servers)
                # The searches discover() sends, through the same helper, with nothing parsed.
                t0 = time.perf_counter()
                connection = open_connection(config, peer.ldaps_url, peer.service_password)
                counts = [len(list(_search(connection, peer.ldaps_url, peer.exchange_base, flt,
                                           ldap3.SUBTREE, attributes, PAGE_SIZE)))
                          for flt, attributes in queries]
                connection.unbind()
                bare.append(time.perf_counter() - t0)
                assert counts[0] == args.servers, counts
                found_vdirs = counts[1]
                t0 = time.perf_counter()
                listed = []
                for flt, attributes in queries:
                    done = subprocess.run(
                        ["ldapsearch", "-LLL", "-H", peer.ldaps_url, "-x", "-D", peer.service_dn,
                         "-w", peer.service_password, "-b", peer.exchange_base,
                         "-E", f"pr={PAGE_SIZE}/noprompt", flt, *attributes],
                        env=env, capture_output=True, text=True, check=True)
                    listed.append(done.stdout.count("\ndn: ") + done.stdout.startswith("dn: "))
                theirs.append(time.perf_counter() - t0)
                assert listed == counts, (listed, counts)
        finally:
            peer.stop()

    median, floor, ideal = (statistics.median(ours), statistics.median(bare),
                            statistics.median(theirs))
    ratio = median / ideal
    print(f"virtual directories returned by their search: {found_vdirs}")
    print(f"discover(): {args.servers} servers, median of {args.runs}: {median:.3f} s "
          f"(min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"ldap3 paged searches alone, nothing parsed (floor): median {floor:.3f} s "
          f"(min {min(bare):.3f}, max {max(bare):.3f})  -> {floor / ideal:.1f}x ldapsearch")
    print(f"ldapsearch, same paged queries (ideal): median {ideal:.3f} s "
          f"(min {min(theirs):.3f}, max {max(theirs):.3f})")
    print(f"ratio discover() / ldapsearch: {ratio:.1f}x")
    print(f"target < {TARGET_SECONDS:.1f} s: {'MET' if median < TARGET_SECONDS else 'MISSED'}")
    print(f"target <= {TARGET_RATIO:.0f}x ldapsearch: {'MET' if ratio <= TARGET_RATIO else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
