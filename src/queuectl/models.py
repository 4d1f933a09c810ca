"""Domain models: immutable values with no persistence methods.

A job's *state* (where it is in its life) and its *outcome* (exit code, last
error) are separate fields; timestamps follow the state (pueue's model).
"""

from __future__ import annotations

from enum import StrEnum

from queuectl.record import Record
from queuectl.timeutil import from_iso, to_iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class JobState(StrEnum):
    """Where a job is in its life. `running` is canonical; `processing` is its input alias."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    DEAD = "dead"
    CANCELED = "canceled"

    @classmethod
    def parse(cls, text: str) -> JobState:
        """Parse a state name given by a user; raises ValueError for unknown names."""
        name = text.strip().lower()
        if name == "processing":
            return cls.RUNNING
        return cls(name)


#: States a worker may claim from, once `next_attempt_at` has come.
CLAIMABLE_STATES = (JobState.PENDING, JobState.FAILED)
#: States a job leaves only when someone acts on it (`dlq retry`): it will not run again.
ENDED_STATES = (JobState.COMPLETED, JobState.DEAD, JobState.CANCELED)


class NewJob(Record):
    """A validated job about to be stored. Times are epoch seconds."""

    id: str
    command: str
    max_retries: int
    priority: int = 0
    queue: str = "default"
    timeout: float | None = None
    #: When the job may first run; None means "now" by the store's clock.
    run_at: float | None = None


class Job(Record):
    """A stored job as read from the database. Times are epoch seconds (UTC)."""

    id: str
    command: str
    state: JobState
    attempts: int
    max_retries: int
    priority: int
    queue: str
    timeout: float | None
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    last_error: str | None
    worker_id: str | None
    lease_expires_at: float | None
    #: Times the job was claimed; the fencing token of the current run.
    runs: int
    #: Runs cut short because their worker died (not charged as attempts).
    recoveries: int

    @property
    def runs_allowed(self) -> int:
        """Charged runs before the job is dead: `max_retries`, and at least one."""
        return max(self.max_retries, 1)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """Build a Job from a database row addressed by column name."""
        return cls(
            id=row["id"],
            command=row["command"],
            state=JobState(row["state"]),
            attempts=row["attempts"],
            max_retries=row["max_retries"],
            priority=row["priority"],
            queue=row["queue"],
            timeout=row["timeout"],
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            exit_code=row["exit_code"],
            last_error=row["last_error"],
            worker_id=row["worker_id"],
            lease_expires_at=row["lease_expires_at"],
            runs=row["runs"],
            recoveries=row["recoveries"],
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Inverse of `to_dict` (used by `queuectl import`); raises ValueError/KeyError/
        TypeError on malformed data, which the caller reports as bad input."""
        times = ("next_attempt_at", "created_at", "updated_at", "started_at", "finished_at")
        row = dict(data)
        for name in (*times, "lease_expires_at"):
            row[name] = from_iso(row.get(name))
        for name in ("attempts", "max_retries", "priority", "runs", "recoveries"):
            if not isinstance(row[name], int) or isinstance(row[name], bool):
                raise TypeError(f"{name} must be a whole number")
        for name in ("id", "command", "queue", "state"):
            if not isinstance(row[name], str):
                raise TypeError(f"{name} must be a string")
        row["state"] = JobState.parse(row["state"]).value  # `processing` too, as on all input
        if row["created_at"] is None or row["updated_at"] is None:
            raise ValueError("created_at and updated_at are required")
        return cls.from_row(row)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with ISO-8601 UTC timestamps (the `--json` contract)."""
        waiting = self.state in CLAIMABLE_STATES
        return {
            "id": self.id,
            "command": self.command,
            "state": self.state.value,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "queue": self.queue,
            "timeout": self.timeout,
            "next_attempt_at": to_iso(self.next_attempt_at) if waiting else None,
            "created_at": to_iso(self.created_at),
            "updated_at": to_iso(self.updated_at),
            "started_at": to_iso(self.started_at),
            "finished_at": to_iso(self.finished_at),
            "exit_code": self.exit_code,
            "last_error": self.last_error,
            "worker_id": self.worker_id,
            "lease_expires_at": to_iso(self.lease_expires_at)
            if self.state is JobState.RUNNING
            else None,
            "runs": self.runs,
            "recoveries": self.recoveries,
        }


class WorkerInfo(Record):
    """A registered worker process."""

    id: str
    host: str
    pid: int
    started_at: float
    last_heartbeat: float
    concurrency: int
    queues: tuple[str, ...]
    stop_requested: bool
    #: Ids of the jobs it is running now.
    current_jobs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": to_iso(self.started_at),
            "last_heartbeat": to_iso(self.last_heartbeat),
            "concurrency": self.concurrency,
            "queues": list(self.queues),
            "stop_requested": self.stop_requested,
            "current_jobs": list(self.current_jobs),
        }


class Heartbeat(Record):
    """What a worker learns from renewing its leases."""

    #: Jobs whose lease this worker still holds; any other job it runs was taken over.
    held_job_ids: frozenset[str]
    #: `queuectl worker stop` asked this worker to stop.
    stop_requested: bool


class RecoveredJob(Record):
    """A running job whose worker was lost, put back to `pending` or sent to the DLQ."""

    id: str
    worker_id: str | None
    state: JobState
