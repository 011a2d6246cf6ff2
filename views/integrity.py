"""The chain's verification state, shown by the frame on every page.

``python -m store verify``'s check runs once per state of the store (both chain heads, so a new
snapshot or audit entry starts a new one), in a child process (store/checker.py: hashing every
row on a thread of this process would slow every page's script, which needs the same GIL). A
page waits a moment for a small store's check and not at all for a large one's. Until it is
done the frame says "checking" and polls; a failure is a red banner on every page, since every
figure shown may then have been altered.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as Pending
from dataclasses import dataclass
from typing import Literal

import streamlit as st

from store.checker import verify_in_child
from store.verification import VerifyReport
from views import data
from views.markdown import literal

# A small store's check is shown on the first render (the child starts in ~0.3 s and hashes
# the demo fleet in ~0.1 s); a large one's after it, by the poll: its first render never waits.
WAIT_SECONDS = 1.0
SMALL_ROWS = 20_000  # host rows of snapshots not pruned: about 0.5 s of hashing
# A check that hangs (a database lock held for ever) is an error after this, not "checking"
# for ever; the next one can start (52 x 10,000 hosts verify in about 8 s).
CHECK_TIMEOUT_SECONDS = 1800
POLL_SECONDS = 2.0
# An edit in place moves no chain head: the store is checked again at least this often.
RECHECK_SECONDS = 300


@dataclass(frozen=True)
class ChainState:
    state: Literal["checking", "verified", "failed", "error"]
    signed: bool  # checked with the signing key (HMACs included)
    report: VerifyReport | None = None
    error: str = ""

    @property
    def keyed(self) -> str:
        return "signatures checked" if self.signed else "unsigned: no signing key set"

    @property
    def words(self) -> str:
        """The state in a sentence's words (the report states it so)."""
        return {"verified": f"verified ({self.keyed})",
                "failed": "FAILED verification: do not rely on these figures",
                "checking": "not yet verified (the check was still running)",
                "error": "could not be verified"}[self.state]


class _Checks:
    """Per process: one verification per (store, heads, keyed), the newest few kept."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chain-verify")
        self.lock = threading.Lock()
        self.futures: dict[tuple[str, str, bool, int], Future[VerifyReport]] = {}
        self.forced = 0

    def future(self, url: str, heads: str, key: bytes | None,
               fresh: bool = False) -> Future[VerifyReport]:
        with self.lock:
            if fresh:  # a person asked: whatever was checked before, check again now
                self.forced += 1
            period = int(time.time() // RECHECK_SECONDS) + self.forced * 10**9
            wanted = (url, heads, key is not None, period)
            if wanted not in self.futures:
                self.futures[wanted] = self.pool.submit(verify_in_child, url, key,
                                                        CHECK_TIMEOUT_SECONDS)
                while len(self.futures) > 8:  # the oldest states are of no more use
                    self.futures.pop(next(iter(self.futures)))
            return self.futures[wanted]


@st.cache_resource(show_spinner=False)
def _checks() -> _Checks:
    return _Checks()


def chain_state(url: str, key: bytes | None, wait: float | None = None,
                fresh: bool = False) -> ChainState:
    """The store's verification state, waiting at most ``wait`` seconds for a check that is
    running (by default ``WAIT_SECONDS`` for a small store, none for a large one). A check is
    reused while both chain heads stay the same, for at most ``RECHECK_SECONDS`` (a row edited
    in place moves no head); ``fresh`` starts a new one."""
    if wait is None:
        # A header's count may be anything a database writer put there: only a number counts.
        rows = sum(s.host_count for s in data.snapshots(url)
                   if isinstance(s.host_count, int) and not s.pruned)
        wait = WAIT_SECONDS if rows <= SMALL_ROWS else 0.0
    future = _checks().future(url, data.heads(url), key, fresh)
    try:
        report = future.result(timeout=wait)
    except Pending:
        return ChainState("checking", key is not None)
    except Exception as error:  # a store that cannot be read at all: not verified
        return ChainState("error", key is not None, error=str(error).splitlines()[0][:300])
    return ChainState("verified" if report.ok else "failed", key is not None, report)


def show(url: str, key: bytes | None) -> None:
    """The chain's state in the sidebar on every page, and a red banner when it failed. While
    the check runs, the sidebar polls and reruns the page once it is done."""
    state = chain_state(url, key)
    signed = state.keyed
    if state.state == "failed":
        assert state.report is not None
        first = state.report.problems[0]
        st.error(f"**The snapshot store does not verify** ({len(state.report.problems)} "
                 f"problem(s); first: {first.where}: {literal(first.message)}). Figures on this "
                 "page may have been altered in the database: do not rely on them. The "
                 "Snapshots page lists every problem; `python -m store verify` checks it from "
                 "the command line.", icon=":material/gpp_bad:")
        st.sidebar.error(f"Chain: **failed** verification ({signed})")
    elif state.state == "error":
        st.error(f"**The snapshot store could not be verified**: {literal(state.error)}",
                 icon=":material/gpp_bad:")
        st.sidebar.error("Chain: not verified (the check failed to run)")
    elif state.state == "verified":
        st.sidebar.success(f"Chain: verified ({signed})", icon=":material/verified_user:")
    else:
        with st.sidebar:  # a fragment writes only inside its own container
            _poll(url, key)


@st.fragment(run_every=POLL_SECONDS)
def _poll(url: str, key: bytes | None) -> None:
    if chain_state(url, key, wait=0).state == "checking":
        st.info("Chain: checking…", icon=":material/hourglass_top:")
    else:
        st.rerun(scope="app")
