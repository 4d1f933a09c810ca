"""The storage interface: one contract, implemented by SQLite (and PostgreSQL).

Every method is atomic: it either happens completely or not at all. Methods
that change a running job are *fenced*: they name the run (`job_id`, `run`,
`worker_id`) and do nothing, returning False, when that run no longer holds
the job (its lease was recovered and the job claimed again). Stores take the
time from an injected clock (SQLite) or from the database server (PostgreSQL),
never from the caller, so every host agrees on when a lease expires.

Errors: driver exceptions never escape; they are translated into
`queuectl.errors.StorageError` subclasses at this boundary.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence

from queuectl.errors import WrongState
from queuectl.models import Heartbeat, Job, JobState, NewJob, RecoveredJob, WorkerInfo

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    import threading
    from typing import Any

CHANGE_POLL_MIN = 0.002  # seconds: first re-check of `changed()` while waiting
CHANGE_POLL_MAX = 0.010  # seconds: the cap polling backs off to (bounds pickup latency)


class Store(abc.ABC):
    """Queue-shaped persistence. One instance belongs to one thread."""

    #: Whether every process reads one clock (the database server's). Then a lease
    #: that has expired by `now()` has expired for its holder too. SQLite reads
    #: each process's host clock, which can jump: a jump forward would make live
    #: leases look expired (see the worker's `_unrenewed_leases`).
    shared_clock: bool = False

    #: Short backend name shown by `status` ("sqlite", "postgresql").
    backend: str
    #: Where the data lives, for humans (a path or a URL without password).
    location: str

    # -- jobs ------------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, jobs: Sequence[NewJob]) -> float:
        """Store `jobs` as `pending`, all or nothing, durably before returning.

        A job's `next_attempt_at` is its `run_at`, or now. Raises `DuplicateJob`
        (storing none of them) when any id is already taken or repeated.
        Returns that now (store clock), every job's `created_at`: `new_job_row(job,
        now)` is the job as stored, built only by callers that need it (building
        them took a tenth of an `enqueue --file` that prints only ids).
        """

    @abc.abstractmethod
    def claim(self, worker_id: str, queues: Sequence[str], lease_seconds: float) -> Job | None:
        """Atomically take the best runnable job and mark it `running` for `worker_id`.

        Runnable: `pending` or `failed` with `next_attempt_at <= now`, in one of
        `queues` (all queues when empty). Best: highest `priority`, then oldest.
        The job's `runs` goes up by one (the new run's fencing token) and its lease
        lasts `lease_seconds`. No two callers, in any process, get the same run.
        Returns None when nothing is runnable.
        """

    @abc.abstractmethod
    def complete(self, job_id: str, run: int, worker_id: str, exit_code: int) -> bool:
        """Fenced: the run succeeded; the job is `completed` and `attempts` goes up by one."""

    def complete_and_claim(
        self,
        job_id: str,
        run: int,
        worker_id: str,
        exit_code: int,
        *,
        queues: Sequence[str],
        lease_seconds: float,
    ) -> tuple[bool, Job | None]:
        """`complete()`, then `claim()` for the same worker: a busy worker's step.

        A backend may do both in one transaction (SQLite: one write lock and one
        commit instead of two); either way each part keeps its own contract.
        """
        completed = self.complete(job_id, run, worker_id, exit_code)
        return completed, self.claim(worker_id, queues, lease_seconds)

    @abc.abstractmethod
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
        """Fenced: record a failed run as decided by the retry policy.

        `dead`: the job goes to the DLQ. Otherwise it is `failed` and runnable
        again `retry_in` seconds from now.
        """

    @abc.abstractmethod
    def release(self, job_id: str, run: int, worker_id: str, reason: str) -> bool:
        """Fenced: put an interrupted run back to `pending`, runnable now, not charged."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job:
        """The job with this id; raises `JobNotFound`."""

    @abc.abstractmethod
    def list_jobs(
        self, state: JobState | None = None, queue: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs in enqueue order, optionally filtered; `limit` None means all."""

    @abc.abstractmethod
    def count_by_state(self) -> dict[JobState, int]:
        """Number of jobs in each state (states with none may be missing)."""

    @abc.abstractmethod
    def retry_dead_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Put `dead` jobs back to `pending`, runnable now, with `attempts` and
        `recoveries` reset to 0: all of them in one transaction, or none. Raises
        `JobNotFound`, or `WrongState` (see `refused_retry`), for the first job that
        cannot be retried, having changed nothing."""

    def retry_dead(self, job_id: str) -> Job:
        """`retry_dead_jobs` for one job."""
        return self.retry_dead_jobs([job_id])[0]

    @abc.abstractmethod
    def cancel_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        """Mark `pending` or `failed` jobs `canceled` so they never run: all of them
        in one transaction, or none. Raises `JobNotFound`, or `WrongState` (see
        `refused_cancel`), for the first job that cannot be canceled, having changed
        nothing."""

    def cancel(self, job_id: str) -> Job:
        """`cancel_jobs` for one job."""
        return self.cancel_jobs([job_id])[0]

    @abc.abstractmethod
    def next_due_at(self, queues: Sequence[str]) -> float | None:
        """Earliest `next_attempt_at` of a waiting job in `queues` (all when empty), or None."""

    # -- workers and leases ------------------------------------------------------------------

    @abc.abstractmethod
    def register_worker(self, worker: WorkerInfo) -> None:
        """Record a starting worker (its `last_heartbeat` is set to now)."""

    @abc.abstractmethod
    def deregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped cleanly. Missing workers are ignored."""

    @abc.abstractmethod
    def heartbeat(
        self, worker: WorkerInfo, lease_seconds: float, job_ids: Sequence[str]
    ) -> Heartbeat:
        """Renew `worker`'s liveness and the leases of `job_ids`, the jobs it runs.

        Only listed jobs that `worker` still holds are renewed: a job it holds but
        does not run (a claim whose reply was lost) is left to expire and be
        recovered. Returns the listed ids it still holds (a run missing from them
        was recovered and must be stopped) and whether a stop was requested. A
        worker whose row was pruned is registered again.
        """

    @abc.abstractmethod
    def recover(
        self,
        lost_worker_ids: Sequence[str],
        stale_after: float,
        *,
        unrenewed: Sequence[str] | None = None,
        exclude: str | None = None,
    ) -> list[RecoveredJob]:
        """Take back running jobs whose lease expired or whose worker is known lost.

        Each such job's `recoveries` goes up by one; it becomes `pending`, runnable
        now, without charging an attempt, or `dead` once `recoveries` reaches
        `max(max_retries, 1)`. Rows of lost workers and of workers silent for
        more than `stale_after` seconds are deleted.

        `unrenewed`: instead of "the lease expired by `now()`", take back exactly
        these running jobs (besides the lost workers'): the caller watched their
        leases stay unrenewed for a whole lease on its own monotonic clock. For a
        store without a `shared_clock`, whose `now()` can jump.

        `exclude`: a worker whose jobs are never taken back, the caller itself. A
        live worker knows what it runs; after a stall that outlasted its leases it
        must record the runs that ended meanwhile, not discard them as lost.
        """

    @abc.abstractmethod
    def list_workers(self) -> list[WorkerInfo]:
        """Registered workers with the jobs each is running, oldest first."""

    @abc.abstractmethod
    def request_stop(self, worker_ids: Sequence[str]) -> int:
        """Ask these workers to stop gracefully; returns how many were asked."""

    # -- settings ------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_config(self) -> dict[str, str]:
        """Stored settings as raw strings (defaults are not stored)."""

    def set_config(self, key: str, value: str) -> None:
        """Store one setting as given, unchecked (commands check theirs through
        `update_config`; tests plant values with this)."""
        self.update_config(lambda _stored: {key: value})

    @abc.abstractmethod
    def update_config(self, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Read the settings, pass them to `change`, and store what it returns, in one
        write transaction that no other `update_config` interleaves with: a change
        checked against the settings is stored against the same settings. Whatever
        `change` raises propagates, and nothing is stored."""

    @abc.abstractmethod
    def import_jobs(self, jobs: Sequence[Job]) -> int:
        """Store exported jobs with their history (state, attempts, runs, times, outcome),
        all or nothing; returns how many. A `running` job comes back `pending`, runnable
        now, since no worker holds it here. Raises `DuplicateJob` for a taken id."""

    # -- schema --------------------------------------------------------------------------------

    @abc.abstractmethod
    def schema_version(self) -> tuple[int, int]:
        """`(applied, latest)` migration numbers."""

    @abc.abstractmethod
    def migrate(self) -> list[int]:
        """Apply pending migrations, each in one transaction with its record; returns
        the numbers applied. Safe to run from several processes at once."""

    # -- plumbing ------------------------------------------------------------------------------

    def wait_for_change(self, timeout: float, interrupt: threading.Event) -> bool:
        """Block up to `timeout` seconds until `changed()` is True (returns True), or
        `interrupt` is set (returns False).

        This default polls `changed()`, quickly at first and backing off to
        `CHANGE_POLL_MAX`, which bounds the pickup latency of an idle worker.
        Both stores override it to sleep until told: PostgreSQL on
        LISTEN/NOTIFY, SQLite on inotify; each falls back to this polling.
        """
        deadline = time.monotonic() + timeout
        pause = CHANGE_POLL_MIN
        while True:
            if self.changed():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupt.is_set():
                return False
            # A plain sleep, checking `interrupt` between naps (so it is seen within
            # CHANGE_POLL_MAX): an idle worker wakes here 100 times a second, and
            # Event.wait cost twice the CPU per wake-up (measured: 150 against 72 us).
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, CHANGE_POLL_MAX)

    @abc.abstractmethod
    def now(self) -> float:
        """The store's idea of the current time, epoch seconds."""

    @abc.abstractmethod
    def changed(self) -> bool:
        """Cheap check: did anyone commit a change since the last call? Used to wake
        idle workers; a False may be stale, a True may be spurious."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection. The store is unusable afterwards."""


#: Column order of `import_job` queries in every dialect.
IMPORT_COLUMNS = (
    "id",
    "command",
    "state",
    "attempts",
    "max_retries",
    "priority",
    "queue",
    "timeout",
    "next_attempt_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "exit_code",
    "last_error",
    "worker_id",
    "runs",
    "recoveries",
)


def import_row(job: Job, now: float) -> dict[str, Any]:
    """An exported job as it is stored again: a `running` job, whose worker is not
    here, comes back `pending` and runnable now; every other field is kept."""
    row = {name: getattr(job, name) for name in IMPORT_COLUMNS}
    row["state"] = job.state.value
    if job.state is JobState.RUNNING:
        row["state"] = JobState.PENDING.value
        row["next_attempt_at"] = now
        row["last_error"] = "imported while running; run again (not charged)"
    elif job.state in (JobState.PENDING, JobState.FAILED) and job.next_attempt_at is None:
        row["next_attempt_at"] = now
    return row


def new_job_row(job: NewJob, now: float) -> Job:
    """The stored form of a job just enqueued at `now` (store clock)."""
    return Job(
        id=job.id,
        command=job.command,
        state=JobState.PENDING,
        attempts=0,
        max_retries=job.max_retries,
        priority=job.priority,
        queue=job.queue,
        timeout=job.timeout,
        next_attempt_at=now if job.run_at is None else job.run_at,
        created_at=now,
        updated_at=now,
        started_at=None,
        finished_at=None,
        exit_code=None,
        last_error=None,
        worker_id=None,
        lease_expires_at=None,
        runs=0,
        recoveries=0,
    )


def refused_cancel(job: Job) -> WrongState:
    """Why `job` cannot be canceled (by either store)."""
    return WrongState(
        f"job {job.id} is {job.state.value}; only pending or failed jobs can be canceled"
    )


def refused_retry(job: Job) -> WrongState:
    """Why `job` cannot be retried from the DLQ (by either store)."""
    return WrongState(f"job {job.id} is {job.state.value}, not dead; only dead jobs can be retried")
