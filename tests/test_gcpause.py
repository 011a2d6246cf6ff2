"""gcpause: the garbage collector paused around discovery's bulk parsing, and always
back as it was (an error, nesting, a discovery that fails)."""

from __future__ import annotations

import gc
import threading

import pytest

from gcpause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    assert gc.isenabled()
    yield
    gc.enable()  # whatever a failing test left


def test_the_collector_is_off_inside_and_back_on_after_even_on_an_error():
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("a search failed")
    assert gc.isenabled()


def test_nested_blocks_leave_it_off_until_the_outer_one_ends():
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_block_that_found_it_off_does_not_turn_it_on():
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_blocks_in_two_threads_end_with_it_on():
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    with gc_paused():
        thread = threading.Thread(target=other)
        thread.start()
        assert inside.wait(5)
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_discovery_pauses_it_and_turns_it_back_on_when_the_server_fails(monkeypatch):
    from collectors import directory

    seen = []

    def failing(connection, url, config):
        seen.append(gc.isenabled())
        raise directory.DirectoryError(url, "search of x", "connection lost", "try again",
                                       another_server_may_answer=True)

    class Closed:
        def unbind(self) -> None:
            pass

    monkeypatch.setattr(directory, "_discover_on", failing)
    monkeypatch.setattr(directory, "_close", lambda connection: None)
    config = directory.DirectoryConfig(servers=("ldaps://127.0.0.1:1",), bind_user="u")
    with pytest.raises(directory.DirectoryError, match="connection lost"):
        directory.discover(config, "dummy", connect=lambda *_args: Closed())
    assert seen == [False] and gc.isenabled()


def test_the_first_block_ending_while_another_thread_is_inside_leaves_it_off_until_the_last():
    # Review (2026-12-02): reading isenabled() and disabling were two steps, so a block
    # ending between them in another thread left the collector off for good. Now the first
    # block in turns it off and the last one out, whichever thread, turns it back on.
    entered, first_ended, release = threading.Event(), threading.Event(), threading.Event()

    def second() -> None:
        with gc_paused():
            entered.set()
            assert first_ended.wait(5)
            assert not gc.isenabled()  # the first block has ended; this one is still inside
            release.wait(5)

    thread = threading.Thread(target=second)
    with gc_paused():
        thread.start()
        assert entered.wait(5)
    first_ended.set()
    assert not gc.isenabled()
    release.set()
    thread.join(5)
    assert not thread.is_alive() and gc.isenabled()

