"""SQLite's `count_by_state` counts a large state as what the others leave of the total.

Each state is counted one by one only up to a cap; these tests lower the cap so
that a few jobs make a state "large", and compare with a plain GROUP BY.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from queuectl.models import JobState, NewJob
from queuectl.storage import sqlite as sqlite_module
from queuectl.storage.sqlite import SQLiteStore

LEASE = 60.0


def group_by(path: Path) -> dict[JobState, int]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    finally:
        conn.close()
    return {JobState(state): n for state, n in rows}


def queue_with(path: Path, per_state: dict[JobState, int]) -> SQLiteStore:
    """A queue holding `per_state[s]` jobs in each state s (pending, running,
    completed, failed, dead, canceled)."""
    store = SQLiteStore(path)
    total = sum(per_state.values())
    store.enqueue([NewJob(id=f"j{i}", command="true", max_retries=3) for i in range(total)])
    # Claims take the oldest runnable job: the jobs left pending come last.
    states = sorted(
        (s for s, n in per_state.items() for _ in range(n)), key=JobState.PENDING.__eq__
    )
    for index, state in enumerate(states):
        job_id = f"j{index}"
        if state is JobState.PENDING:
            continue
        if state is JobState.CANCELED:
            store.cancel(job_id)
            continue
        job = store.claim("w", (), LEASE)
        assert job is not None and job.id == job_id  # claims go in enqueue order
        if state is JobState.COMPLETED:
            assert store.complete(job.id, job.runs, "w", 0)
        elif state in (JobState.FAILED, JobState.DEAD):
            assert store.fail(
                job.id,
                job.runs,
                "w",
                attempts=1,
                dead=state is JobState.DEAD,
                retry_in=3600.0,
                exit_code=1,
                error="failed",
            )
    return store


S = JobState
CASES = {
    "all small": {S.PENDING: 2, S.RUNNING: 1, S.COMPLETED: 2, S.FAILED: 1},
    "one large (history)": {S.PENDING: 1, S.RUNNING: 2, S.COMPLETED: 9, S.DEAD: 1},
    "one large (backlog)": {S.COMPLETED: 2, S.FAILED: 1, S.CANCELED: 1, S.PENDING: 9},
    "two large": {S.COMPLETED: 7, S.DEAD: 2, S.PENDING: 8},
    "every state large": {s: 4 for s in JobState},
    "exactly at the cap": {S.COMPLETED: 3, S.PENDING: 3, S.RUNNING: 1},
}


@pytest.mark.parametrize("per_state", CASES.values(), ids=CASES.keys())
def test_counts_equal_a_group_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_state: dict[JobState, int]
) -> None:
    monkeypatch.setattr(sqlite_module, "COUNT_CAP", 3)
    path = tmp_path / "q.db"
    store = queue_with(path, per_state)
    try:
        counts = store.count_by_state()
        assert not store._conn.in_transaction  # the read snapshot was ended
    finally:
        store.close()
    assert counts == group_by(path) == {s: n for s, n in per_state.items() if n}
