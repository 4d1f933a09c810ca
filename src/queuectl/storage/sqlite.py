"""SQLite implementation of the storage interface (the embedded default).

Concurrency model: WAL journal, so readers never block the writer; every write
is one short `BEGIN IMMEDIATE` transaction, which takes SQLite's single write
lock up front (a deferred transaction that upgrades can fail with "database is
locked" without ever consulting the busy handler); a busy timeout makes waiting
writers queue, and `_retry_busy` retries the whole operation if SQLite still
reports busy, so "database is locked" never reaches a user.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from functools import wraps

from queuectl.errors import (
    DuplicateJob,
    JobNotFound,
    QueueNotFound,
    SchemaError,
    StorageBusy,
    StorageError,
    StorageUnavailable,
    WrongState,
)
from queuectl.models import Heartbeat, Job, JobState, NewJob, RecoveredJob, WorkerInfo
from queuectl.paths import make_private_dir
from queuectl.storage.base import Store, import_row, refused_cancel, refused_retry
from queuectl.storage.sqlfile import load_queries, migration_scripts

TYPE_CHECKING = False  # `typing` costs start-up time; only the type checker needs it
if TYPE_CHECKING:
    import threading
    from typing import Any, ParamSpec, TypeVar

    from queuectl.storage.fswatch import DirectoryWatch

    P = ParamSpec("P")
    R = TypeVar("R")

#: Seconds SQLite's own busy handler waits per statement, before `_retry_busy` runs the
#: operation again. Short, because Python runs signal handlers only once the statement
#: returns, and coalesces a signal that came twice meanwhile: over a 5 s wait, a
#: worker's Ctrl+C took 5 s to be seen, and a second Ctrl+C in that time was lost.
BUSY_TIMEOUT = 0.5
BUSY_GIVE_UP = 120.0  # seconds of retrying before StorageBusy reaches the user
JUMP_TOLERANCE = 1.0  # seconds the wall clock may get ahead of a steady clock unquestioned
INTERRUPT_CHECK = 0.1  # seconds: how often a wait blocked on inotify looks at `interrupt`
#: Seconds between looks at `data_version` after a write event, until the commit shows.
SETTLE_PAUSES = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)
#: Jobs of one state counted one by one before the state counts as large (see
#: count_by_state): a few milliseconds at most.
COUNT_CAP = 10_000
Q = load_queries("sqlite.sql")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _retry_busy(method: Callable[P, R]) -> Callable[P, R]:
    """Run a store operation again while SQLite says the database is busy.

    Each operation is a single transaction that was rolled back, so running it
    again is safe. Other driver errors are translated into StorageError.
    """

    @wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        deadline = time.monotonic() + BUSY_GIVE_UP
        pause = 0.005
        while True:
            try:
                return method(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise _translate(exc, _path_of(args)) from exc
                if time.monotonic() > deadline:
                    raise StorageBusy() from exc
                time.sleep(pause)  # nothing to wake us early: another process holds the lock
                pause = min(pause * 2, 0.2)
            except sqlite3.DatabaseError as exc:
                raise _translate(exc, _path_of(args)) from exc

    return wrapper


def _path_of(args: tuple[object, ...]) -> str | None:
    store = args[0] if args else None
    return store.path if isinstance(store, SQLiteStore) else None


def _translate(exc: sqlite3.Error, path: str | None = None) -> StorageError:
    text = str(exc)
    where = f" {path}" if path is not None else ""
    if "readonly" in text or "read-only" in text:
        return StorageUnavailable(f"the database{where} is read-only: {text}")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return StorageUnavailable(
            f"the database file{where} is damaged or not a queuectl database ({text})"
        )
    if "disk" in text and "full" in text:
        return StorageError(f"the disk is full: {text}")
    if "disk I/O error" in text and path is not None and _nearly_full(path):
        # Opening a WAL database writes its -shm file; on a full disk SQLite says
        # only "disk I/O error", which sends an operator looking at the hardware.
        return StorageError(f"the disk holding{where} is full: {text}")
    if "unable to open" in text:
        return StorageUnavailable(f"cannot open the database{where}: {text}")
    return StorageError(f"database error: {text}")


def _nearly_full(path: str) -> bool:
    """Less than a megabyte free where `path` lives (False when that cannot be told)."""
    try:
        fs = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return False
    return fs.f_bavail * fs.f_frsize < 1024 * 1024


def _queues_param(queues: Sequence[str]) -> str | None:
    return json.dumps(list(queues)) if queues else None


class SQLiteStore(Store):
    """A queue in one SQLite file. See the module docstring for its locking."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = True,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        create: bool = True,
    ) -> None:
        """Open (creating if needed, and if `create`) the database at `path`.

        `durable`: commits are synced to disk before returning (`synchronous=FULL`),
        as every write that acknowledges something to a user must be. Workers pass
        False for their bookkeeping: after a power loss at worst a finished run is
        forgotten and the job runs again (at-least-once holds).
        `clock`: where times come from; by default the wall clock, and for a
        worker's connections (`durable=False`) a `SteadyClock`.
        """
        self.path = os.path.expanduser(os.fspath(path))
        # Absolute: `status` must say which file, wherever it is read from (SPEC.md).
        self.location = os.path.abspath(self.path)
        if clock is None:
            clock = time.time if durable else SteadyClock(self.newest_foreign_time)
        self._clock = clock
        self._watch: DirectoryWatch | None = None  # see wait_for_change()
        self._watch_tried = False
        self._conn = self._connect(durable, create)
        if migrate:
            self.migrate()

    # -- connection and schema -------------------------------------------------------------

    def _connect(self, durable: bool, create: bool) -> sqlite3.Connection:
        _create_private_file(self.path, create)
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=True
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            # Reading the header here turns "not a database" into an error at open time.
            conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        return conn

    @_retry_busy
    def schema_version(self) -> tuple[int, int]:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        return int(version), migration_scripts("sqlite")[-1][0]

    @_retry_busy
    def migrate(self) -> list[int]:
        scripts = migration_scripts("sqlite")
        latest = scripts[-1][0]
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version == latest:
            self._ensure_wal()
            return []
        self._check_version(version, latest)
        applied = []
        with self._write() as conn:
            # Re-read inside the write lock: another process may have migrated meanwhile
            # (and its tables must not make this file look like someone else's).
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version, latest)
            if version == 0 and self._has_foreign_tables():
                raise StorageUnavailable(
                    f"{self.path} is a SQLite database of something else, not a queuectl "
                    "queue; choose another --db path"
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            for number, name, sql in scripts:
                if number <= version:
                    continue
                for statement in _split_statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (number, name, self._clock()),
                )
                conn.execute(f"PRAGMA user_version = {number}")
                applied.append(number)
        self._ensure_wal()
        return applied

    def _ensure_wal(self) -> None:
        """WAL lets readers run while a writer commits. The mode is stored in the file
        and can only change outside a transaction; checked on every open, so a switch
        that lost a race with another process is made by the next one."""
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._conn.execute("PRAGMA journal_mode = WAL")

    def _check_version(self, version: int, latest: int) -> None:
        if version > latest:
            raise SchemaError(
                f"{self.path} has schema version {version}, newer than this queuectl "
                f"({latest}); upgrade queuectl"
            )

    def _has_foreign_tables(self) -> bool:
        """A file with tables but no queuectl schema version belongs to someone else."""
        row = self._conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT IN ('schema_migrations') AND name NOT LIKE 'sqlite_%'"
        ).fetchone()
        return bool(row[0])

    def _write(self) -> _WriteTransaction:
        """One write transaction holding SQLite's write lock from its first statement."""
        return _WriteTransaction(self._conn)

    def now(self) -> float:
        return self._clock()

    def newest_foreign_time(self) -> float | None:
        """The newest time the database holds from a heartbeat or an enqueue, or None.

        Used by `SteadyClock` to tell a jump of the whole host's clock (others
        write the new times too) from a jump of this process's clock alone.
        """
        try:
            row = self._conn.execute(Q["newest_time"]).fetchone()
        except sqlite3.Error:
            return None  # asked from inside the clock: never raise from there
        return None if row[0] is None else float(row[0])

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
        self._conn.close()

    @_retry_busy  # errors become StorageError, which the worker's watcher handles
    def changed(self) -> bool:
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        previous = getattr(self, "_data_version", None)
        self._data_version = version
        return previous is not None and version != previous

    @_retry_busy
    def wait_for_change(self, timeout: float, interrupt: threading.Event) -> bool:
        """Block on inotify until another connection writes the database, instead of
        polling `changed()`: an idle worker then costs nothing between jobs."""
        watch = self._file_watch()
        if watch is None:
            return super().wait_for_change(timeout, interrupt)
        deadline = time.monotonic() + timeout
        watch.drain()  # writes before this point are covered by this changed():
        if self.changed():  # also the safety net for a missed commit, once per call
            return True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or interrupt.is_set():
                return False
            if watch.wait(min(remaining, INTERRUPT_CHECK)) and self._settles(deadline):
                return True

    def _settles(self, deadline: float) -> bool:
        """After a write to the files: whether it turns out to be a commit.

        The write event comes as the writer starts its commit; `data_version`
        changes only once the commit is complete, after its fsync for a durable
        one. So look again at growing intervals rather than once.
        """
        for pause in SETTLE_PAUSES:
            if self.changed():
                return True
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
        return self.changed()

    def _file_watch(self) -> DirectoryWatch | None:
        if not self._watch_tried:
            self._watch_tried = True
            from queuectl.storage.fswatch import open_watch  # workers only: ctypes is slow

            # A first read opens the WAL, creating its files: our own events, so
            # before the watch begins (not changed(): that would consume a change).
            self._conn.execute("PRAGMA data_version").fetchone()
            # SQLite keeps the -wal beside the file a symlink points to, not the link.
            real = os.path.realpath(self.path)
            base = os.path.basename(real)
            self._watch = open_watch(os.path.dirname(real), frozenset({base, f"{base}-wal"}))
        return self._watch

    # -- jobs ------------------------------------------------------------------------------

    @_retry_busy
    def enqueue(self, jobs: Sequence[NewJob]) -> float:
        now = self._clock()
        rows = [
            (
                j.id,
                j.command,
                j.max_retries,
                j.priority,
                j.queue,
                j.timeout,
                now if j.run_at is None else j.run_at,
                now,
                now,
            )
            for j in jobs
        ]
        try:
            with self._write() as conn:
                conn.executemany(Q["insert_job"], rows)
        except sqlite3.IntegrityError as exc:
            raise _duplicate_error([j.id for j in jobs], self, "nothing was added") from exc
        return now

    @_retry_busy
    def claim(self, worker_id: str, queues: Sequence[str], lease_seconds: float) -> Job | None:
        with self._write() as conn:
            return self._claim(conn, worker_id, queues, lease_seconds)

    def _claim(
        self, conn: sqlite3.Connection, worker_id: str, queues: Sequence[str], lease_seconds: float
    ) -> Job | None:
        now = self._clock()
        row = conn.execute(
            Q["claim_job_in_queues" if queues else "claim_job"],
            {
                "worker_id": worker_id,
                "now": now,
                "lease_until": now + lease_seconds,
                "queues": _queues_param(queues),
            },
        ).fetchone()
        return Job.from_row(row) if row else None

    @_retry_busy
    def complete(self, job_id: str, run: int, worker_id: str, exit_code: int) -> bool:
        with self._write() as conn:
            return self._complete(conn, job_id, run, worker_id, exit_code)

    def _complete(
        self, conn: sqlite3.Connection, job_id: str, run: int, worker_id: str, exit_code: int
    ) -> bool:
        params = {
            "id": job_id,
            "run": run,
            "worker_id": worker_id,
            "exit_code": exit_code,
            "now": self._clock(),
        }
        return conn.execute(Q["complete_job"], params).rowcount == 1

    @_retry_busy
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
        # One transaction: the pages both statements touch (the jobs_by_state and
        # jobs_running index pages, often the table page) are written once, and
        # there is one lock and one commit instead of two (measured: 181 against
        # 220 us of CPU for the pair).
        with self._write() as conn:
            completed = self._complete(conn, job_id, run, worker_id, exit_code)
            return completed, self._claim(conn, worker_id, queues, lease_seconds)

    @_retry_busy
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
        now = self._clock()
        params = {
            "id": job_id,
            "run": run,
            "worker_id": worker_id,
            "state": JobState.DEAD.value if dead else JobState.FAILED.value,
            "attempts": attempts,
            "exit_code": exit_code,
            "error": error,
            "now": now,
            "next_attempt_at": None if dead else now + retry_in,
        }
        with self._write() as conn:
            return conn.execute(Q["fail_job"], params).rowcount == 1

    @_retry_busy
    def release(self, job_id: str, run: int, worker_id: str, reason: str) -> bool:
        params = {
            "id": job_id,
            "run": run,
            "worker_id": worker_id,
            "reason": reason,
            "now": self._clock(),
        }
        with self._write() as conn:
            return conn.execute(Q["release_job"], params).rowcount == 1

    @_retry_busy
    def get_job(self, job_id: str) -> Job:
        row = self._conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return Job.from_row(row)

    @_retry_busy
    def list_jobs(
        self, state: JobState | None = None, queue: str | None = None, limit: int | None = None
    ) -> list[Job]:
        params: dict[str, Any] = {"queue": queue, "limit": -1 if limit is None else limit}
        if state is None:
            rows = self._conn.execute(Q["list_jobs"], params)
        else:
            rows = self._conn.execute(Q["list_jobs_in_state"], {**params, "state": state.value})
        return [Job.from_row(r) for r in rows]

    @_retry_busy
    def count_by_state(self) -> dict[JobState, int]:
        # Counting a state's jobs one by one is what costs (about 50-90 ms for a
        # million); the total costs a fifth of that. Usually one state holds nearly
        # every job (a backlog of `pending`, a history of `completed`): that one is
        # what the others leave of the total. Only when several states are large
        # are all but one of them counted in full.
        conn = self._conn
        conn.execute("BEGIN")  # one snapshot for every count
        try:
            row = conn.execute(Q["count_by_state"], {"cap": COUNT_CAP}).fetchone()
            counts = {state: int(row[state.value]) for state in JobState}
            large = [state for state, n in counts.items() if n >= COUNT_CAP]
            for state in large[:-1]:
                counts[state] = conn.execute(Q["count_state"], {"state": state.value}).fetchone()[0]
            if large:
                rest = sum(n for state, n in counts.items() if state is not large[-1])
                counts[large[-1]] = row["total"] - rest
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
        return {state: n for state, n in counts.items() if n}  # as GROUP BY would

    @_retry_busy
    def retry_dead_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        return self._change_each(job_ids, "retry_dead_job", refused_retry)

    @_retry_busy
    def cancel_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        return self._change_each(job_ids, "cancel_job", refused_cancel)

    def _change_each(
        self, job_ids: Sequence[str], query: str, refusal: Callable[[Job], WrongState]
    ) -> list[Job]:
        """Run `query` (an UPDATE ... RETURNING that matches only a job in the right
        state) for each job, in one transaction; a job it does not match is refused
        (JobNotFound or `refusal`), and the transaction rolls back."""
        rows = []
        with self._write() as conn:
            now = self._clock()
            for job_id in job_ids:
                row = conn.execute(Q[query], {"id": job_id, "now": now}).fetchone()
                if row is None:
                    raise refusal(self.get_job(job_id))  # read inside the transaction
                rows.append(row)
        return [Job.from_row(row) for row in rows]

    @_retry_busy
    def next_due_at(self, queues: Sequence[str]) -> float | None:
        row = self._conn.execute(Q["next_due_at"], {"queues": _queues_param(queues)}).fetchone()
        return None if row[0] is None else float(row[0])

    @_retry_busy
    def import_jobs(self, jobs: Sequence[Job]) -> int:
        now = self._clock()
        rows = [import_row(job, now) for job in jobs]
        try:
            with self._write() as conn:
                conn.executemany(Q["import_job"], rows)
        except sqlite3.IntegrityError as exc:
            ids = [j.id for j in jobs]
            raise _duplicate_error(ids, self, "nothing was imported") from exc
        return len(rows)

    # -- workers and leases -----------------------------------------------------------------

    @_retry_busy
    def register_worker(self, worker: WorkerInfo) -> None:
        with self._write() as conn:
            conn.execute(Q["register_worker"], _worker_params(worker, self._clock()))

    @_retry_busy
    def deregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(Q["deregister_worker"], {"id": worker_id})

    @_retry_busy
    def heartbeat(
        self, worker: WorkerInfo, lease_seconds: float, job_ids: Sequence[str]
    ) -> Heartbeat:
        with self._write() as conn:
            # Read once the write lock is held: a heartbeat that waited behind
            # another writer must not renew to a lease already spent.
            now = self._clock()
            params = {
                "worker_id": worker.id,
                "lease_until": now + lease_seconds,
                "ids": json.dumps(list(job_ids)),
            }
            held = conn.execute(Q["renew_leases"], params).fetchall()
            row = conn.execute(Q["touch_worker"], {"id": worker.id, "now": now}).fetchone()
            if row is None:
                conn.execute(Q["register_worker"], _worker_params(worker, now))
        return Heartbeat(
            held_job_ids=frozenset(r[0] for r in held),
            stop_requested=bool(row[0]) if row else False,
        )

    @_retry_busy
    def recover(
        self,
        lost_worker_ids: Sequence[str],
        stale_after: float,
        *,
        unrenewed: Sequence[str] | None = None,
        exclude: str | None = None,
    ) -> list[RecoveredJob]:
        now = self._clock()
        lost = json.dumps(list(lost_worker_ids))
        params = {
            "now": now,
            "lost": lost,
            "unrenewed": None if unrenewed is None else json.dumps(list(unrenewed)),
            "exclude": exclude,
        }
        with self._write() as conn:
            rows = conn.execute(Q["recover_jobs"], params).fetchall()
            conn.execute(Q["prune_workers"], {"now": now, "lost": lost, "stale_after": stale_after})
        return [RecoveredJob(id=r[0], worker_id=r[1], state=JobState(r[2])) for r in rows]

    @_retry_busy
    def list_workers(self) -> list[WorkerInfo]:
        current: dict[str, list[str]] = {}
        for worker_id, job_id in self._conn.execute(Q["running_jobs_by_worker"]):
            current.setdefault(worker_id, []).append(job_id)
        return [
            WorkerInfo(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                started_at=r["started_at"],
                last_heartbeat=r["last_heartbeat"],
                concurrency=r["concurrency"],
                queues=tuple(json.loads(r["queues"])),
                stop_requested=bool(r["stop_requested"]),
                current_jobs=tuple(current.get(r["id"], ())),
            )
            for r in self._conn.execute(Q["list_workers"])
        ]

    @_retry_busy
    def request_stop(self, worker_ids: Sequence[str]) -> int:
        with self._write() as conn:
            return conn.execute(Q["request_stop"], {"ids": json.dumps(list(worker_ids))}).rowcount

    # -- settings ------------------------------------------------------------------------------

    @_retry_busy
    def get_config(self) -> dict[str, str]:
        return dict(self._conn.execute(Q["get_config"]).fetchall())

    @_retry_busy
    def update_config(self, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        with self._write() as conn:  # BEGIN IMMEDIATE: one writer at a time
            stored = dict(conn.execute(Q["get_config"]).fetchall())
            for key, value in change(stored).items():
                conn.execute(Q["set_config"], {"key": key, "value": value})


class SteadyClock:
    """A worker's clock: the wall clock, but a jump forward is believed only once
    other processes' writes show the same time.

    Times in a SQLite queue come from each process's own wall clock. A worker
    whose clock jumps ahead (a bad NTP step, a wrong `date -s`) would otherwise
    run delayed and scheduled jobs early. After a jump forward of more than
    JUMP_TOLERANCE, this clock keeps counting from before the jump on
    CLOCK_BOOTTIME (which also counts time suspended, so resuming a laptop is
    no jump) until the newest time in the database, written by an enqueue or
    by another worker's heartbeat, confirms that the whole host moved. A jump
    backward is followed at once: it can only make jobs run later. Leases do
    not rely on any of this (see the worker's `_unrenewed_leases`).
    """

    def __init__(
        self,
        newest_foreign_time: Callable[[], float | None],
        *,
        wall: Callable[[], float] = time.time,
        steady: Callable[[], float] | None = None,
    ) -> None:
        self._newest_foreign_time = newest_foreign_time
        self._wall = wall
        self._steady = steady or _boottime
        self._offset = wall() - self._steady()  # wall time = steady time + offset

    def __call__(self) -> float:
        wall, steady = self._wall(), self._steady()
        kept = steady + self._offset
        if wall > kept + JUMP_TOLERANCE:
            confirmed = self._newest_foreign_time()
            if confirmed is None or confirmed < wall - JUMP_TOLERANCE:
                return kept
        self._offset = wall - steady  # follows slewing, backward jumps, confirmed jumps
        return wall


def _boottime() -> float:
    return time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))


class _WriteTransaction:
    """`with store._write() as conn:` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error.

    A class rather than `contextlib.contextmanager`, whose import is measurable in
    the start-up of a single `queuectl enqueue`.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            try:
                self._conn.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")


def _worker_params(worker: WorkerInfo, now: float) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "now": now,
        "concurrency": worker.concurrency,
        "queues": json.dumps(list(worker.queues)),
    }


def _duplicate_error(ids: Sequence[str], store: SQLiteStore, outcome: str) -> DuplicateJob:
    """The error for a batch that broke the unique index on `id`, naming the id."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return DuplicateJob(f"job id {job_id!r} appears twice in the input; {outcome}")
        seen.add(job_id)
    for job_id in ids:
        try:
            store.get_job(job_id)
        except JobNotFound:
            continue
        return DuplicateJob(f"a job with id {job_id!r} already exists; {outcome}")
    return DuplicateJob(f"duplicate job id; {outcome}")


def _create_private_file(path: str, create: bool) -> None:
    """Create the database file and its directory private to the user (0700/0600).

    SQLite gives its -wal and -shm files the database file's permissions. Without
    `create`, a missing file is an error: a command that only reads, pointed at a
    mistyped path, must not leave an empty queue there and show it as the user's.
    """
    if os.path.exists(path):
        if not os.path.isfile(path):  # a directory, /dev/null, a pipe: SQLite would
            # fail later, or write its journal beside it (in /dev, say)
            raise StorageUnavailable(f"cannot open the database {path}: not a regular file")
        return
    if not create:
        raise QueueNotFound(f"no queue at {path}: the file does not exist")
    try:
        make_private_dir(os.path.dirname(os.path.abspath(path)))
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StorageUnavailable(f"cannot create the database {path}: {exc.strerror}") from exc


def _split_statements(script: str) -> Iterator[str]:
    """Split a migration script into complete statements (comments kept, harmless)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise SchemaError("a migration script ends with an incomplete statement")
