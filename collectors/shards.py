"""A large fleet split over worker processes, each probing its share with its own threads.

Each worker is a fresh interpreter, ``python -c`` importing this module. A fork would copy any
lock another thread holds at that instant (OpenSSL's, urllib3's, an import's), and a worker
that needs one waits forever. multiprocessing's ``spawn`` re-runs the parent's ``__main__``
in every worker (under Streamlit's AppTest that is the dashboard itself).

The worker reads its share, the settings and the password as one pickle on stdin, never from
its command line. It answers on stdout with length-prefixed pickled frames: ``("tick",
failed)`` per host, then ``("done", observations)`` or ``("stopped", None)``. SIGTERM asks it
to stop. Pickle is safe here because both ends are this program, over pipes only they hold.
"""

from __future__ import annotations

import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from collectors.remote import (
    ProgressCallback,
    Target,
    WinrmConfig,
    WorkerDied,
    probe_in_threads,
)
from compliance.models import Observation

ROOT = Path(__file__).resolve().parent.parent
_LENGTH = struct.Struct(">I")
_STOP_GRACE_SECONDS = 5


def _write_frame(stream: IO[bytes], message: tuple[str, Any]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> tuple[str, Any] | None:
    """The next message, or None at the end of the stream (or of a cut-off frame)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        return None
    message: tuple[str, Any] = pickle.loads(data)
    return message


def _relay(number: int, stream: IO[bytes], events: queue.Queue[tuple[int, str, Any]]) -> None:
    while (message := _read_frame(stream)) is not None:
        events.put((number, *message))
    events.put((number, "end", None))


def _start(number: int) -> subprocess.Popen[bytes]:
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from collectors.shards import worker_main; sys.exit(worker_main())")
    # Its own session: a Ctrl-C at the terminal reaches only the parent, which stops the workers.
    return subprocess.Popen([sys.executable, "-c", code, f"probe-worker-{number}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)


def probe_in_processes(targets: Sequence[Target], config: WinrmConfig, password: str,
                       processes: int, progress: ProgressCallback | None = None,
                       stop: threading.Event | None = None) -> list[Observation]:
    """Probe ``targets`` over ``processes`` workers that share ``config.concurrency``."""
    shards = [list(range(i, len(targets), processes)) for i in range(processes)]
    share = replace(config, concurrency=max(1, config.concurrency // processes), processes=1)
    events: queue.Queue[tuple[int, str, Any]] = queue.Queue()
    workers: list[subprocess.Popen[bytes]] = []
    collected: dict[int, list[Observation]] = {}
    finished: set[int] = set()
    stopping = False
    try:
        workers.extend(_start(number) for number in range(processes))
        for number, worker in enumerate(workers):
            assert worker.stdout is not None
            threading.Thread(target=_relay, args=(number, worker.stdout, events),
                             daemon=True).start()
        for worker, shard in zip(workers, shards, strict=True):
            assert worker.stdin is not None
            try:
                worker.stdin.write(pickle.dumps(([targets[i] for i in shard], share, password)))
                worker.stdin.close()
            except BrokenPipeError:
                pass  # it died before reading: its stream ends, reported below
        while len(finished) < processes:
            if stop is not None and stop.is_set() and not stopping:
                stopping = True
                for worker in workers:
                    if worker.poll() is None:
                        worker.send_signal(signal.SIGTERM)
            try:
                number, kind, payload = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "tick":
                if progress:
                    progress(bool(payload))
            elif kind in ("done", "stopped"):
                finished.add(number)
                if kind == "done":
                    collected[number] = payload
            elif number not in finished:  # its stream ended before its last word
                if not stopping:
                    try:
                        code = workers[number].wait(timeout=_STOP_GRACE_SECONDS)
                    except subprocess.TimeoutExpired:
                        code = None  # its output closed, yet it runs on: stopped below
                    raise WorkerDied(number, code)
                finished.add(number)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    if (stop is not None and stop.is_set()) or len(collected) < processes:
        raise InterruptedError("collection stopped before every host was probed")
    results: list[Observation | None] = [None] * len(targets)
    for number, shard in enumerate(shards):
        for index, observation in zip(shard, collected[number], strict=True):
            results[index] = observation
    return [r for r in results if r is not None]


def worker_main() -> int:
    """One worker: read its share on stdin, probe it, answer in frames on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames on the real stdout
    targets, config, password = pickle.load(sys.stdin.buffer)
    lock = threading.Lock()

    def send(kind: str, payload: Any) -> None:
        with lock:
            _write_frame(out, (kind, payload))

    try:
        results = probe_in_threads(targets, config, password,
                                 progress=lambda failed: send("tick", failed), stop=stop)
    except InterruptedError:
        send("stopped", None)
        return 0
    send("done", results)
    return 0
