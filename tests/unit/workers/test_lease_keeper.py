"""The slot's lease keeper: one thread per slot process that beats every lease/4 while a
trial is held and stays quiet between trials (workers/slot.py)."""

from __future__ import annotations

import threading
import time

from workers.slot import LeaseKeeper


class Beats:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def heartbeat(self, _worker_id: int) -> None:
        with self.lock:
            self.count += 1


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_it_beats_while_a_trial_is_held_and_stops_after() -> None:
    keeper = LeaseKeeper.shared()
    assert LeaseKeeper.shared() is keeper  # one per process
    beats = Beats()
    with keeper.holding(beats, 1, lease_seconds=1.0):  # type: ignore[arg-type]
        assert _wait_for(lambda: beats.count >= 2)  # every 0.25 s
    after = beats.count
    time.sleep(0.6)
    assert beats.count <= after + 1  # at most the beat that was under way


def test_the_next_trial_beats_for_its_own_client() -> None:
    keeper = LeaseKeeper.shared()
    first, second = Beats(), Beats()
    with keeper.holding(first, 1, lease_seconds=300):  # type: ignore[arg-type]
        pass
    with keeper.holding(second, 1, lease_seconds=1.0):  # type: ignore[arg-type]
        assert _wait_for(lambda: second.count >= 1)
    assert first.count == 0  # its 75 s interval never ran out
