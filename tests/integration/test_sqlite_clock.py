"""A SQLite worker's clock and wall-clock jumps (see `SteadyClock`).

Times in a SQLite queue come from each process's wall clock. These tests drive
a worker's store with a fake wall clock and a fake steady clock, next to the
real database file, to show that a jump forward of one worker's clock does not
make it run delayed jobs early, while a jump of the whole host (which other
processes' writes confirm) is followed.
"""

from __future__ import annotations

from pathlib import Path

from queuectl.models import NewJob
from queuectl.storage.sqlite import SQLiteStore, SteadyClock
from tests.helpers import FakeClock

START = 1_800_000_000.0
HOUR = 3600.0


class Host:
    """A fake wall clock and steady clock that advance together; the wall can jump."""

    def __init__(self) -> None:
        self.wall_time = START
        self.steady_time = 1000.0

    def wall(self) -> float:
        return self.wall_time

    def steady(self) -> float:
        return self.steady_time

    def advance(self, seconds: float) -> None:
        self.wall_time += seconds
        self.steady_time += seconds


def test_a_jump_forward_is_not_believed_without_confirmation() -> None:
    host = Host()
    clock = SteadyClock(lambda: None, wall=host.wall, steady=host.steady)
    assert clock() == START
    host.advance(10)
    assert clock() == START + 10
    host.wall_time += HOUR  # this process's clock jumps an hour ahead
    assert clock() == START + 10
    host.advance(5)
    assert clock() == START + 15  # steady time goes on from before the jump


def test_a_jump_forward_confirmed_by_others_is_followed() -> None:
    host = Host()
    newest: list[float | None] = [START]
    clock = SteadyClock(lambda: newest[0], wall=host.wall, steady=host.steady)
    host.wall_time += HOUR
    assert clock() == START
    newest[0] = START + HOUR  # someone else wrote a time from after the jump
    assert clock() == START + HOUR
    host.advance(1)
    assert clock() == START + HOUR + 1


def test_a_jump_backward_and_small_drift_are_followed_at_once() -> None:
    host = Host()
    clock = SteadyClock(lambda: None, wall=host.wall, steady=host.steady)
    host.wall_time += 0.5  # within the tolerance: slewing, not a jump
    assert clock() == START + 0.5
    host.wall_time -= HOUR
    assert clock() == START + 0.5 - HOUR  # later runs are never early runs


def test_a_worker_whose_clock_jumps_does_not_claim_a_delayed_job(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    enqueuer_clock = FakeClock(start=START)
    enqueuer = SQLiteStore(db, clock=enqueuer_clock)
    host = Host()
    worker = SQLiteStore(db, durable=False, clock=None)
    worker._clock = SteadyClock(worker.newest_foreign_time, wall=host.wall, steady=host.steady)
    try:
        enqueuer.enqueue(
            [NewJob(id="later", command="true", max_retries=1, run_at=START + 30 * 60)]
        )
        host.wall_time += HOUR  # only the worker's clock jumps
        assert worker.claim("w1", (), 30.0) is None
        assert worker.now() == START

        # The whole host moved: the next enqueue is stamped an hour later too.
        enqueuer_clock.advance(HOUR)
        enqueuer.enqueue([NewJob(id="now", command="true", max_retries=1)])
        first = worker.claim("w1", (), 30.0)
        second = worker.claim("w1", (), 30.0)
        assert first is not None and second is not None
        assert {first.id, second.id} == {"later", "now"}
        assert worker.now() == START + HOUR
    finally:
        worker.close()
        enqueuer.close()
