"""`paused_gc` blocks that overlap across threads (the daemon's worker and its resync timer's
comparison both pause the collector): the collector runs again once the last one closes, and
only then."""

from __future__ import annotations

import gc
import threading

from reconciler.adapters.files import paused_gc


def test_overlapping_pauses_in_two_threads_restore_the_collector_when_the_last_ends() -> None:
    assert gc.isenabled()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with paused_gc():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with paused_gc():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == {"after the first ended": False}  # still paused: the second block is open
    assert gc.isenabled()  # both closed: running again


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
