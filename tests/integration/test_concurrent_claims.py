"""Real OS processes racing on one SQLite file.

Each helper process is `python -c SCRIPT`: it opens its own SQLiteStore, says it is
ready (a file), waits for a shared "go" file so that all of them start together,
and reports what it did on stdout. Any exception makes it print the traceback
to stderr and exit 1. The store gives up on a busy database after 10 s instead of
120 s here, so a locking problem fails the test quickly instead of hiding.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from queuectl.models import JobState, NewJob
from queuectl.storage.sqlite import SQLiteStore
from tests.helpers import wait_for

_PRELUDE = r"""
import os, sys, time, traceback
from pathlib import Path
import queuectl.storage.sqlite as sqlite_module
from queuectl.storage.sqlite import SQLiteStore
from queuectl.models import NewJob

sqlite_module.BUSY_GIVE_UP = 10.0
db, name, ready, go, done = sys.argv[1:6]
args = sys.argv[6:]

def wait_for_go():
    Path(ready).touch()
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.002)

def finished():
    return os.path.exists(done)
"""

_WORKER = r"""
def main():
    store = SQLiteStore(db, durable=False)
    try:
        wait_for_go()
        while True:
            all_enqueued = finished()
            job = store.claim(name, [], 300.0)
            if job is None:
                if all_enqueued:  # checked before the claim: nothing can be missed
                    return
                time.sleep(0.002)
                continue
            if not store.complete(job.id, job.runs, name, 0):
                raise RuntimeError(f"complete({job.id}) was refused")
            print(job.id)
    finally:
        store.close()
"""

_ENQUEUER = r"""
import random

def main():
    count = int(args[0])
    rng = random.Random(name)
    store = SQLiteStore(db)
    try:
        wait_for_go()
        i = 0
        while i < count:
            batch = [
                NewJob(id=f"{name}-{j}", command="true", max_retries=3)
                for j in range(i, min(count, i + rng.randint(1, 3)))
            ]
            store.enqueue(batch)
            i += len(batch)
            print(len(batch))
    finally:
        store.close()
"""

_READER = r"""
def main():
    store = SQLiteStore(db)
    reads = 0
    try:
        wait_for_go()
        while not finished():
            store.list_jobs(limit=50)
            store.list_jobs(state=None)
            store.count_by_state()
            store.next_due_at([])
            store.changed()
            reads += 1
            if reads % 10 == 0:
                # Like every CLI command: open the database anew while others write.
                fresh = SQLiteStore(db)
                try:
                    fresh.count_by_state()
                finally:
                    fresh.close()
    finally:
        store.close()
    print(reads)
"""

_EPILOGUE = r"""
try:
    main()
except BaseException:
    traceback.print_exc()
    sys.exit(1)
"""


@dataclass
class Helper:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    ready: Path

    def stdout_lines(self) -> list[str]:
        return self.out.read_text().split()


class Race:
    """Starts helper processes on one database and releases them at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "queue.db"
        self.go = root / "go"
        self.done = root / "done"
        self.helpers: list[Helper] = []

    def spawn(self, kind: str, name: str, *args: str) -> Helper:
        script = _PRELUDE + kind + _EPILOGUE
        out, err, ready = (self.root / f"{name}.{ext}" for ext in ("out", "err", "ready"))
        paths = [str(p) for p in (self.db, ready, self.go, self.done)]
        argv = [sys.executable, "-c", script, paths[0], name, *paths[1:], *args]
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
            )
        helper = Helper(name, proc, out, err, ready)
        self.helpers.append(helper)
        return helper

    def release(self) -> None:
        """Wait until every helper is ready, then let them all go at once."""

        def all_ready() -> bool:
            for helper in self.helpers:
                if helper.proc.poll() is not None:
                    raise AssertionError(f"{helper.name} exited early: {helper.err.read_text()}")
            return all(helper.ready.exists() for helper in self.helpers)

        wait_for(all_ready, timeout=20, message="helpers to be ready")
        self.go.touch()

    def finish(self, helpers: Sequence[Helper], timeout: float = 30.0) -> None:
        """Wait for `helpers` to exit; each must exit 0 with nothing on stderr."""
        deadline = time.monotonic() + timeout
        for helper in helpers:
            try:
                helper.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(f"{helper.name} did not finish in {timeout}s") from None
        for helper in helpers:
            err = helper.err.read_text()
            assert helper.proc.returncode == 0, f"{helper.name} failed:\n{err}"
            assert err == "", f"{helper.name} wrote to stderr:\n{err}"

    def cleanup(self) -> None:
        for helper in self.helpers:
            if helper.proc.poll() is None:
                helper.proc.kill()
            helper.proc.wait()


@pytest.fixture
def race(tmp_path: Path) -> Iterator[Race]:
    r = Race(tmp_path)
    try:
        yield r
    finally:
        r.cleanup()


def _enqueue(db: Path, ids: Sequence[str]) -> None:
    store = SQLiteStore(db)
    try:
        store.enqueue([NewJob(id=i, command="true", max_retries=3) for i in ids])
    finally:
        store.close()


def _check_every_job_ran_once(db: Path, expected: set[str], claimed: list[str]) -> None:
    counts = collections.Counter(claimed)
    twice = {job_id: n for job_id, n in counts.items() if n > 1}
    assert twice == {}, f"jobs claimed more than once: {sorted(twice)[:10]}"
    assert set(counts) == expected, f"never claimed: {sorted(expected - set(counts))[:10]}"
    store = SQLiteStore(db)
    try:
        assert store.count_by_state() == {JobState.COMPLETED: len(expected)}
        jobs = store.list_jobs()
    finally:
        store.close()
    assert {j.id for j in jobs} == expected
    assert all(j.runs == 1 and j.attempts == 1 for j in jobs), "a job was claimed twice"


def test_racing_workers_claim_every_job_exactly_once(race: Race) -> None:
    ids = [f"job-{i:04d}" for i in range(1200)]
    _enqueue(race.db, ids)
    race.done.touch()  # nothing more will be enqueued: workers stop when the queue is empty
    workers = [race.spawn(_WORKER, f"worker{n}") for n in range(4)]
    race.release()
    race.finish(workers)

    claimed_by = {w.name: w.stdout_lines() for w in workers}
    _check_every_job_ran_once(race.db, set(ids), [i for ids in claimed_by.values() for i in ids])
    busy = [name for name, got in claimed_by.items() if got]
    assert len(busy) >= 2, f"no race happened: { ({n: len(g) for n, g in claimed_by.items()}) }"


def test_claims_enqueues_and_reads_in_parallel_never_report_busy(race: Race) -> None:
    initial = [f"seed-{i:04d}" for i in range(400)]
    _enqueue(race.db, initial)
    workers = [race.spawn(_WORKER, f"worker{n}") for n in range(4)]
    enqueuers = [race.spawn(_ENQUEUER, f"enq{n}", "300") for n in range(2)]
    readers = [race.spawn(_READER, f"reader{n}") for n in range(2)]
    race.release()

    race.finish(enqueuers)
    race.done.touch()  # every job is stored now: workers drain the queue and stop
    race.finish(workers)
    race.finish(readers)

    added = {f"{e.name}-{j}" for e in enqueuers for j in range(300)}
    batches = [int(n) for e in enqueuers for n in e.stdout_lines()]
    assert sum(batches) == 600
    assert len(batches) > 200  # many small transactions
    claimed = [i for w in workers for i in w.stdout_lines()]
    _check_every_job_ran_once(race.db, set(initial) | added, claimed)
    assert all(int(r.stdout_lines()[0]) > 0 for r in readers)
