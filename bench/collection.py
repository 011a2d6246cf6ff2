"""Benchmark: WinRM collection of a simulated fleet (issue #4).

1,000 hosts, each answering after 0.5 s, probed with concurrency 64 through the real pywinrm
against the WS-Management test peer running in its own process (NTLM over HTTPS, as in
production). Prints the wall time next to the ideal (hosts x latency / concurrency) and the
collector's peak memory (RSS). Targets: within 1.3x of the ideal, under 400 MB.
Run: .venv/bin/python bench/collection.py [--hosts N] [--latency S] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors.probe import compact, probe_script  # noqa: E402
from collectors.remote import Target, WinrmConfig, probe_all  # noqa: E402
from compliance.models import Host  # noqa: E402
from tests.collectors.documents import dumps, probe_document  # noqa: E402
from tests.peers.wsman import start_fleet_process  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--transport", default="ntlm", choices=("ntlm", "basic"))
    parser.add_argument("--processes", type=int, default=0, help="0: one per CPU (the default)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        fleet = {f"BENCH{i:04d}": {"stdout": dumps(probe_document(
                     f"BENCH{i:04d}", "15.1.2176.9", kbs=["KB5000871"],
                     collected_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))),
                     "latency": args.latency} for i in range(args.hosts)}
        fleet_file = Path(workdir) / "fleet.json"
        fleet_file.write_text(json.dumps(fleet))
        script = Path(workdir) / "probe.ps1"
        script.write_text(compact(probe_script()))
        process, ready = start_fleet_process(fleet_file, expected_script=script)
        try:
            base = f"https://{ready['host']}:{ready['https_port']}/wsman"
            targets = [Target(Host(name), f"{base}/{name}") for name in fleet]
            config = WinrmConfig(username=ready["username"], transport=args.transport,
                                 ca_file=ready["ca_file"], concurrency=args.concurrency,
                                 processes=args.processes, deadline_seconds=60)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cpu_before = time.process_time()
            started = time.perf_counter()
            observations = probe_all(targets, config, ready["password"])
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_before
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            # Worker processes (when processes > 1) count too: the largest one, added.
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        finally:
            process.terminate()
            process.wait(timeout=10)
    failed = [o for o in observations if o.failure]
    ideal = args.hosts * args.latency / args.concurrency
    print(f"{args.hosts} hosts x {args.latency} s latency, concurrency {args.concurrency}, "
          f"{args.transport} over HTTPS: {len(failed)} failed")
    print(f"wall time {wall:.2f} s; ideal {ideal:.2f} s -> {wall / ideal:.2f}x "
          f"(target <= 1.30x: {'MET' if wall / ideal <= 1.3 else 'MISSED'})")
    processes = args.processes or os.cpu_count()
    print(f"collector CPU in the main process {cpu:.2f} s; processes used: {processes}")
    total = peak + (children * processes if processes and processes > 1 else 0)
    print(f"collector peak RSS {total:.0f} MB (main {peak:.0f} MB, before probing {rss_before:.0f} "
          f"MB, largest worker {children:.0f} MB x {processes if processes and processes > 1 else 0};"
          f" target < 400 MB: {'MET' if total < 400 else 'MISSED'})")
    print("sequential, as the field's PowerShell tools do it: "
          f"> {args.hosts * args.latency:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
