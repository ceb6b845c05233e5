"""auditd/daemon/handoff.py: the writer takes what waits, in order, and makes room for it."""

from __future__ import annotations

import threading
import time

from auditd.daemon.handoff import Handoff


def test_take_gives_what_waits_oldest_first_up_to_the_limit() -> None:
    q: Handoff[int] = Handoff(maxsize=10)
    assert q.take(5) == []  # nothing waits: no wait either
    for i in range(7):
        q.put(i)
    assert q.take(5) == [0, 1, 2, 3, 4]
    assert q.qsize() == 2
    q.put(7)
    assert q.take(5) == [5, 6, 7]
    assert q.take(5) == []


def test_take_wakes_every_producer_the_room_it_made_lets_in() -> None:
    q: Handoff[int] = Handoff(maxsize=2)
    q.put(0)
    q.put(1)
    done = threading.Barrier(4)

    def produce(i: int) -> None:
        q.put(i)  # blocks: the queue is full
        done.wait(timeout=10)

    producers = [threading.Thread(target=produce, args=(i,)) for i in (2, 3, 4)]
    for t in producers:
        t.start()
    assert q.take(2) == [0, 1]  # room for two: two of the three get in, with no get
    deadline = time.monotonic() + 10
    while q.qsize() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.qsize() == 2
    later = [q.get(timeout=10) for _ in range(3)]  # and then the third
    done.wait(timeout=10)
    for t in producers:
        t.join(timeout=10)
    assert sorted(later) == [2, 3, 4] and q.qsize() == 0
