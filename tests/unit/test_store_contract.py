"""The storage contract (storage/base.py), written only against the `Store` interface.

Every test uses the parametrised `store` fixture and the fake `clock`, so the same
suite runs unchanged against each backend. Expected times are taken from
`store.now()`, never from the backend's internals.
"""

from __future__ import annotations

from typing import Any

import pytest

from queuectl.errors import DuplicateJob, JobNotFound, WrongState
from queuectl.models import Job, JobState, NewJob, WorkerInfo
from queuectl.storage.base import Store, new_job_row
from tests.helpers import FakeClock

LEASE = 15.0  # seconds
STALE = 30.0  # seconds a silent worker row is kept by recover()


def at(ts: float) -> Any:
    """Equal to the epoch time `ts` within a millisecond (pytest.approx's default
    relative tolerance would allow half an hour at today's epoch)."""
    return pytest.approx(ts, rel=0, abs=0.001)


def new_job(
    job_id: str,
    command: str = "true",
    *,
    max_retries: int = 3,
    priority: int = 0,
    queue: str = "default",
    timeout: float | None = None,
    run_at: float | None = None,
) -> NewJob:
    return NewJob(
        id=job_id,
        command=command,
        max_retries=max_retries,
        priority=priority,
        queue=queue,
        timeout=timeout,
        run_at=run_at,
    )


def worker(store: Store, worker_id: str, queues: tuple[str, ...] = ()) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="test-host",
        pid=4242,
        started_at=store.now(),
        last_heartbeat=store.now(),
        concurrency=1,
        queues=queues,
        stop_requested=False,
    )


def claim(store: Store, worker_id: str = "w1", queues: tuple[str, ...] = ()) -> Job:
    """Claim and insist that something was claimed."""
    job = store.claim(worker_id, queues, LEASE)
    assert job is not None, "expected a runnable job"
    return job


def ids(jobs: list[Job]) -> list[str]:
    return [j.id for j in jobs]


def expire_and_recover(store: Store, clock: FakeClock) -> None:
    clock.advance(LEASE + 1)
    store.recover([], STALE)


def fail(store: Store, job: Job, worker_id: str = "w1", *, dead: bool = False) -> bool:
    return store.fail(
        job.id,
        job.runs,
        worker_id,
        attempts=job.attempts + 1,
        dead=dead,
        retry_in=2.0,
        exit_code=1,
        error="exit code 1",
    )


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_stores_pending_jobs_runnable_now(store: Store) -> None:
    now = store.now()
    assert store.enqueue([new_job("a", "echo hi", max_retries=5, priority=2, timeout=9.5)]) == at(
        now
    )
    job = store.get_job("a")
    assert job.id == "a"
    assert job.command == "echo hi"
    assert job.state is JobState.PENDING
    assert job.attempts == 0
    assert job.max_retries == 5
    assert job.priority == 2
    assert job.queue == "default"
    assert job.timeout == 9.5
    assert job.next_attempt_at == at(now)
    assert job.created_at == at(now)
    assert job.runs == 0
    assert job.recoveries == 0
    assert job.worker_id is None


def test_enqueue_returns_the_time_that_gives_what_get_job_reads(store: Store) -> None:
    # `enqueue --json` prints new_job_row(job, that time) instead of reading the jobs back.
    jobs = [
        new_job("a", "echo hi", timeout=9.5),
        new_job("b", queue="other", run_at=store.now() + 60),
    ]
    stored_at = store.enqueue(jobs)
    assert [store.get_job(j.id) for j in jobs] == [new_job_row(j, stored_at) for j in jobs]


def test_enqueue_with_run_at_sets_next_attempt_at(store: Store) -> None:
    later = store.now() + 3600
    store.enqueue([new_job("a", run_at=later)])
    assert store.get_job("a").next_attempt_at == at(later)


def test_enqueue_of_an_existing_id_stores_none(store: Store) -> None:
    store.enqueue([new_job("a", "echo first")])
    with pytest.raises(DuplicateJob, match="'a'"):
        store.enqueue([new_job("b"), new_job("a", "echo second"), new_job("c")])
    assert ids(store.list_jobs()) == ["a"]
    assert store.get_job("a").command == "echo first"


def test_enqueue_of_a_batch_repeating_an_id_stores_none(store: Store) -> None:
    with pytest.raises(DuplicateJob, match="'x'"):
        store.enqueue([new_job("x"), new_job("y"), new_job("x")])
    assert store.list_jobs() == []
    with pytest.raises(JobNotFound):
        store.get_job("y")


def test_get_job_of_an_unknown_id(store: Store) -> None:
    with pytest.raises(JobNotFound):
        store.get_job("nope")


# -- claim ------------------------------------------------------------------------------------


def test_claim_of_an_empty_queue_returns_none(store: Store) -> None:
    assert store.claim("w1", (), LEASE) is None


def test_claim_marks_the_job_running_for_the_worker(store: Store) -> None:
    store.enqueue([new_job("a")])
    job = claim(store, "w1")
    now = store.now()
    assert job.id == "a"
    assert job.state is JobState.RUNNING
    assert job.worker_id == "w1"
    assert job.runs == 1
    assert job.attempts == 0
    assert job.started_at == at(now)
    assert job.lease_expires_at == at(now + LEASE)
    assert store.get_job("a") == job


def test_claim_order_is_priority_then_fifo(store: Store) -> None:
    # All enqueued at the same (fake) instant: FIFO must not depend on timestamps.
    store.enqueue([new_job("low"), new_job("high-1", priority=5)])
    store.enqueue([new_job("neg", priority=-1), new_job("high-2", priority=5)])
    store.enqueue([new_job("low-2")])
    order = [claim(store).id for _ in range(5)]
    assert order == ["high-1", "high-2", "low", "low-2", "neg"]
    assert store.claim("w1", (), LEASE) is None


def test_claim_waits_for_next_attempt_at(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("later", run_at=store.now() + 10)])
    assert store.claim("w1", (), LEASE) is None
    clock.advance(9.5)
    assert store.claim("w1", (), LEASE) is None
    clock.advance(0.5)  # exactly due: runnable (next_attempt_at <= now)
    assert claim(store).id == "later"


def test_a_due_job_is_claimed_before_a_later_higher_priority_one(store: Store) -> None:
    store.enqueue([new_job("vip", priority=9, run_at=store.now() + 10), new_job("now")])
    assert claim(store).id == "now"
    assert store.claim("w1", (), LEASE) is None


def test_a_running_job_is_never_claimed_again(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("a")])
    claim(store, "w1")
    assert store.claim("w2", (), LEASE) is None
    # Not even after its lease expired: only recover() gives it back.
    clock.advance(LEASE * 3)
    assert store.claim("w2", (), LEASE) is None
    assert store.get_job("a").worker_id == "w1"


def test_two_workers_get_different_jobs(store: Store) -> None:
    store.enqueue([new_job("a"), new_job("b")])
    first = claim(store, "w1")
    second = claim(store, "w2")
    assert {first.id, second.id} == {"a", "b"}
    assert store.claim("w3", (), LEASE) is None


def test_claim_filters_by_queue(store: Store) -> None:
    store.enqueue([new_job("m1", queue="mail"), new_job("r1", queue="reports"), new_job("d1")])
    assert store.claim("w1", ("video",), LEASE) is None
    assert claim(store, queues=("reports",)).id == "r1"
    assert claim(store, queues=("reports", "mail")).id == "m1"
    assert store.claim("w1", ("reports", "mail"), LEASE) is None
    assert claim(store, queues=()).id == "d1"  # empty: every queue


def test_claim_across_several_queues_keeps_priority_then_fifo(store: Store) -> None:
    store.enqueue([new_job("b-old", queue="b"), new_job("a-mid", queue="a")])
    store.enqueue(
        [new_job("b-vip", queue="b", priority=3), new_job("c-vip", queue="c", priority=9)]
    )
    store.enqueue([new_job("a-new", queue="a"), new_job("a-vip", queue="a", priority=3)])
    queues = ("a", "b", "a")  # a repeated name changes nothing
    order = [claim(store, queues=queues).id for _ in range(5)]
    assert order == ["b-vip", "a-vip", "b-old", "a-mid", "a-new"]
    assert store.claim("w1", queues, LEASE) is None
    assert claim(store).id == "c-vip"


def test_claim_in_queues_waits_for_next_attempt_at(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("later", queue="q", priority=5, run_at=store.now() + 10)])
    store.enqueue([new_job("now", queue="q")])
    assert claim(store, queues=("q",)).id == "now"
    assert store.claim("w1", ("q",), LEASE) is None
    clock.advance(10)
    assert claim(store, queues=("q",)).id == "later"


# -- complete / fail / release ------------------------------------------------------------------


def test_complete_marks_completed_and_counts_the_attempt(store: Store) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    assert store.complete("a", job.runs, "w1", 0)
    done = store.get_job("a")
    assert done.state is JobState.COMPLETED
    assert done.attempts == 1
    assert done.exit_code == 0
    assert done.finished_at == at(store.now())
    assert store.claim("w1", (), LEASE) is None


def test_complete_and_claim_completes_the_run_and_claims_the_next_best(store: Store) -> None:
    store.enqueue([new_job("a"), new_job("b"), new_job("c", priority=5), new_job("d")])
    first = claim(store)
    assert first.id == "c"
    completed, following = store.complete_and_claim(
        "c", first.runs, "w1", 0, queues=(), lease_seconds=LEASE
    )
    assert completed
    assert store.get_job("c").state is JobState.COMPLETED
    assert following is not None
    assert following.id == "a"
    assert following.state is JobState.RUNNING
    assert following.worker_id == "w1"
    assert following.lease_expires_at == at(store.now() + LEASE)


def test_complete_and_claim_is_fenced_and_still_claims(store: Store) -> None:
    store.enqueue([new_job("a"), new_job("b", queue="other")])
    job = claim(store)
    completed, following = store.complete_and_claim(
        "a", job.runs + 1, "w1", 0, queues=("other",), lease_seconds=LEASE
    )
    assert not completed  # a stale run's result is discarded ...
    assert store.get_job("a").state is JobState.RUNNING
    assert following is not None  # ... and the claim keeps its own contract
    assert following.id == "b"


def test_complete_and_claim_on_an_emptied_queue_claims_nothing(store: Store) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    assert store.complete_and_claim("a", job.runs, "w1", 0, queues=(), lease_seconds=LEASE) == (
        True,
        None,
    )
    assert store.get_job("a").state is JobState.COMPLETED


def test_fail_makes_the_job_failed_until_retry_in_has_passed(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    assert store.fail(
        "a", job.runs, "w1", attempts=1, dead=False, retry_in=4.0, exit_code=3, error="exit code 3"
    )
    failed = store.get_job("a")
    assert failed.state is JobState.FAILED
    assert failed.attempts == 1
    assert failed.exit_code == 3
    assert failed.last_error == "exit code 3"
    assert failed.next_attempt_at == at(store.now() + 4.0)
    assert store.claim("w1", (), LEASE) is None
    assert store.next_due_at(()) == at(store.now() + 4.0)
    clock.advance(4.0)
    again = claim(store, "w2")
    assert again.id == "a"
    assert again.runs == 2
    assert again.attempts == 1


def test_fail_dead_sends_the_job_to_the_dlq(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("a", max_retries=1)])
    job = claim(store)
    assert store.fail(
        "a", job.runs, "w1", attempts=1, dead=True, retry_in=0.0, exit_code=None, error="killed"
    )
    dead = store.get_job("a")
    assert dead.state is JobState.DEAD
    assert dead.attempts == 1
    assert dead.last_error == "killed"
    assert ids(store.list_jobs(JobState.DEAD)) == ["a"]
    clock.advance(3600)
    assert store.claim("w1", (), LEASE) is None


def test_release_puts_the_job_back_without_charging(store: Store) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    assert store.release("a", job.runs, "w1", "worker stopping")
    released = store.get_job("a")
    assert released.state is JobState.PENDING
    assert released.attempts == 0
    assert released.next_attempt_at == at(store.now())
    assert claim(store, "w2").runs == 2


def test_attempts_accumulate_over_failures_then_success(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("a")])
    for expected in (1, 2):
        assert fail(store, claim(store))
        assert store.get_job("a").attempts == expected
        clock.advance(2.0)
    assert store.complete("a", claim(store).runs, "w1", 0)
    assert store.get_job("a").attempts == 3


def _taken_over(store: Store, clock: FakeClock) -> tuple[Job, Job]:
    """Run 1 by w1 lost its lease; w2 now holds run 2. Returns (old, new)."""
    store.enqueue([new_job("a")])
    old = claim(store, "w1")
    expire_and_recover(store, clock)
    new = claim(store, "w2")
    assert new.runs == old.runs + 1
    return old, new


@pytest.mark.parametrize(
    "finish",
    ["complete", "fail", "fail-dead", "release"],
)
@pytest.mark.parametrize(
    "who",
    ["stale run", "other worker", "stale run of other worker"],
)
def test_finishing_is_fenced(store: Store, clock: FakeClock, finish: str, who: str) -> None:
    old, new = _taken_over(store, clock)
    run, worker_id = {
        "stale run": (old.runs, "w2"),
        "other worker": (new.runs, "w1"),
        "stale run of other worker": (old.runs, "w1"),
    }[who]
    before = store.get_job("a")
    if finish == "complete":
        ok = store.complete("a", run, worker_id, 0)
    elif finish == "release":
        ok = store.release("a", run, worker_id, "stop")
    else:
        ok = store.fail(
            "a",
            run,
            worker_id,
            attempts=5,
            dead=finish == "fail-dead",
            retry_in=1.0,
            exit_code=1,
            error="x",
        )
    assert ok is False
    assert store.get_job("a") == before
    # The real owner can still finish.
    assert store.complete("a", new.runs, "w2", 0)


def test_finishing_a_job_that_is_no_longer_running_is_refused(
    store: Store, clock: FakeClock
) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    expire_and_recover(store, clock)  # pending again, nobody holds it
    before = store.get_job("a")
    assert not store.complete("a", job.runs, "w1", 0)
    assert not fail(store, job)
    assert not store.release("a", job.runs, "w1", "stop")
    assert store.get_job("a") == before


def test_finishing_twice_is_refused(store: Store) -> None:
    store.enqueue([new_job("a")])
    job = claim(store)
    assert store.complete("a", job.runs, "w1", 0)
    done = store.get_job("a")
    assert not store.complete("a", job.runs, "w1", 0)
    assert not fail(store, job)
    assert store.get_job("a") == done


def test_finishing_an_unknown_job_returns_false(store: Store) -> None:
    assert store.complete("ghost", 1, "w1", 0) is False
    assert store.release("ghost", 1, "w1", "stop") is False


# -- heartbeat and recovery -------------------------------------------------------------------


def test_heartbeat_renews_leases_and_reports_held_jobs(store: Store, clock: FakeClock) -> None:
    w1 = worker(store, "w1")
    store.register_worker(w1)
    store.enqueue([new_job("a"), new_job("b"), new_job("c")])
    claim(store, "w1")
    claim(store, "w1")
    claim(store, "w2")
    clock.advance(LEASE - 1)
    beat = store.heartbeat(w1, LEASE, ["a", "b"])
    assert beat.held_job_ids == frozenset({"a", "b"})
    assert beat.stop_requested is False
    assert store.get_job("a").lease_expires_at == at(store.now() + LEASE)
    clock.advance(LEASE - 1)  # past the first lease, within the renewed one
    recovered = store.recover([], STALE)
    assert [r.id for r in recovered] == ["c"]  # w2 never renewed
    assert store.get_job("a").state is JobState.RUNNING
    assert store.get_job("b").state is JobState.RUNNING


def test_recover_never_takes_back_the_callers_own_jobs(store: Store, clock: FakeClock) -> None:
    """A live worker whose leases ran out during a stall must record the runs that
    ended meanwhile, not take its own jobs back as a lost worker's."""
    store.enqueue([new_job("mine"), new_job("theirs")])
    claim(store, "w1")
    claim(store, "w2")
    clock.advance(LEASE + 1)  # both leases have run out
    recovered = store.recover([], STALE, exclude="w1")
    assert [r.id for r in recovered] == ["theirs"]
    assert store.get_job("mine").state is JobState.RUNNING
    assert store.get_job("mine").recoveries == 0
    assert store.complete("mine", 1, "w1", 0)  # its outcome is still its to record


def test_heartbeat_renews_only_the_jobs_it_lists(store: Store, clock: FakeClock) -> None:
    """A job the worker holds but does not run (a claim whose reply was lost) expires."""
    w1 = worker(store, "w1")
    store.enqueue([new_job("runs"), new_job("orphan"), new_job("theirs")])
    claim(store, "w1")
    claim(store, "w1")
    claim(store, "w2")
    clock.advance(LEASE - 1)
    beat = store.heartbeat(w1, LEASE, ["runs", "theirs", "unknown"])
    assert beat.held_job_ids == frozenset({"runs"})  # only listed jobs it holds
    clock.advance(2)
    recovered = {r.id for r in store.recover([], STALE)}
    assert recovered == {"orphan", "theirs"}
    assert store.get_job("runs").state is JobState.RUNNING
    assert store.get_job("orphan").state is JobState.PENDING
    assert store.get_job("theirs").state is JobState.PENDING


def test_heartbeat_does_not_report_a_job_taken_over(store: Store, clock: FakeClock) -> None:
    _taken_over(store, clock)
    beat = store.heartbeat(worker(store, "w1"), LEASE, ["a"])
    assert "a" not in beat.held_job_ids
    assert store.heartbeat(worker(store, "w2"), LEASE, ["a"]).held_job_ids == frozenset({"a"})


def test_heartbeat_registers_a_pruned_worker_again(store: Store, clock: FakeClock) -> None:
    w1 = worker(store, "w1")
    store.register_worker(w1)
    clock.advance(STALE + 1)
    store.recover([], STALE)
    assert store.list_workers() == []
    store.heartbeat(w1, LEASE, [])
    assert [w.id for w in store.list_workers()] == ["w1"]


def test_recover_after_lease_expiry_is_not_charged(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("a", max_retries=3)])
    claim(store, "w1")
    clock.advance(LEASE - 0.5)
    assert store.recover([], STALE) == []  # lease still valid
    assert store.get_job("a").state is JobState.RUNNING
    clock.advance(1.0)
    [recovered] = store.recover([], STALE)
    assert (recovered.id, recovered.worker_id, recovered.state) == ("a", "w1", JobState.PENDING)
    job = store.get_job("a")
    assert job.state is JobState.PENDING
    assert job.attempts == 0
    assert job.recoveries == 1
    assert job.next_attempt_at == at(store.now())
    assert job.last_error  # says why
    assert claim(store, "w2").runs == 2


def test_recover_unrenewed_takes_back_exactly_the_named_leases(
    store: Store, clock: FakeClock
) -> None:
    """The caller watched these leases on its monotonic clock: the store's own clock,
    however far it jumped, decides nothing."""
    store.enqueue([new_job("watched"), new_job("other"), new_job("lost")])
    claim(store, "w1")
    claim(store, "w1")
    claim(store, "w2")
    clock.advance(3600)  # every lease has expired by the clock
    recovered = store.recover(["w2"], STALE, unrenewed=["watched"])
    assert sorted(r.id for r in recovered) == ["lost", "watched"]
    assert store.get_job("other").state is JobState.RUNNING
    assert store.get_job("watched").state is JobState.PENDING
    assert store.get_job("watched").recoveries == 1


def test_recover_unrenewed_takes_a_lease_back_before_it_expires(store: Store) -> None:
    store.enqueue([new_job("a")])
    claim(store, "w1")
    [recovered] = store.recover([], STALE, unrenewed=["a"])
    assert (recovered.id, recovered.state) == ("a", JobState.PENDING)


def test_recover_of_a_lost_worker_is_immediate(store: Store) -> None:
    store.register_worker(worker(store, "w1"))
    store.register_worker(worker(store, "w2"))
    store.enqueue([new_job("a"), new_job("b")])
    claim(store, "w1")
    claim(store, "w2")
    recovered = store.recover(["w1"], STALE)  # lease still fresh
    assert [(r.id, r.state) for r in recovered] == [("a", JobState.PENDING)]
    assert store.get_job("a").state is JobState.PENDING
    assert store.get_job("a").recoveries == 1
    assert store.get_job("b").state is JobState.RUNNING
    assert [w.id for w in store.list_workers()] == ["w2"]  # the lost worker's row is gone


def test_recover_prunes_silent_workers(store: Store, clock: FakeClock) -> None:
    store.register_worker(worker(store, "quiet"))
    store.register_worker(worker(store, "busy"))
    clock.advance(STALE - 1)
    store.heartbeat(worker(store, "busy"), LEASE, [])
    clock.advance(2)
    store.recover([], STALE)
    assert [w.id for w in store.list_workers()] == ["busy"]


@pytest.mark.parametrize(("max_retries", "limit"), [(3, 3), (1, 1), (0, 1)])
def test_a_job_that_keeps_losing_its_worker_goes_dead(
    store: Store, clock: FakeClock, max_retries: int, limit: int
) -> None:
    store.enqueue([new_job("a", max_retries=max_retries)])
    for n in range(1, limit):
        claim(store, f"w{n}")
        clock.advance(LEASE + 1)
        [r] = store.recover([], STALE)
        assert r.state is JobState.PENDING
    claim(store, "w-last")
    clock.advance(LEASE + 1)
    [r] = store.recover([], STALE)
    assert r.state is JobState.DEAD
    job = store.get_job("a")
    assert job.state is JobState.DEAD
    assert job.recoveries == limit
    assert job.attempts == 0
    assert job.last_error is not None
    assert "lost" in job.last_error
    assert store.claim("w1", (), LEASE) is None


# -- dead-letter queue, cancel ------------------------------------------------------------------


def _dead(store: Store, job_id: str = "a") -> Job:
    store.enqueue([new_job(job_id, max_retries=1)])
    job = claim(store)
    assert store.fail(
        job_id, job.runs, "w1", attempts=1, dead=True, retry_in=0, exit_code=1, error="x"
    )
    return store.get_job(job_id)


def test_retry_dead_resets_attempts_and_makes_it_runnable(store: Store) -> None:
    assert _dead(store).attempts == 1
    job = store.retry_dead("a")
    assert job.state is JobState.PENDING
    assert job.attempts == 0
    assert job.recoveries == 0
    assert job.next_attempt_at == at(store.now())
    assert store.get_job("a") == job
    assert claim(store).id == "a"


def test_retry_dead_resets_recoveries(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("a", max_retries=1)])
    claim(store)
    expire_and_recover(store, clock)
    assert store.get_job("a").state is JobState.DEAD
    job = store.retry_dead("a")
    assert (job.state, job.recoveries, job.attempts) == (JobState.PENDING, 0, 0)
    # It gets its full allowance of recoveries again.
    claim(store)
    clock.advance(LEASE + 1)
    [r] = store.recover([], STALE)
    assert r.state is JobState.DEAD


def test_retry_dead_of_an_unknown_job(store: Store) -> None:
    with pytest.raises(JobNotFound):
        store.retry_dead("nope")


def test_retry_dead_of_a_job_that_is_not_dead(store: Store) -> None:
    store.enqueue([new_job("p"), new_job("r"), new_job("c")])
    claim(store)  # p running
    claim(store)  # r running
    store.complete("r", 1, "w1", 0)
    for job_id in ("p", "r"):
        before = store.get_job(job_id)
        with pytest.raises(WrongState):
            store.retry_dead(job_id)
        assert store.get_job(job_id) == before
    with pytest.raises(WrongState):
        store.retry_dead("c")  # pending


def test_cancel_pending_and_failed_jobs(store: Store, clock: FakeClock) -> None:
    store.enqueue([new_job("p"), new_job("f")])
    assert store.cancel("p").state is JobState.CANCELED
    f = claim(store)
    assert fail(store, f)
    assert store.cancel("f").state is JobState.CANCELED
    clock.advance(3600)
    assert store.claim("w1", (), LEASE) is None
    assert store.next_due_at(()) is None
    assert store.get_job("p").state is JobState.CANCELED


def test_cancel_refuses_other_states(store: Store) -> None:
    store.enqueue([new_job("run"), new_job("done")])
    claim(store)
    store.complete("done", claim(store).runs, "w1", 0)
    _dead(store, "dead")
    for job_id in ("run", "done", "dead"):
        before = store.get_job(job_id)
        with pytest.raises(WrongState):
            store.cancel(job_id)
        assert store.get_job(job_id) == before
    with pytest.raises(JobNotFound):
        store.cancel("nope")


def test_cancel_jobs_changes_all_or_none(store: Store) -> None:
    store.enqueue([new_job("a"), new_job("b"), new_job("run")])
    claim(store)  # a is running
    before = store.list_jobs()
    for refused, error in (("a", WrongState), ("nope", JobNotFound)):
        with pytest.raises(error, match=refused):
            store.cancel_jobs(["b", refused, "run"])
        assert store.list_jobs() == before  # b was canceled, then rolled back
    jobs = store.cancel_jobs(["b", "run"])
    assert [(j.id, j.state) for j in jobs] == [("b", JobState.CANCELED), ("run", JobState.CANCELED)]
    assert [j.state for j in store.list_jobs()] == [
        JobState.RUNNING,
        JobState.CANCELED,
        JobState.CANCELED,
    ]


def test_retry_dead_jobs_changes_all_or_none(store: Store) -> None:
    _dead(store, "x")
    _dead(store, "y")
    store.enqueue([new_job("p")])
    before = store.list_jobs()
    for refused, error in (("p", WrongState), ("nope", JobNotFound)):
        with pytest.raises(error, match=refused):
            store.retry_dead_jobs(["x", refused, "y"])
        assert store.list_jobs() == before
    jobs = store.retry_dead_jobs(["x", "y"])
    assert [(j.id, j.state, j.attempts) for j in jobs] == [
        ("x", JobState.PENDING, 0),
        ("y", JobState.PENDING, 0),
    ]


# -- reading --------------------------------------------------------------------------------


def test_count_by_state(store: Store) -> None:
    assert all(n == 0 for n in store.count_by_state().values())
    store.enqueue([new_job(f"j{i}") for i in range(5)])
    claim(store)
    done = claim(store)
    store.complete(done.id, done.runs, "w1", 0)
    assert fail(store, claim(store))
    counts = store.count_by_state()
    assert counts.get(JobState.PENDING) == 2
    assert counts.get(JobState.RUNNING) == 1
    assert counts.get(JobState.COMPLETED) == 1
    assert counts.get(JobState.FAILED) == 1
    assert counts.get(JobState.DEAD, 0) == 0


def test_count_by_state_counts_every_state(store: Store) -> None:
    # Claims take jobs in enqueue order: j0 completes, j1 fails, j2 dies, j3 runs.
    store.enqueue([new_job(f"j{i}") for i in range(7)])
    done = claim(store)
    assert store.complete(done.id, done.runs, "w1", 0)
    assert fail(store, claim(store))
    assert fail(store, claim(store), dead=True)
    claim(store)
    store.cancel("j4")
    counts = store.count_by_state()
    expected = {"pending": 2, "running": 1, "completed": 1, "failed": 1, "dead": 1, "canceled": 1}
    assert {state.value: counts.get(state, 0) for state in JobState} == expected


def test_list_jobs_in_enqueue_order_with_filters_and_limit(store: Store) -> None:
    store.enqueue([new_job("a", queue="q1"), new_job("b", priority=9, queue="q2")])
    store.enqueue([new_job("c", queue="q1"), new_job("d", queue="q1")])
    claim(store, queues=("q1",))  # a running
    assert ids(store.list_jobs()) == ["a", "b", "c", "d"]  # enqueue order, not priority
    assert ids(store.list_jobs(limit=2)) == ["a", "b"]
    assert ids(store.list_jobs(queue="q1")) == ["a", "c", "d"]
    assert ids(store.list_jobs(state=JobState.PENDING)) == ["b", "c", "d"]
    assert ids(store.list_jobs(state=JobState.PENDING, queue="q1")) == ["c", "d"]
    assert ids(store.list_jobs(state=JobState.PENDING, queue="q1", limit=1)) == ["c"]
    assert ids(store.list_jobs(state=JobState.RUNNING)) == ["a"]
    assert store.list_jobs(state=JobState.DEAD) == []
    assert store.list_jobs(queue="nope") == []


def test_next_due_at(store: Store, clock: FakeClock) -> None:
    assert store.next_due_at(()) is None
    base = store.now()
    store.enqueue([new_job("late", run_at=base + 50), new_job("soon", run_at=base + 20)])
    store.enqueue([new_job("other", queue="q2", run_at=base + 10)])
    assert store.next_due_at(()) == at(base + 10)
    assert store.next_due_at(("default",)) == at(base + 20)
    assert store.next_due_at(("q2",)) == at(base + 10)
    assert store.next_due_at(("none",)) is None
    clock.advance(20)
    claim(store)  # "other" is due, then "soon" — both taken
    claim(store)
    assert store.next_due_at(()) == at(base + 50)  # running jobs do not count


# -- workers --------------------------------------------------------------------------------


def test_register_and_list_workers_with_current_jobs(store: Store, clock: FakeClock) -> None:
    w1 = worker(store, "w1", queues=("mail",))
    store.register_worker(w1)
    clock.advance(1)
    store.register_worker(worker(store, "w2"))
    store.enqueue([new_job("a", queue="mail"), new_job("b", queue="mail")])
    claim(store, "w1")
    claim(store, "w1")
    listed = store.list_workers()
    assert [w.id for w in listed] == ["w1", "w2"]  # oldest first
    first, second = listed
    assert first.current_jobs == ("a", "b")
    assert second.current_jobs == ()
    assert first.host == "test-host"
    assert first.pid == 4242
    assert first.queues == ("mail",)
    assert first.stop_requested is False
    assert first.last_heartbeat == at(w1.started_at)
    store.complete("a", 1, "w1", 0)
    assert store.list_workers()[0].current_jobs == ("b",)


def test_deregister_worker(store: Store) -> None:
    store.register_worker(worker(store, "w1"))
    store.deregister_worker("w1")
    store.deregister_worker("never-registered")
    assert store.list_workers() == []


def test_request_stop_reaches_the_worker_at_its_heartbeat(store: Store) -> None:
    w1, w2 = worker(store, "w1"), worker(store, "w2")
    store.register_worker(w1)
    store.register_worker(w2)
    assert store.request_stop(["w1", "unknown"]) == 1
    assert store.heartbeat(w1, LEASE, []).stop_requested is True
    assert store.heartbeat(w2, LEASE, []).stop_requested is False
    flags = {w.id: w.stop_requested for w in store.list_workers()}
    assert flags == {"w1": True, "w2": False}
    assert store.request_stop([]) == 0


# -- settings and plumbing ------------------------------------------------------------------


def test_config_get_and_set(store: Store) -> None:
    assert store.get_config() == {}
    store.set_config("max_retries", "5")
    store.set_config("backoff_base", "3.0")
    assert store.get_config() == {"max_retries": "5", "backoff_base": "3.0"}
    store.set_config("max_retries", "0")
    assert store.get_config() == {"max_retries": "0", "backoff_base": "3.0"}


def test_now_follows_the_clock(store: Store, clock: FakeClock) -> None:
    before = store.now()
    clock.advance(42)
    assert store.now() == at(before + 42)


def test_update_config_stores_nothing_when_the_change_refuses(store: Store) -> None:
    store.set_config("max_retries", "3")

    def refuse(stored: dict[str, str]) -> dict[str, str]:
        raise ValueError("no")

    with pytest.raises(ValueError):
        store.update_config(refuse)
    assert store.get_config() == {"max_retries": "3"}
