"""Benchmark: the unauthenticated HTTPS fingerprint of 2,000 endpoints (issue 18).

The OWA test peer (tests/peers/owa.py) runs in a process of its own on loopback and holds every
answer ``--delay`` seconds (0.2 by default). Each endpoint is a virtual endpoint of the peer and
costs three sequential requests, as in production: ``GET /owa/`` (302), the logon page it points to,
and the export tool manifest, over one kept-alive TLS connection (a handshake per endpoint).
``fingerprint_all`` reads them ``--concurrency`` at a time (64 by default).

Ideal: the endpoints go in waves of ``concurrency``; a wave lasts requests x delay, so
``ceil(endpoints / concurrency) x 3 x delay`` (2,000 at 64: 32 waves x 0.6 s = 19.2 s). Target:
the wall time within 1.3x of it, every endpoint read with the three builds. Exit status 0 when
met. Also printed: the CPU time of the collector and of the peer, and the load average before
and after: on a machine of 2 cores, the two processes' TLS handshakes and HTTP parsing take a
large share of both, so other work on the machine shows in the ratio.

Run: .venv/bin/python bench/fingerprint.py [--endpoints N] [--delay S] [--concurrency C]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.fingerprint import (  # noqa: E402
    Certainty,
    Endpoint,
    FingerprintConfig,
    fingerprint_all,
)
from tests.peers.owa import start_process  # noqa: E402

RATIO_TARGET = 1.3
REQUESTS_PER_ENDPOINT = 3  # /owa/ -> 302, the logon page, the manifest: one after the other


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the peer holds each answer")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if args.endpoints < 1 or args.concurrency < 1 or args.delay < 0:
        parser.error("need --endpoints >= 1, --concurrency >= 1, --delay >= 0")

    load_before = os.getloadavg()
    process, ready = start_process(delay=args.delay)
    try:
        base = f"https://{ready['host']}:{ready['port']}"
        endpoints = [Endpoint(f"bench-{i:04d}", f"{base}/bench-{i:04d}/") for i in range(args.endpoints)]
        config = FingerprintConfig(ca_file=str(ready["ca_file"]), concurrency=args.concurrency)
        cpu_before = time.process_time()
        started = time.perf_counter()
        results = fingerprint_all(endpoints, config)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
    finally:
        process.terminate()
        process.wait(timeout=10)
    failed = [r for r in results if r.failure is not None]
    complete = [r for r in results if r.failure is None and len(r.answers) == REQUESTS_PER_ENDPOINT
                and r.builds(Certainty.FULL_BUILD) and r.builds(Certainty.CU_LEVEL)]
    waves = math.ceil(args.endpoints / args.concurrency)
    ideal = waves * REQUESTS_PER_ENDPOINT * args.delay
    ratio = wall / ideal if ideal else float("inf")
    met = ratio <= RATIO_TARGET and len(complete) == args.endpoints
    print(f"{args.endpoints} endpoints, {REQUESTS_PER_ENDPOINT} sequential GETs each answered in "
          f"{args.delay:g} s, concurrency {args.concurrency}: {len(complete)} read in full, "
          f"{len(failed)} failed")
    for result in failed[:5]:
        assert result.failure is not None
        print(f"  {result.endpoint.name}: {result.failure.reason}: {result.failure.detail}")
    print(f"wall time {wall:.2f} s; ideal ceil({args.endpoints}/{args.concurrency}) x "
          f"{REQUESTS_PER_ENDPOINT} x {args.delay:g} s = {ideal:.2f} s -> {ratio:.3f}x "
          f"(target <= {RATIO_TARGET:.2f}x: {'MET' if met else 'MISSED'})")
    peer = resource.getrusage(resource.RUSAGE_CHILDREN)
    peer_cpu = peer.ru_utime + peer.ru_stime
    print(f"collector CPU {cpu:.1f} s ({cpu / args.endpoints * 1000:.1f} ms an endpoint, "
          f"{cpu / wall:.0%} of one core); peer CPU {peer_cpu:.1f} s; {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
