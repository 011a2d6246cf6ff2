"""Benchmark: LDAP discovery of 5,000 Exchange servers from the test slapd (issue #3).

Prints the wall time of ``collectors.directory.discover`` next to what ``ldapsearch`` takes
for the same paged query on the same server (the ideal it is compared with), and the
target (< 2 s). Run: .venv/bin/python bench/discovery.py [--servers N] [--runs R]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.directory import SERVER_FILTER, DirectoryConfig, discover  # noqa: E402
from tests.peers.ad_tree import ad_ldif, bulk_fleet  # noqa: E402
from tests.peers.slapd import start_slapd  # noqa: E402

TARGET_SECONDS = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        peer = start_slapd(Path(workdir), ad_ldif(bulk_fleet(args.servers)))
        print(f"slapd with {args.servers} servers (+{2 * args.servers} transport sub-objects) "
              f"ready in {time.perf_counter() - started:.2f} s")
        try:
            config = DirectoryConfig(servers=(peer.ldaps_url,), bind_user=peer.service_dn,
                                     ca_file=str(peer.ca_file))
            ours = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                found = discover(config, peer.service_password)
                ours.append(time.perf_counter() - t0)
                assert len(found.servers) == args.servers, len(found.servers)
            env = {**os.environ, "LDAPTLS_CACERT": str(peer.ca_file)}
            theirs = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                done = subprocess.run(
                    ["ldapsearch", "-LLL", "-H", peer.ldaps_url, "-x", "-D", peer.service_dn,
                     "-w", peer.service_password, "-b", peer.exchange_base,
                     "-E", "pr=1000/noprompt", SERVER_FILTER, "cn", "name", "serialNumber",
                     "versionNumber", "msExchCurrentServerRoles", "networkAddress",
                     "msExchServerSite", "msExchMDBAvailabilityGroupLink", "whenChanged",
                     "msExchComponentStates"],
                    env=env, capture_output=True, text=True, check=True)
                theirs.append(time.perf_counter() - t0)
                assert done.stdout.count("\ndn: ") + done.stdout.startswith("dn: ") == args.servers
        finally:
            peer.stop()

    median, ideal = statistics.median(ours), statistics.median(theirs)
    print(f"discover(): {args.servers} servers, median of {args.runs}: {median:.3f} s "
          f"(min {min(ours):.3f}, max {max(ours):.3f})")
    print(f"ldapsearch, same paged query (ideal): median {ideal:.3f} s  -> ratio {median / ideal:.1f}x")
    print(f"target: < {TARGET_SECONDS:.1f} s -> {'MET' if median < TARGET_SECONDS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
