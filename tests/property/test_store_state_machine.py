"""A stateful model of the Store contract (storage/base.py), run against every backend.

Hypothesis drives random sequences of enqueue, claim, heartbeat, complete, fail,
release, clock advances, recover, retry_dead and cancel; after every step the
store must agree with a plain-Python model of what each job's state should be.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from queuectl.errors import DuplicateJob, JobNotFound, WrongState
from queuectl.models import Job, JobState, NewJob, WorkerInfo
from queuectl.storage.base import Store
from queuectl.storage.sqlite import SQLiteStore
from tests.helpers import FakeClock
from tests.pg import fresh_schema, require_pg

LEASE = 10.0  # seconds
STALE = 1_000_000.0  # worker rows are never pruned by age here
WORKERS = ("w1", "w2", "w3")

#: Opens a fresh, empty store on the given fake clock.
StoreOpener = Callable[[FakeClock], Store]


@dataclass
class ModelJob:
    """What the store should hold for one job."""

    id: str
    seq: int
    max_retries: int
    priority: int
    state: JobState = JobState.PENDING
    attempts: int = 0
    runs: int = 0
    recoveries: int = 0
    worker_id: str | None = None
    next_attempt_at: float | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True)
class Token:
    """One claimed run: what a worker names in fenced calls."""

    job_id: str
    run: int
    worker_id: str


@dataclass
class Model:
    jobs: dict[str, ModelJob] = field(default_factory=dict)

    def holds(self, token: Token) -> bool:
        job = self.jobs[token.job_id]
        return (
            job.state is JobState.RUNNING
            and job.runs == token.run
            and job.worker_id == token.worker_id
        )


def worker_info(worker_id: str, now: float) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="model-host",
        pid=4242,
        started_at=now,
        last_heartbeat=now,
        concurrency=1,
        queues=(),
        stop_requested=False,
    )


def pick(items: list[Token], index: int) -> Token:
    return items[index % len(items)]


class StoreMachine(RuleBasedStateMachine):
    """Subclassed per backend with `opener` set."""

    opener: StoreOpener

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = type(self).opener(self.clock)
        self.model = Model()
        self.tokens: list[Token] = []
        self.seq = itertools.count()

    def teardown(self) -> None:
        self.store.close()

    # -- helpers ---------------------------------------------------------------------------

    def snapshot(self) -> list[Job]:
        return self.store.list_jobs()

    def fenced(
        self, token: Token, call: Callable[[], bool], apply: Callable[[ModelJob], None]
    ) -> None:
        """Run a fenced call; a stale token must get False and change nothing."""
        current = self.model.holds(token)
        before = self.snapshot()
        result = call()
        if current:
            assert result is True, f"{token} holds the job but the call was refused"
            apply(self.model.jobs[token.job_id])
        else:
            assert result is False, f"stale {token} was accepted"
            assert self.snapshot() == before, f"stale {token} changed the store"

    def some_job_id(self, index: int, unknown: bool) -> str:
        """A known job's id, or (when asked, or when there are none) an unknown one."""
        known = sorted(self.model.jobs)
        return "zz-unknown" if unknown or not known else known[index % len(known)]

    # -- rules -----------------------------------------------------------------------------

    @rule(
        specs=st.lists(
            st.tuples(
                st.text(alphabet="abcd", min_size=1, max_size=2),
                st.integers(min_value=0, max_value=3),
                st.integers(min_value=-2, max_value=2),
                st.sampled_from([None, 0.0, 5.0]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def enqueue(self, specs: list[tuple[str, int, int, float | None]]) -> None:
        now = self.clock()
        jobs = [
            NewJob(
                id=job_id,
                command=f"echo {job_id}",
                max_retries=retries,
                priority=priority,
                run_at=None if delay is None else now + delay,
            )
            for job_id, retries, priority, delay in specs
        ]
        ids = [j.id for j in jobs]
        duplicate = len(set(ids)) < len(ids) or any(i in self.model.jobs for i in ids)
        before = self.snapshot()
        if duplicate:
            with pytest.raises(DuplicateJob):
                self.store.enqueue(jobs)
            assert self.snapshot() == before, "a refused batch stored something"
            return
        self.store.enqueue(jobs)
        for job in jobs:
            self.model.jobs[job.id] = ModelJob(
                id=job.id,
                seq=next(self.seq),
                max_retries=job.max_retries,
                priority=job.priority,
                next_attempt_at=now if job.run_at is None else job.run_at,
            )

    @rule(worker=st.sampled_from(WORKERS))
    def claim(self, worker: str) -> None:
        now = self.clock()
        runnable = [
            j
            for j in self.model.jobs.values()
            if j.state in (JobState.PENDING, JobState.FAILED)
            and j.next_attempt_at is not None
            and j.next_attempt_at <= now
        ]
        expected = min(runnable, key=lambda j: (-j.priority, j.seq), default=None)
        got = self.store.claim(worker, (), LEASE)
        if expected is None:
            assert got is None, f"claimed {got and got.id} with nothing runnable"
            return
        assert got is not None, f"expected to claim {expected.id}"
        assert got.id == expected.id, f"claimed {got.id}, expected {expected.id}"
        expected.state = JobState.RUNNING
        expected.runs += 1
        expected.worker_id = worker
        expected.lease_expires_at = now + LEASE
        assert got.runs == expected.runs
        assert got.state is JobState.RUNNING and got.worker_id == worker
        self.tokens.append(Token(got.id, got.runs, worker))

    @rule(worker=st.sampled_from(WORKERS), include=st.lists(st.integers(0, 50), max_size=3))
    def heartbeat(self, worker: str, include: list[int]) -> None:
        now = self.clock()
        ids = sorted({pick(self.tokens, i).job_id for i in include} if self.tokens else set())
        beat = self.store.heartbeat(worker_info(worker, now), LEASE, ids)
        held = {
            i
            for i in ids
            if self.model.jobs[i].state is JobState.RUNNING
            and self.model.jobs[i].worker_id == worker
        }
        assert beat.held_job_ids == held
        for i in held:
            self.model.jobs[i].lease_expires_at = now + LEASE

    @precondition(lambda self: bool(self.tokens))
    @rule(index=st.integers(0, 1000), exit_code=st.integers(0, 3))
    def complete(self, index: int, exit_code: int) -> None:
        token = pick(self.tokens, index)

        def apply(job: ModelJob) -> None:
            job.state = JobState.COMPLETED
            job.attempts += 1
            job.next_attempt_at = None
            job.lease_expires_at = None

        self.fenced(
            token,
            lambda: self.store.complete(token.job_id, token.run, token.worker_id, exit_code),
            apply,
        )

    @precondition(lambda self: bool(self.tokens))
    @rule(index=st.integers(0, 1000), retry_in=st.sampled_from([0.0, 1.0, 4.0, 30.0]))
    def fail(self, index: int, retry_in: float) -> None:
        """Fail as the retry policy decides: dead once attempts reach max_retries."""
        token = pick(self.tokens, index)
        job = self.model.jobs[token.job_id]
        attempts = job.attempts + 1
        dead = attempts >= job.max_retries
        now = self.clock()

        def apply(job: ModelJob) -> None:
            job.attempts = attempts
            job.lease_expires_at = None
            if dead:
                job.state = JobState.DEAD
                job.next_attempt_at = None
            else:
                job.state = JobState.FAILED
                job.next_attempt_at = now + retry_in

        self.fenced(
            token,
            lambda: self.store.fail(
                token.job_id,
                token.run,
                token.worker_id,
                attempts=attempts,
                dead=dead,
                retry_in=retry_in,
                exit_code=1,
                error="exit 1",
            ),
            apply,
        )

    @precondition(lambda self: bool(self.tokens))
    @rule(index=st.integers(0, 1000))
    def release(self, index: int) -> None:
        token = pick(self.tokens, index)
        now = self.clock()

        def apply(job: ModelJob) -> None:
            job.state = JobState.PENDING
            job.next_attempt_at = now
            job.lease_expires_at = None

        self.fenced(
            token,
            lambda: self.store.release(token.job_id, token.run, token.worker_id, "stopping"),
            apply,
        )

    @rule(seconds=st.sampled_from([1.0, 3.0, 5.0, 11.0, 31.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(lost=st.lists(st.sampled_from(WORKERS), max_size=1, unique=True))
    def recover(self, lost: list[str]) -> None:
        now = self.clock()
        expected: dict[str, JobState] = {}
        for job in self.model.jobs.values():
            if job.state is not JobState.RUNNING:
                continue
            assert job.lease_expires_at is not None
            if job.lease_expires_at < now or job.worker_id in lost:
                job.recoveries += 1
                job.lease_expires_at = None
                if job.recoveries >= max(job.max_retries, 1):
                    job.state = JobState.DEAD
                    job.next_attempt_at = None
                else:
                    job.state = JobState.PENDING
                    job.next_attempt_at = now
                expected[job.id] = job.state
        recovered = self.store.recover(lost, STALE)
        assert {r.id: r.state for r in recovered} == expected

    @rule(index=st.integers(0, 1000), unknown=st.booleans())
    def retry_dead(self, index: int, unknown: bool) -> None:
        job_id = self.some_job_id(index, unknown)
        job = self.model.jobs.get(job_id)
        before = self.snapshot()
        if job is None:
            with pytest.raises(JobNotFound):
                self.store.retry_dead(job_id)
        elif job.state is not JobState.DEAD:
            with pytest.raises(WrongState):
                self.store.retry_dead(job_id)
        else:
            got = self.store.retry_dead(job_id)
            job.state = JobState.PENDING
            job.attempts = 0
            job.recoveries = 0
            job.next_attempt_at = self.clock()
            assert got.state is JobState.PENDING and got.attempts == 0
            return
        assert self.snapshot() == before

    @rule(index=st.integers(0, 1000), unknown=st.booleans())
    def cancel(self, index: int, unknown: bool) -> None:
        job_id = self.some_job_id(index, unknown)
        job = self.model.jobs.get(job_id)
        before = self.snapshot()
        if job is None:
            with pytest.raises(JobNotFound):
                self.store.cancel(job_id)
        elif job.state not in (JobState.PENDING, JobState.FAILED):
            with pytest.raises(WrongState):
                self.store.cancel(job_id)
        else:
            got = self.store.cancel(job_id)
            job.state = JobState.CANCELED
            job.next_attempt_at = None
            assert got.state is JobState.CANCELED
            return
        assert self.snapshot() == before

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def jobs_match_the_model(self) -> None:
        stored = self.store.list_jobs()
        expected = sorted(self.model.jobs.values(), key=lambda j: j.seq)
        assert [j.id for j in stored] == [j.id for j in expected], "ids or enqueue order differ"
        for got, want in zip(stored, expected, strict=True):
            where = f"job {got.id}"
            assert got.state is want.state, f"{where}: {got.state} != {want.state}"
            assert got.attempts == want.attempts, where
            assert got.runs == want.runs, where
            assert got.recoveries == want.recoveries, where
            assert got.max_retries == want.max_retries, where
            assert got.priority == want.priority, where
            if want.state in (JobState.PENDING, JobState.FAILED):
                assert got.next_attempt_at == pytest.approx(want.next_attempt_at, abs=1e-3), where
            if want.state is JobState.RUNNING:
                assert got.worker_id == want.worker_id, where
                assert got.lease_expires_at == pytest.approx(want.lease_expires_at, abs=1e-3), where

    @invariant()
    def retry_limits_hold(self) -> None:
        for job in self.store.list_jobs():
            if job.state is JobState.DEAD:
                assert job.attempts >= job.max_retries or job.recoveries >= max(
                    job.max_retries, 1
                ), f"{job.id} is dead too early: {job}"
            elif job.state is JobState.COMPLETED:
                # max_retries failed runs are allowed, so the last success can be run
                # max_retries + 1; but the job dies at attempts == max_retries failures.
                assert job.attempts <= max(job.max_retries, 1), f"{job.id} ran too often: {job}"
            else:
                assert job.attempts < max(job.max_retries, 1) or job.attempts == 0, (
                    f"{job.id} ran too often yet is not dead: {job}"
                )

    @invariant()
    def no_job_runs_twice(self) -> None:
        holders: dict[str, list[Token]] = {}
        for token in self.tokens:
            if self.model.holds(token):
                holders.setdefault(token.job_id, []).append(token)
        assert all(len(h) == 1 for h in holders.values()), holders
        running = {j.id: j.worker_id for j in self.store.list_jobs() if j.state is JobState.RUNNING}
        assert running == {i: h[0].worker_id for i, h in holders.items()}

    @invariant()
    def counts_match_the_model(self) -> None:
        expected: dict[JobState, int] = {}
        for job in self.model.jobs.values():
            expected[job.state] = expected.get(job.state, 0) + 1
        counts = {s: n for s, n in self.store.count_by_state().items() if n}
        assert counts == expected


def run_machine(
    opener: StoreOpener,
    examples: int,
    steps: int,
    phases: Sequence[Phase] = tuple(Phase),
    derandomize: bool = False,
) -> None:
    machine = type("Machine", (StoreMachine,), {"opener": staticmethod(opener)})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
            phases=phases,
            derandomize=derandomize,
        ),
    )


def test_sqlite_store_follows_the_model(tmp_path: Path) -> None:
    counter = itertools.count()

    def opener(clock: FakeClock) -> Store:
        return SQLiteStore(tmp_path / f"model-{next(counter)}.db", clock=clock, durable=False)

    run_machine(opener, examples=60, steps=50)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One migrated PostgreSQL schema for the whole module; examples truncate it."""
    require_pg()
    from queuectl.storage.postgres import PostgresStore

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_schema())
        PostgresStore(url, require_schema=False).migrate_and_close()
        yield url


def test_postgres_store_follows_the_model(pg_url: str) -> None:
    import psycopg

    from queuectl.storage.postgres import PostgresStore

    def opener(clock: FakeClock) -> Store:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("TRUNCATE jobs, workers, config")
        return PostgresStore(pg_url, test_clock=clock)

    run_machine(opener, examples=20, steps=40)


def test_the_model_notices_a_wrong_store(tmp_path: Path) -> None:
    """The machine is not vacuous: a store that records wrong attempts is caught."""

    class MiscountsFailures(SQLiteStore):
        """Records one attempt too many for every failed run."""

        def fail(
            self,
            job_id: str,
            run: int,
            worker_id: str,
            *,
            attempts: int,
            dead: bool,
            retry_in: float,
            exit_code: int | None,
            error: str,
        ) -> bool:
            return super().fail(
                job_id,
                run,
                worker_id,
                attempts=attempts + 1,
                dead=dead,
                retry_in=retry_in,
                exit_code=exit_code,
                error=error,
            )

    counter = itertools.count()

    def opener(clock: FakeClock) -> Store:
        return MiscountsFailures(tmp_path / f"bad-{next(counter)}.db", clock=clock, durable=False)

    # Every accepted failure exposes this bug (unlike a fencing bug, which needs a
    # stale run to be replayed), but a random run of 100 examples missed it about one
    # time in 15: none of its `fail` calls named a run that still held its job. So the
    # examples are derandomized (the same ones every time) and more of them are
    # allowed; the run stops at the first that exposes the bug. Finding it is the
    # point; shrinking it to a minimal example only costs time.
    with pytest.raises((AssertionError, ExceptionGroup)):
        run_machine(opener, examples=300, steps=30, phases=(Phase.generate,), derandomize=True)
