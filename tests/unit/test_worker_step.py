"""The worker loop, driven one `step()` at a time (no threads, no `run()`).

Jobs are real `/bin/sh` commands run by a real executor (without the watchdog
process); the store is the real backend with the fake clock, so backoff and
lease expiry happen by advancing the clock, never by waiting.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from queuectl.errors import StorageError
from queuectl.models import Job, JobState, NewJob
from queuectl.queue.executor import Executor
from queuectl.queue.joblog import log_path, read_log
from queuectl.queue.worker import Worker
from queuectl.storage.base import Store
from queuectl.storage.sqlite import SQLiteStore
from tests.conftest import StoreFactory
from tests.helpers import FakeClock, SignalsBeforeGate, wait_for

T = TypeVar("T")

STEP = 0.05  # seconds: the most one step() may block waiting for events
DEADLINE = 10.0  # seconds before a polling wait fails the test


def at(ts: float) -> Any:
    """Equal to the epoch time `ts` within a millisecond (pytest.approx's default
    relative tolerance would allow half an hour at today's epoch)."""
    return pytest.approx(ts, rel=0, abs=0.001)


@dataclass
class Rig:
    """A worker on the test store, with the stores and buffers it needs."""

    store: Store
    clock: FakeClock
    tmp_path: Path
    factory: StoreFactory
    stores: list[Store] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    outs: dict[str, io.StringIO] = field(default_factory=dict)
    errs: dict[str, io.StringIO] = field(default_factory=dict)

    @property
    def logs_dir(self) -> Path:
        return self.tmp_path / "logs"

    def open_store(self) -> Store:
        """Another connection to the same database, on the same fake clock."""
        return self.factory()

    def worker(
        self,
        *,
        concurrency: int = 1,
        worker_id: str = "w-test",
        open_store: Callable[[], Store] | None = None,
        executor_class: type[Executor] = Executor,
    ) -> Worker:
        # A caller-supplied executor gets no output callback from the Worker, so wire
        # the echo to the worker's own printer once the worker exists.
        built: list[Worker] = []
        executor = executor_class(
            on_line=lambda key, line: built[0]._echo_line(key, line), guard=False
        )
        self.outs[worker_id] = io.StringIO()
        self.errs[worker_id] = io.StringIO()
        w = Worker(
            self.store,
            open_store=open_store or self.open_store,
            logs_dir=self.logs_dir,
            concurrency=concurrency,
            executor=executor,
            out=self.outs[worker_id],
            err=self.errs[worker_id],
            worker_id=worker_id,
        )
        built.append(w)
        self.workers.append(w)
        return w

    def out(self, w: Worker) -> str:
        return self.outs[w.id].getvalue()

    def err(self, w: Worker) -> str:
        return self.errs[w.id].getvalue()

    def enqueue(
        self,
        job_id: str,
        command: str,
        *,
        max_retries: int = 3,
        priority: int = 0,
        timeout: float | None = None,
    ) -> None:
        self.store.enqueue(
            [
                NewJob(
                    id=job_id,
                    command=command,
                    max_retries=max_retries,
                    priority=priority,
                    timeout=timeout,
                )
            ]
        )

    def job(self, job_id: str) -> Job:
        return self.store.get_job(job_id)

    def shutdown(self, w: Worker) -> None:
        """Shut a worker down once (a second shutdown would close its pipe fds again)."""
        self.workers.remove(w)
        w.shutdown()

    def close(self) -> None:
        for w in list(self.workers):
            self.shutdown(w)
        for s in self.stores:
            s.close()


@pytest.fixture
def rig(
    store: Store, clock: FakeClock, tmp_path: Path, store_factory: StoreFactory
) -> Iterator[Rig]:
    r = Rig(store=store, clock=clock, tmp_path=tmp_path, factory=store_factory)
    try:
        yield r
    finally:
        r.close()


def step_until(
    worker: Worker, predicate: Callable[[], T | None], message: str, timeout: float = DEADLINE
) -> T:
    """Step the worker until `predicate` holds; each step blocks on events, not a sleep."""

    def stepped() -> T | None:
        worker.step(max_wait=STEP)
        return predicate()

    result = wait_for(stepped, timeout=timeout, interval=0.0, message=message)
    assert result is not None
    return result


def in_state(rig: Rig, job_id: str, state: JobState) -> Callable[[], Job | None]:
    def check() -> Job | None:
        job = rig.job(job_id)
        return job if job.state is state else None

    return check


def failed_times(rig: Rig, job_id: str, attempts: int) -> Callable[[], Job | None]:
    def check() -> Job | None:
        job = rig.job(job_id)
        return job if job.state is JobState.FAILED and job.attempts == attempts else None

    return check


def ended(rig: Rig, job_id: str) -> Job | None:
    """The job, once it is no longer running."""
    job = rig.job(job_id)
    return job if job.state is not JobState.RUNNING else None


def running_here(rig: Rig, worker: Worker, *job_ids: str) -> Callable[[], bool]:
    """These jobs are running for `worker` (claimed, and their processes started)."""

    def check() -> bool:
        jobs = [rig.job(job_id) for job_id in job_ids]
        return all(j.state is JobState.RUNNING and j.worker_id == worker.id for j in jobs) and len(
            worker.executor.running
        ) == len(job_ids)

    return check


def idle(worker: Worker) -> Callable[[], bool]:
    return lambda: not worker.executor.running


# -- outcomes -------------------------------------------------------------------------------


def test_a_successful_job_completes(rig: Rig) -> None:
    rig.enqueue("ok", "true")
    w = rig.worker()
    job = step_until(w, in_state(rig, "ok", JobState.COMPLETED), "job to complete")
    assert job.attempts == 1
    assert job.exit_code == 0
    assert job.runs == 1
    assert "[ok] completed" in rig.err(w)
    assert not w.executor.running


def test_a_failing_job_waits_for_its_backoff(rig: Rig) -> None:
    rig.enqueue("flaky", "exit 3", max_retries=3)
    w = rig.worker()
    job = step_until(w, in_state(rig, "flaky", JobState.FAILED), "job to fail")
    assert job.attempts == 1
    assert job.exit_code == 3
    assert job.last_error == "exit code 3"
    assert job.next_attempt_at == at(rig.clock.now + 2.0)
    # The worker looks again, but the job is not due: nothing runs.
    for _ in range(5):
        w.step(max_wait=0.01)
        assert not w.executor.running
    assert rig.job("flaky").state is JobState.FAILED
    assert rig.job("flaky").runs == 1
    rig.clock.advance(2.0)
    job = step_until(w, failed_times(rig, "flaky", 2), "second failure")
    assert job.runs == 2
    assert job.next_attempt_at == at(rig.clock.now + 4.0)


def test_a_job_that_keeps_failing_goes_dead_after_max_retries(rig: Rig) -> None:
    rig.enqueue("doomed", "exit 3", max_retries=2)
    w = rig.worker()
    step_until(w, in_state(rig, "doomed", JobState.FAILED), "first failure")
    rig.clock.advance(2.0)
    job = step_until(w, in_state(rig, "doomed", JobState.DEAD), "job to be dead")
    assert job.attempts == 2
    assert job.runs == 2
    assert job.exit_code == 3
    assert job.next_attempt_at is None
    assert "dead after 2 attempt(s)" in rig.err(w)
    rig.clock.advance(3600.0)
    for _ in range(3):
        w.step(max_wait=0.01)
    assert rig.job("doomed").state is JobState.DEAD


def test_a_command_that_is_not_found_fails(rig: Rig) -> None:
    rig.enqueue("typo", "no-such-command-queuectl-test", max_retries=0)
    w = rig.worker()
    job = step_until(w, in_state(rig, "typo", JobState.DEAD), "job to be dead")
    assert job.exit_code == 127
    assert job.last_error is not None
    assert "not found" in job.last_error


def test_a_job_past_its_timeout_is_killed_and_fails(rig: Rig) -> None:
    rig.enqueue("slow", "sleep 30", max_retries=3, timeout=0.2)
    w = rig.worker()
    job = step_until(w, in_state(rig, "slow", JobState.FAILED), "job to time out", timeout=5.0)
    assert job.attempts == 1
    assert job.last_error is not None
    assert job.last_error.startswith("timed out after ")
    assert job.next_attempt_at == at(rig.clock.now + 2.0)


# -- output and environment -----------------------------------------------------------------


def test_output_is_echoed_with_the_job_id_and_kept_in_the_log(rig: Rig) -> None:
    rig.enqueue("talk", "echo hello; echo oops >&2; printf 'no newline'")
    w = rig.worker()
    step_until(w, in_state(rig, "talk", JobState.COMPLETED), "job to complete")
    assert rig.out(w) == "[talk] hello\n[talk] oops\n[talk] no newline\n"
    log = read_log(log_path(rig.logs_dir, "talk")).decode()
    header, body = log.split("\n", 1)
    assert header.startswith("=== run 1 (attempt 1) started ")
    assert "by w-test" in header
    assert body == "hello\noops\nno newline"


def test_each_run_sees_its_job_id_and_attempt(rig: Rig) -> None:
    # Fails on its first attempt and succeeds on the second, from the environment alone.
    rig.enqueue(
        "env",
        'echo "id=$QUEUECTL_JOB_ID attempt=$QUEUECTL_ATTEMPT"; [ "$QUEUECTL_ATTEMPT" -ge 2 ]',
    )
    w = rig.worker()
    step_until(w, in_state(rig, "env", JobState.FAILED), "first attempt to fail")
    rig.clock.advance(2.0)
    job = step_until(w, in_state(rig, "env", JobState.COMPLETED), "second attempt")
    assert job.attempts == 2
    log = read_log(log_path(rig.logs_dir, "env")).decode()
    assert "id=env attempt=1\n" in log
    assert "id=env attempt=2\n" in log
    assert "=== run 2 (attempt 2)" in log


# -- stopping -------------------------------------------------------------------------------


def test_graceful_stop_lets_the_running_job_finish(rig: Rig) -> None:
    go = rig.tmp_path / "go"
    rig.enqueue("long", f"while [ ! -e '{go}' ]; do sleep 0.01; done; echo finished")
    w = rig.worker(concurrency=2)
    step_until(w, running_here(rig, w, "long"), "job to start")
    w.request_stop()
    rig.enqueue("next", "true")
    for _ in range(5):
        w.step(max_wait=0.01)
    assert not w.finished
    assert running_here(rig, w, "long")()
    assert rig.job("long").state is JobState.RUNNING
    go.touch()
    step_until(w, lambda: w.finished, "worker to finish")
    job = rig.job("long")
    assert job.state is JobState.COMPLETED
    assert job.attempts == 1
    assert "[long] finished" in rig.out(w)
    assert rig.job("next").state is JobState.PENDING  # a stopping worker claims nothing


def test_forced_stop_gives_the_running_job_back(rig: Rig) -> None:
    rig.enqueue("sleepy", "sleep 30", max_retries=3)
    w = rig.worker()
    step_until(w, running_here(rig, w, "sleepy"), "job to start")
    w.request_stop(force=True)
    step_until(w, lambda: w.finished, "worker to finish", timeout=5.0)
    job = rig.job("sleepy")
    assert job.state is JobState.PENDING
    assert job.attempts == 0
    assert job.runs == 1
    assert job.next_attempt_at == at(rig.clock.now)
    assert "back to pending" in rig.err(w)


def test_a_shell_killed_before_its_command_began_gives_the_job_back_uncharged(
    rig: Rig,
) -> None:
    """A terminal's Ctrl+C signals the worker's whole process group; a job's shell
    caught by it before it left that group never ran its command. The job goes back
    to pending with no attempt charged, as for any interrupted run."""
    rig.enqueue("early", "true", max_retries=1)
    w = rig.worker(executor_class=SignalsBeforeGate)
    step_until(w, lambda: rig.job("early").runs == 1, "the job to be claimed")
    w.request_stop()  # before the job, given back, is claimed (and killed) again
    step_until(w, lambda: w.finished, "worker to finish")
    job = rig.job("early")
    assert job.runs == 1
    assert job.attempts == 0
    assert job.state is JobState.PENDING
    assert "before the command began" in (job.last_error or "")
    assert "killed by SIGINT" in (job.last_error or "")


def test_a_stopped_worker_claims_nothing(rig: Rig) -> None:
    w = rig.worker()
    w.request_stop()
    rig.enqueue("a", "true")
    assert w.finished
    for _ in range(3):
        w.step(max_wait=0.01)
    assert rig.job("a").state is JobState.PENDING


# -- leases ---------------------------------------------------------------------------------


def _take_over(rig: Rig, w: Worker, job_id: str) -> Job:
    """Let the lease of `w`'s run expire and have worker w-new claim the job."""
    rig.clock.advance(w.settings.lease_timeout + 1)
    other = rig.open_store()
    [recovered] = other.recover([], stale_after=1000.0)
    assert recovered.id == job_id
    new = other.claim("w-new", (), 60.0)
    assert new is not None
    assert new.id == job_id
    assert new.runs == 2
    return new


def test_a_run_whose_lease_was_taken_over_is_stopped_and_discarded(rig: Rig) -> None:
    rig.enqueue("contested", "sleep 30")
    w = rig.worker()
    step_until(w, running_here(rig, w, "contested"), "job to start")
    new = _take_over(rig, w, "contested")
    w.beat(rig.open_store())
    step_until(w, idle(w), "old run to be stopped", timeout=5.0)
    assert "lease lost to another worker" in rig.err(w)
    assert "result discarded" in rig.err(w)
    job = rig.job("contested")
    assert job.state is JobState.RUNNING
    assert job.worker_id == "w-new"
    assert job.runs == new.runs
    assert job.attempts == 0
    # The new owner's run is untouched and can finish normally.
    assert rig.store.complete("contested", new.runs, "w-new", 0)


def test_a_run_that_ends_after_a_takeover_cannot_record_its_result(rig: Rig) -> None:
    go = rig.tmp_path / "go"
    rig.enqueue("contested", f"while [ ! -e '{go}' ]; do sleep 0.01; done; exit 1")
    w = rig.worker()
    step_until(w, running_here(rig, w, "contested"), "job to start")
    new = _take_over(rig, w, "contested")
    go.touch()  # the old run ends on its own, its worker never heard of the takeover
    step_until(w, idle(w), "old run to end")
    assert "lease was taken over" in rig.err(w)
    job = rig.job("contested")
    assert job.state is JobState.RUNNING
    assert job.worker_id == "w-new"
    assert job.runs == new.runs
    assert job.attempts == 0
    assert job.last_error is not None  # the recovery's note, not "exit code 1"
    assert "exit code" not in job.last_error


def test_heartbeat_keeps_a_held_job(rig: Rig) -> None:
    rig.enqueue("held", "sleep 30")
    w = rig.worker()
    step_until(w, running_here(rig, w, "held"), "job to start")
    hb = rig.open_store()
    rig.clock.advance(w.settings.lease_timeout - 1)
    w.beat(hb)
    rig.clock.advance(w.settings.lease_timeout - 1)  # past the first lease, not the renewed
    assert hb.recover([], stale_after=1000.0) == []
    for _ in range(3):
        w.step(max_wait=0.01)
    assert running_here(rig, w, "held")()
    assert rig.job("held").state is JobState.RUNNING
    assert "lease lost" not in rig.err(w)


def test_a_run_the_guard_killed_is_not_charged_when_a_renewal_comes_first(
    rig: Rig, tmp_path: Path
) -> None:
    # A worker frozen past its lease guard (Ctrl+Z) has its runs killed by the
    # watchdog. When it goes on, its heartbeat thread may renew the leases before
    # the loop sees the death; that run was charged as failed (an e2e test, about
    # one run in twenty).
    pidfile = tmp_path / "pid"
    rig.enqueue("frozen", f"echo $$ > {pidfile}; sleep 30")
    w = rig.worker()
    step_until(w, running_here(rig, w, "frozen"), "job to start")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="the job's pid")
    w._renewed(time.monotonic() - 100)  # the last renewal was long ago: the guard ran out
    pid = int(pidfile.read_text())
    os.killpg(pid, signal.SIGKILL)  # as the watchdog does then
    wait_for(
        lambda: Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z",
        message="the shell to die (not reaped: the loop has not looked)",
    )
    w.beat(rig.open_store())  # the heartbeat renews first
    job = step_until(w, lambda: ended(rig, "frozen"), "the run to be recorded")
    assert (job.state, job.attempts) == (JobState.PENDING, 0)
    assert "could not renew the lease in time (not charged)" in (job.last_error or "")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_wall_clock_jump_does_not_take_a_live_lease(rig: Rig) -> None:
    """SQLite's times come from the host clock: an hour's jump makes every lease look
    expired. Another worker takes a job back only once it has seen the lease
    unrenewed for a whole lease on its own monotonic clock. (PostgreSQL's times
    come from the server, one clock for all: see test_store_contract.)"""
    rig.store.set_config("heartbeat_interval", "0.2")
    rig.store.set_config("lease_timeout", "2")
    rig.enqueue("held", "sleep 30")
    holder = rig.worker(worker_id="w-holder")
    step_until(holder, running_here(rig, holder, "held"), "job to start")
    watcher = rig.worker(worker_id="w-watcher")
    holder_store, watcher_store = rig.open_store(), rig.open_store()
    holder.beat(holder_store)
    watcher.beat(watcher_store)  # starts watching the lease
    rig.clock.advance(3600)  # the wall clock jumps an hour ahead
    renewals_until = time.monotonic() + 3 * watcher.settings.lease_timeout
    while time.monotonic() < renewals_until:  # the holder renews on every heartbeat
        watcher.beat(watcher_store)  # first: it sees the lease expired by the clock
        holder.beat(holder_store)
        rig.clock.advance(watcher.settings.heartbeat_interval)  # the clock goes on
        holder.step(max_wait=watcher.settings.heartbeat_interval)
    job = rig.job("held")
    assert (job.state, job.worker_id, job.recoveries) == (JobState.RUNNING, "w-holder", 0)
    assert "recovered" not in rig.err(watcher)

    # A holder that stops renewing (frozen) does lose the job, after one lease.
    stopped_at = time.monotonic()

    def taken_back() -> bool:
        watcher.beat(watcher_store)
        return rig.job("held").state is JobState.PENDING

    wait_for(taken_back, timeout=DEADLINE, interval=0.1, message="the unrenewed lease taken back")
    assert time.monotonic() - stopped_at >= watcher.settings.lease_timeout
    assert "recovered from lost worker w-holder" in rig.err(watcher)


def test_a_stop_requested_from_elsewhere_reaches_the_worker(rig: Rig) -> None:
    w = rig.worker()
    hb = rig.open_store()
    w.beat(hb)  # registers the worker row
    assert hb.request_stop([w.id]) == 1
    w.beat(hb)
    w.step(max_wait=0.01)
    assert w.finished


# -- claiming -------------------------------------------------------------------------------


def test_priorities_then_fifo_with_one_slot(rig: Rig) -> None:
    order = rig.tmp_path / "order"
    for job_id, priority in [("low", 0), ("mid-1", 5), ("high", 9), ("mid-2", 5), ("neg", -1)]:
        rig.enqueue(job_id, f"echo {job_id} >> '{order}'", priority=priority)
    w = rig.worker(concurrency=1)
    step_until(
        w,
        lambda: rig.store.count_by_state().get(JobState.COMPLETED) == 5,
        "all jobs to complete",
    )
    assert order.read_text().split() == ["high", "mid-1", "mid-2", "low", "neg"]


def test_concurrency_runs_jobs_side_by_side(rig: Rig) -> None:
    go = rig.tmp_path / "go"
    for job_id in ("a", "b", "c"):
        rig.enqueue(job_id, f"while [ ! -e '{go}' ]; do sleep 0.01; done")
    w = rig.worker(concurrency=2)
    step_until(w, running_here(rig, w, "a", "b"), "two jobs to start")
    for _ in range(3):
        w.step(max_wait=0.01)
    assert running_here(rig, w, "a", "b")()
    assert rig.job("c").state is JobState.PENDING
    go.touch()
    step_until(
        w,
        lambda: rig.store.count_by_state().get(JobState.COMPLETED) == 3,
        "all jobs to complete",
    )


def test_a_job_enqueued_by_another_connection_is_picked_up(rig: Rig) -> None:
    w = rig.worker()
    for _ in range(3):
        w.step(max_wait=0.01)  # idle: nothing to claim
    rig.open_store().enqueue([NewJob(id="late", command="true", max_retries=3)])
    step_until(w, in_state(rig, "late", JobState.COMPLETED), "late job to complete")


def test_a_watcher_that_breaks_leaves_the_worker_polling(tmp_path: Path) -> None:
    # SQLite only, with stores of its own: the worker's threads open and close
    # theirs, which the fixture's stores (closed by the main thread) cannot be.
    path = tmp_path / "queue.db"

    def breaking_store() -> Store:
        store = SQLiteStore(path, durable=False)

        def broken(timeout: float, interrupt: object) -> bool:
            raise OSError(errno.EIO, "the watch descriptor failed")

        store.wait_for_change = broken  # type: ignore[method-assign]
        return store

    store = SQLiteStore(path, durable=False)
    # No heartbeat during the test: its commit would also wake a polling loop.
    store.set_config("lease_timeout", "600")
    store.set_config("heartbeat_interval", "300")
    err = io.StringIO()
    w = Worker(
        store,
        open_store=breaking_store,
        logs_dir=tmp_path / "logs",
        executor=Executor(guard=False),
        out=io.StringIO(),
        err=err,
    )
    try:
        w.start()  # the heartbeat and watcher threads, as under `worker start`
        wait_for(lambda: "polling instead" in err.getvalue(), message="the watcher to give up")
        assert "Traceback" not in err.getvalue()
        w.step(max_wait=STEP)  # the claim the handover asks for: nothing to take yet
        other = SQLiteStore(path)
        try:
            other.enqueue([NewJob(id="late", command="true", max_retries=3)])
        finally:
            other.close()

        def completed() -> bool:
            return store.get_job("late").state is JobState.COMPLETED

        step_until(w, completed, "late job to complete")
    finally:
        w.shutdown()
        store.close()


def test_shutdown_with_running_jobs_claims_nothing_new(rig: Rig) -> None:
    rig.enqueue("running", "sleep 30")
    w = rig.worker(concurrency=2)
    step_until(w, running_here(rig, w, "running"), "job to start")
    rig.enqueue("waiting", "echo ran")
    rig.shutdown(w)  # as after an unexpected error in run(): jobs still running
    assert rig.job("running").state is JobState.PENDING
    assert rig.job("running").attempts == 0
    assert rig.job("waiting").state is JobState.PENDING
    assert rig.job("waiting").runs == 0


def sqlite_worker(tmp_path: Path) -> tuple[Worker, SQLiteStore, io.StringIO]:
    """A worker on a real SQLite file (not the rig's fake clock), its main store, and
    its stderr: for tests that make that store's writes fail."""
    store = SQLiteStore(tmp_path / "queue.db", durable=False)
    err = io.StringIO()
    w = Worker(
        store,
        open_store=lambda: SQLiteStore(tmp_path / "queue.db", durable=False),
        logs_dir=tmp_path / "logs",
        executor=Executor(guard=False),
        out=io.StringIO(),
        err=err,
    )
    return w, store, err


def test_a_worker_that_cannot_start_says_only_why(tmp_path: Path) -> None:
    """`worker start` on a database it cannot write to (a full disk, say): one error,
    not a "worker stopped" line before it about a worker that never started."""
    w, store, err = sqlite_worker(tmp_path)
    store._conn.execute("PRAGMA query_only = 1")  # every write now fails, as on a full disk
    try:
        with pytest.raises(StorageError):
            w.run()
    finally:
        store.close()
    assert "stopped" not in err.getvalue(), err.getvalue()


def test_a_database_outage_is_reported_once_not_at_every_retry(tmp_path: Path) -> None:
    w, store, err = sqlite_worker(tmp_path)
    try:
        w.start()
        store._conn.execute("PRAGMA query_only = 1")  # every write now fails, as on a full disk
        w._claim_now = True  # so that each step tries a claim
        deadline = time.monotonic() + 1.5  # backoffs of 0.1, 0.2, 0.4, 0.8 s: four tries
        while time.monotonic() < deadline:
            w.step(max_wait=STEP)
        assert err.getvalue().count("database unavailable") == 1, err.getvalue()
        store._conn.execute("PRAGMA query_only = 0")
        step_until(w, lambda: "database available again" in err.getvalue(), "recovery")
    finally:
        w.shutdown()
        store.close()


def test_a_bad_stored_setting_leaves_a_running_worker_on_its_previous_settings(
    rig: Rig,
) -> None:
    # A value no reader parses (stored by hand, or by an older queuectl) must not
    # stop a running worker: it says so once and keeps the settings it had.
    w = rig.worker()
    rig.store.set_config("job_timeout", "1e+16")
    rig.enqueue("after", "true")
    w._refresh_settings(force=True)
    w._refresh_settings(force=True)
    assert rig.err(w).count("the stored setting job_timeout = '1e+16' is invalid") == 1
    assert w.settings.job_timeout is None  # the default it started with
    step_until(w, in_state(rig, "after", JobState.COMPLETED), "a job to run meanwhile")


def test_signals_the_loop_acted_on_are_not_taken_again_while_it_is_stuck(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: the second look that a second Ctrl+C armed (SIGALRM) came
    while the forced stop it had caused waited to record, and was taken for a third
    Ctrl+C: the worker left without the database, its job not given back."""
    import signal

    worker = rig.worker()
    monkeypatch.setattr(signal, "setitimer", lambda *args: None)
    answered: list[float] = []  # stands in for the handler's answer (which exits)
    monkeypatch.setattr(worker, "_signal_while_stuck", answered.append)
    worker._on_signal(signal.SIGINT, None)
    worker._on_signal(signal.SIGINT, None)
    worker.step(max_wait=0)  # the loop acts on both: a forced stop
    worker._progress_at -= 10  # ... and then waits on its database
    worker._on_alarm(signal.SIGALRM, None)
    assert answered == []
    worker._on_signal(signal.SIGINT, None)  # a third Ctrl+C: the loop cannot see it
    assert len(answered) == 1 and answered[0] >= 10


def test_each_launch_is_progress_for_a_loop_filling_many_slots(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by an audit: a worker of 1,024 slots took over 2 s to fill them in one
    iteration, and a double Ctrl+C then found it "stuck" and left without the
    database. Each launch now counts as progress."""
    worker = rig.worker(concurrency=3)
    rig.store.enqueue([NewJob(id=f"j{i}", command="true", max_retries=1) for i in range(3)])
    seen: list[float] = []
    claim = worker.store.claim

    def noting_claim(*args: Any, **kwargs: Any) -> Job | None:
        seen.append(worker._progress_at)
        return claim(*args, **kwargs)

    monkeypatch.setattr(worker.store, "claim", noting_claim)
    worker.step(max_wait=0)
    assert len(seen) >= 3 and seen[0] < seen[1] < seen[2]
