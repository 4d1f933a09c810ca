"""The service: the one facade the interfaces (CLI, later a dashboard) call.

It validates input, applies settings and talks to storage through the
`Store` interface. It holds no SQL and starts no processes.
"""

from __future__ import annotations

import builtins
import json
import time

from queuectl.errors import InvalidInput, JobNotFound, WrongState
from queuectl.models import ENDED_STATES, Job, JobState, NewJob, WorkerInfo
from queuectl.queue import settings as settings_mod
from queuectl.queue.jobspec import ID_PATTERN, QUEUE_PATTERN, build_jobs, parse_json_object
from queuectl.queue.settings import Settings
from queuectl.record import Record
from queuectl.storage.base import Store, new_job_row

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from typing import Any

STOP_POLL = 0.2  # seconds between checks while `worker stop` waits
FOLLOW_POLL = 0.2  # seconds between looks at a followed job's log and state
#: Seconds between looks at the log within FOLLOW_BUSY of its last output: output
#: that comes in bursts rotates the log (every MiB) faster than one look a FOLLOW_POLL.
FOLLOW_BUSY_POLL = 0.01
FOLLOW_BUSY = 1.0
MAX_LIMIT = 2**63 - 1  # the largest integer either database takes


class Status(Record):
    """What `queuectl status` reports."""

    backend: str
    location: str
    counts: dict[JobState, int]
    workers: list[WorkerInfo]

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": {"backend": self.backend, "location": self.location},
            "jobs": {state.value: self.counts.get(state, 0) for state in JobState},
            "workers": {"active": len(self.workers), "ids": [w.id for w in self.workers]},
        }


class Enqueued(Record):
    """Jobs just stored, in input order, and the store time they were stored at."""

    new_jobs: list[NewJob]
    at: float

    def ids(self) -> list[str]:
        return [j.id for j in self.new_jobs]

    def jobs(self) -> list[Job]:
        """The jobs as stored (what `show` prints). Built on request: a batch printed
        as ids would otherwise build a `Job` per line for nothing."""
        return [new_job_row(j, self.at) for j in self.new_jobs]


class StopReport(Record):
    """What `worker stop` achieved: of the workers `asked`, how many `stopped`
    (deregistered), were `lost` (stopped heartbeating: dead), or are still `running`."""

    asked: int
    stopped: int
    lost: int
    running: int


class JobOutput(Record):
    """A job's kept output; `cut`: its start was dropped to keep the log bounded."""

    data: bytes
    cut: bool
    #: The job has completed, is dead or canceled: no more output will come.
    ended: bool


class QueueService:
    """Everything a user can ask of the queue."""

    def __init__(self, store: Store, logs_dir: str) -> None:
        self.store = store
        self.logs_dir = logs_dir

    def settings(self) -> Settings:
        return Settings.from_stored(self.store.get_config())

    # -- jobs ------------------------------------------------------------------------------

    def enqueue(self, specs: Iterable[tuple[str, Mapping[str, Any]]]) -> Enqueued:
        """Validate every spec, then store them all or none. `where` names each in errors."""
        return self.enqueue_jobs(build_jobs(specs, self.settings(), self.store.now()))

    def enqueue_jobs(self, jobs: builtins.list[NewJob]) -> Enqueued:
        """Store jobs validated already (see `jobs_for_new_queue`), all or none."""
        if not jobs:
            raise InvalidInput("no jobs given")
        return Enqueued(new_jobs=jobs, at=self.store.enqueue(jobs))

    def get(self, job_id: str) -> Job:
        return self.store.get_job(_lookup_id(job_id))

    def list_jobs(
        self, state: str | None = None, queue: str | None = None, limit: int | None = None
    ) -> list[Job]:
        parsed = parse_state(state) if state is not None else None
        if limit is not None and not 0 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"--limit must be 0 to {MAX_LIMIT} (0 means no limit)")
        if queue is not None and not QUEUE_PATTERN.fullmatch(queue):
            raise InvalidInput(f"--queue: {queue!r} is not a valid queue name")
        return self.store.list_jobs(parsed, queue, limit or None)

    def logs(self, job_id: str) -> JobOutput:
        """The job's captured output (empty if it has not run yet)."""
        from queuectl.queue.joblog import log_path, read_log

        job = self.store.get_job(_lookup_id(job_id))  # JobNotFound for unknown ids
        return JobOutput(
            data=read_log(log_path(self.logs_dir, job_id)),
            cut=self.logs_cut(job_id),
            ended=job.state in ENDED_STATES,
        )

    def logs_cut(self, job_id: str) -> bool:
        """Whether the start of the job's output was dropped to keep its log bounded."""
        from queuectl.queue.joblog import log_path, output_was_cut

        return output_was_cut(log_path(self.logs_dir, job_id))

    def follow_logs(
        self,
        job_id: str,
        write: Callable[[bytes], None],
        on_gap: Callable[[], None],
        *,
        poll: float = FOLLOW_POLL,
    ) -> Job:
        """Pass the job's output to `write` as it is logged, from the start of what is
        kept, until the job has ended for good (completed, dead or canceled): a job
        waiting for its retry is followed into its next run. `on_gap` is called once
        if output came so fast that part of it may have been skipped (see
        `LogFollower`). Returns the job as it ended."""
        from queuectl.queue.joblog import LogFollower, log_path

        job = self.store.get_job(_lookup_id(job_id))
        follower = LogFollower(log_path(self.logs_dir, job.id))
        gap_said = False
        last_output = next_look = time.monotonic()
        try:
            while True:
                # A run's output is all in the log before its outcome is recorded, so
                # a read after the state was seen ended misses nothing.
                ended = job.state in ENDED_STATES
                data = follower.read_new()
                if follower.may_have_skipped and not gap_said:
                    gap_said = True
                    on_gap()
                if data:
                    write(data)
                if ended:
                    return job
                now = time.monotonic()
                if data:  # read on at once while output flows
                    last_output = now
                else:
                    time.sleep(FOLLOW_BUSY_POLL if now - last_output < FOLLOW_BUSY else poll)
                if time.monotonic() >= next_look:
                    job = self.store.get_job(job.id)
                    next_look = time.monotonic() + poll
        finally:
            follower.close()

    def retry_dead(self, job_ids: Sequence[str]) -> builtins.list[Job]:
        """Dead jobs back to pending, all or none (an id given twice counts once)."""
        return _all_or_none(self.store.retry_dead_jobs, job_ids, "retried")

    def cancel(self, job_ids: Sequence[str]) -> builtins.list[Job]:
        """Pending or failed jobs canceled, all or none (an id given twice counts once)."""
        return _all_or_none(self.store.cancel_jobs, job_ids, "canceled")

    def status(self) -> Status:
        return Status(
            backend=self.store.backend,
            location=self.store.location,
            counts=self.store.count_by_state(),
            workers=self.live_workers(),
        )

    # -- workers -------------------------------------------------------------------------------

    def live_workers(self) -> builtins.list[WorkerInfo]:
        """Workers that heartbeated within their lease and are not known to be dead."""
        return self._live(self.store.list_workers())

    def _live(self, workers: Iterable[WorkerInfo]) -> builtins.list[WorkerInfo]:
        from queuectl.queue.hostinfo import known_dead

        # With SETTINGS_PICKUP of slack: right after `config set` shortens the lease,
        # a live worker still beats on its old interval for a moment.
        horizon = self.store.now() - self.settings().lease_timeout - settings_mod.SETTINGS_PICKUP
        return [w for w in workers if w.last_heartbeat >= horizon and not known_dead(w.host, w.pid)]

    def stop_workers(
        self,
        *,
        wait: bool = True,
        timeout: float | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> StopReport:
        """Ask every live worker to stop gracefully; optionally wait until they have.

        Workers see the request at their next heartbeat, finish their running jobs
        and deregister: those are `stopped`. A worker that stops heartbeating
        without deregistering died meanwhile (or was dead already, on a host whose
        processes this one cannot see): `lost`, not stopped.
        """
        workers = self.live_workers()
        asked = [w.id for w in workers]
        if not asked:
            return StopReport(asked=0, stopped=0, lost=0, running=0)
        self.store.request_stop(asked)
        if not wait:
            return StopReport(asked=len(asked), stopped=0, lost=0, running=len(asked))
        # Each worker's jobs, and how often each was recovered so far: a worker whose
        # job is recovered meanwhile died, even if its row is gone by the time we look.
        jobs = {w.id: w.current_jobs for w in workers}
        recovered = {j: self.store.get_job(j).recoveries for js in jobs.values() for j in js}
        deadline = None if timeout is None else time.monotonic() + timeout
        last_reported = -1
        # Seen registered but dead: once another worker's recovery has removed its
        # row, a worker that died looks like one that stopped (an audit: a kill -9
        # during the stop was counted as stopped).
        died: set[str] = set()
        while True:
            registered = {w.id: w for w in self.store.list_workers() if w.id in asked}
            live = {w.id for w in self._live(registered.values())}
            died |= registered.keys() - live
            running = len(live)
            if not running or (deadline is not None and time.monotonic() >= deadline):
                gone = set(asked) - registered.keys() - died
                died |= {w for w in gone if self._any_recovered(jobs[w], recovered)}
                return StopReport(
                    asked=len(asked),
                    stopped=len(asked) - len(registered.keys() | died),
                    lost=len(died),
                    running=running,
                )
            if progress is not None and running != last_reported:
                progress(running)
                last_reported = running
            time.sleep(STOP_POLL)  # polling another process's progress: nothing to wait on

    def _any_recovered(self, job_ids: Iterable[str], recoveries: Mapping[str, int]) -> bool:
        """Whether one of these jobs was recovered (from a lost worker) since then."""
        return any(self.store.get_job(j).recoveries > recoveries[j] for j in job_ids)

    # -- schema and transfer -------------------------------------------------------------------

    def schema_version(self) -> tuple[int, int]:
        """`(applied, latest)` migrations of the database in use."""
        return self.store.schema_version()

    def migrate(self) -> builtins.list[int]:
        return self.store.migrate()

    def export_lines(self) -> Iterator[str]:
        """The queue as JSON lines: one `config` line, then every job with its history."""
        yield json.dumps({"type": "config", "settings": self.store.get_config()})
        for job in self.store.list_jobs():
            yield json.dumps({"type": "job", **job.to_dict()}, ensure_ascii=False)

    def import_lines(self, lines: Iterable[tuple[str, str]]) -> tuple[int, int]:
        """Load `export` output (`(where, line)` pairs), all or nothing; returns
        `(jobs, settings)` imported. Settings are validated like `config set`."""
        return self.import_export(read_export(lines, self.settings()))

    def import_export(self, export: Export) -> tuple[int, int]:
        """Load an export read by `read_export`; as `import_lines`."""
        count = self.store.import_jobs(export.jobs) if export.jobs else 0
        if export.settings:  # checked again against the settings they are stored with
            self.store.update_config(
                lambda stored: settings_mod.validate_changes(
                    Settings.from_stored(stored), export.settings
                )
            )
        return count, len(export.settings)

    # -- settings --------------------------------------------------------------------------

    def config_show(self) -> dict[str, Any]:
        return self.settings().to_dict()

    def config_get(self, key: str) -> Any:
        return self.settings().to_dict()[settings_mod.normalize_key(key)]

    def config_set(self, key: str, value: str) -> tuple[str, Any]:
        name = settings_mod.normalize_key(key)

        def change(stored: dict[str, str]) -> dict[str, str]:
            # Checked against the settings it is stored with (two `config set`s at
            # once could each pass against the old pair, and store a bad one). The
            # value being replaced is not read: a bad one must not block its repair.
            current = Settings.from_stored(stored, replacing=name)
            return dict([settings_mod.validate_change(current, name, value)])

        self.store.update_config(change)
        return name, self.settings().to_dict()[name]


# -- input checked without a store ------------------------------------------------------
# A command that would create its queue (a --db path that does not exist yet) checks
# its input with these first, against the settings a new queue starts with: refused
# input then leaves no empty queue behind at a mistyped path.


def jobs_for_new_queue(specs: Iterable[tuple[str, Mapping[str, Any]]]) -> builtins.list[NewJob]:
    """`enqueue`'s validation for a queue about to be created (its settings are the
    defaults); the jobs go to `QueueService.enqueue_jobs` once it exists."""
    return build_jobs(specs, Settings(), time.time())


def check_new_queue_setting(key: str, value: str) -> None:
    """`config set`'s checks for a queue about to be created (InvalidInput if refused)."""
    settings_mod.validate_change(Settings(), settings_mod.normalize_key(key), value)


class Export(Record):
    """What `queuectl export` wrote, read back and checked (see `read_export`)."""

    jobs: builtins.list[Job]
    #: The text given for each setting, by canonical name (checked; stored normalized).
    settings: dict[str, str]


def read_export(lines: Iterable[tuple[str, str]], current: Settings | None = None) -> Export:
    """Parse and check `export` output (`(where, line)` pairs); the settings are
    checked like `config set`, against `current` (default: a new queue's)."""
    jobs: builtins.list[Job] = []
    changes: dict[str, str] = {}
    for where, line in lines:
        record = parse_json_object(line, where)
        kind = record.pop("type", None)
        if kind == "config" and isinstance(record.get("settings"), dict):
            for key, value in record["settings"].items():
                changes[settings_mod.normalize_key(key)] = str(value)
        elif kind == "job":
            try:
                job = Job.from_dict(record)
            except KeyError as exc:
                raise InvalidInput(f"{where}: not an exported job (no {exc} field)") from None
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"{where}: not an exported job ({exc})") from None
            if not ID_PATTERN.fullmatch(job.id) or not QUEUE_PATTERN.fullmatch(job.queue):
                raise InvalidInput(f"{where}: invalid job id or queue name")
            jobs.append(job)
        else:
            raise InvalidInput(f"{where}: expected a line written by `queuectl export`")
    seen: set[str] = set()
    for job in jobs:
        if job.id in seen:
            raise InvalidInput(f"job id {job.id!r} appears twice; nothing was imported")
        seen.add(job.id)
    settings_mod.validate_changes(current or Settings(), changes)
    if not jobs and not changes:
        raise InvalidInput("nothing to import: no job or config lines found")
    return Export(jobs=jobs, settings=changes)


def _all_or_none(
    change: Callable[[Sequence[str]], builtins.list[Job]], job_ids: Sequence[str], done: str
) -> builtins.list[Job]:
    ids = list(dict.fromkeys(job_ids))
    try:
        return change([_lookup_id(job_id) for job_id in ids])
    except (JobNotFound, WrongState) as exc:
        if len(ids) == 1:
            raise
        raise type(exc)(f"{exc.message}; nothing was {done}") from None


def _lookup_id(job_id: str) -> str:
    """An id to look up. Text that is not valid Unicode (bytes a shell passed through
    undecoded) is no job's id: every stored id is checked text."""
    try:
        job_id.encode("utf-8")
    except UnicodeEncodeError:
        raise JobNotFound(f"no job with id {job_id!r}") from None
    return job_id


def parse_state(text: str) -> JobState:
    """A state given on input; `processing` is accepted for `running`."""
    try:
        return JobState.parse(text)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise InvalidInput(
            f"unknown state {text!r} (known: {names}; 'processing' = running)"
        ) from None


__all__ = ["QueueService", "Status", "StopReport", "parse_state"]
