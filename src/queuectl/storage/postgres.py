"""PostgreSQL implementation of the storage interface: one queue for many hosts.

Concurrency model: every operation is one short transaction. The claim is one
`UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)` statement, so concurrent
claimers lock different rows instead of queueing on one. All times come from
the database clock (`now()`), so hosts whose clocks disagree neither start jobs
early nor steal live leases. Writes that make jobs runnable `NOTIFY` a channel
that idle workers `LISTEN` on, so they wake at once instead of polling.

psycopg is imported here only, so SQLite users never pay for it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row

from queuectl.errors import (
    DuplicateJob,
    InvalidInput,
    JobNotFound,
    SchemaError,
    StorageError,
    StorageUnavailable,
    WrongState,
)
from queuectl.models import Heartbeat, Job, JobState, NewJob, RecoveredJob, WorkerInfo
from queuectl.paths import redact_url
from queuectl.storage.base import Store, import_row, refused_cancel, refused_retry
from queuectl.storage.sqlfile import load_queries, migration_scripts

Q = load_queries("postgres.sql")
CONNECT_TIMEOUT = 5  # seconds for one connection attempt
CLOCK_RESYNC = 60.0  # seconds between measurements of the database clock's offset
LISTEN_RETRY = 2.0  # seconds between attempts to re-establish a lost LISTEN connection
NO_LISTEN_POLL = 0.5  # seconds: without LISTEN, `changed()` says True this often
MIGRATION_LOCK = 0x71756575  # pg_advisory_xact_lock key ("queu"): one migrator at a time
POOL_MAX = 4  # connections a worker process keeps: main loop, heartbeat, spare
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})

# psycopg reports what it could not clean up after an error (a pipeline aborted by
# a duplicate id, say) through Python's last-resort log handler: stray lines on
# stderr after the one error line the CLI prints. The exception says it all.
logging.getLogger("psycopg").addHandler(logging.NullHandler())
logging.getLogger("psycopg").propagate = False


def check_url(url: str) -> None:
    """Refuse, as bad input, a URL libpq would refuse only after connection attempts
    (a bad port or sslmode) or with a message of several lines."""
    from psycopg.conninfo import conninfo_to_dict

    where = redact_url(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise InvalidInput(f"{where}: {_first_line(exc)}") from None
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise InvalidInput(f"{where}: invalid port {port!r}")
    if params.get("sslmode", "prefer") not in SSL_MODES:
        raise InvalidInput(f"{where}: invalid sslmode {params['sslmode']!r}")


class _ConnectionSource(Protocol):
    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]: ...

    def close(self) -> None: ...


class _SingleConnection:
    """One connection, reconnected on demand: for a CLI call or one thread."""

    def __init__(self, url: str, patience: float) -> None:
        self._url = url
        self._patience = patience
        self._conn: psycopg.Connection[Any] | None = None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = _connect(self._url, self._patience)
        yield self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _Pool:
    """A small psycopg pool shared by the threads of a worker process."""

    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        # The pool logs its own warnings ("discarding closed connection ...") through
        # Python's last-resort handler, i.e. as stray stderr lines; the worker already
        # reports the same events in its own words.
        logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())
        logging.getLogger("psycopg.pool").propagate = False

        self._pool = ConnectionPool(
            with_liveness(url),
            min_size=1,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "row_factory": dict_row},
            timeout=CONNECT_TIMEOUT,
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            self._pool.close()
            # The pool says only that it timed out; one plain attempt says why.
            _connect(url, patience=0).close()
            raise StorageUnavailable(
                f"cannot reach PostgreSQL at {redact_url(url)}: {exc}"
            ) from exc

    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return self._pool.connection()

    def close(self) -> None:
        self._pool.close()


_pools: dict[str, tuple[_Pool, int]] = {}


def _shared_pool(url: str) -> _Pool:
    pool, users = _pools.get(url, (None, 0))
    if pool is None:
        pool = _Pool(url)
    _pools[url] = (pool, users + 1)
    return pool


def _release_pool(url: str) -> None:
    pool, users = _pools[url]
    if users <= 1:
        del _pools[url]
        pool.close()
    else:
        _pools[url] = (pool, users - 1)


#: TCP settings that notice a dead peer (a host gone, a network dropping packets):
#: without them a worker's query on a connection whose packets are lost waits for
#: the kernel's retransmissions, about a quarter of an hour, deaf to signals. An
#: idle connection is probed after 5 s and given up after 3 unanswered probes 2 s
#: apart; data unacknowledged for 10 s closes it. A setting the URL names wins.
LIVENESS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}


#: What a server that is up says when it will never accept this URL as it is (a
#: misspelt database or role, a password or SSL demand): retrying cannot help.
REFUSALS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "SSL",
)


def with_liveness(url: str) -> str:
    """`url` as a connection string, with the LIVENESS settings it does not name."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(url)
    return make_conninfo(url, **{k: v for k, v in LIVENESS.items() if k not in given})


def _connect(url: str, patience: float) -> psycopg.Connection[Any]:
    """Connect, retrying with backoff for up to `patience` seconds (a server restarting)."""
    deadline = time.monotonic() + patience
    pause = 0.2
    conninfo = with_liveness(url)
    while True:
        try:
            return psycopg.connect(
                conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT,
            )
        except psycopg.OperationalError as exc:
            reason = _first_line(exc)
            if reason.startswith("invalid "):  # a setting in the URL: retrying cannot help
                raise InvalidInput(f"{redact_url(url)}: {reason}") from None
            if any(mark in reason for mark in REFUSALS):  # the server answered: no
                raise StorageUnavailable(
                    f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}"
                ) from None
            if time.monotonic() + pause > deadline:
                raise StorageUnavailable(
                    f"cannot reach PostgreSQL at {redact_url(url)}: {reason}"
                ) from exc
            time.sleep(pause)  # nothing to wait on but the server coming back
            pause = min(pause * 2, 2.0)
        except psycopg.Error as exc:
            raise StorageUnavailable(
                f"cannot use PostgreSQL at {redact_url(url)}: {_first_line(exc)}"
            ) from exc


class PostgresStore(Store):
    """A queue in a PostgreSQL database (the tables live in the connection's schema)."""

    backend = "postgresql"
    shared_clock = True  # queuectl_now(): the server's clock, for every worker on every host

    def __init__(
        self,
        url: str,
        *,
        pooled: bool = False,
        require_schema: bool = True,
        patience: float = 10.0,
        clock: Callable[[], float] = time.time,
        test_clock: Callable[[], float] | None = None,
    ) -> None:
        """Connect to `url`.

        `pooled`: share one connection pool among the stores of this process (a
        worker's threads). `require_schema`: refuse with SchemaError when
        migrations are pending (`queuectl db migrate` applies them explicitly).
        `patience`: seconds to keep retrying a server that does not answer.
        `test_clock`: tests only: the database clock reads this instead (through the
        `queuectl.fake_now` setting), as SQLite's injected clock does.
        """
        check_url(url)
        self._test_clock = test_clock
        self._url = url
        self.location = redact_url(url)
        self._pooled = pooled
        self._local_clock = clock
        self._source: _ConnectionSource = (
            _shared_pool(url) if pooled else _SingleConnection(url, patience)
        )
        self._offset: float | None = None
        self._offset_at = 0.0
        self._channel: str | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_retry_at = 0.0
        self._last_poll_hint = 0.0
        try:
            if require_schema:
                applied, latest = self.schema_version()
                if applied < latest:
                    raise SchemaError(
                        f"the database {self.location} needs migrations "
                        f"({applied} of {latest} applied): run `queuectl db migrate`"
                    )
                if applied > latest:
                    raise SchemaError(
                        f"the database {self.location} has schema version {applied}, newer "
                        f"than this queuectl ({latest}); upgrade queuectl"
                    )
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------

    @contextmanager
    def _tx(self, *, one_statement: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """One transaction; driver errors become StorageError subclasses.

        `one_statement`: the block runs a single statement, which on an autocommit
        connection is a transaction by itself; skipping BEGIN and COMMIT saves two
        of its three round trips (measured: a third of a claim's time). The test
        clock needs a real transaction for its setting.
        """
        try:
            with self._source.connection() as conn:
                if one_statement and self._test_clock is None:
                    yield conn
                    return
                with conn.transaction():
                    if self._test_clock is not None:
                        conn.execute(
                            "SELECT set_config('queuectl.fake_now', %s, true)",
                            (repr(self._test_clock()),),
                        )
                    yield conn
        except StorageError:
            raise
        except pg_errors.UndefinedTable as exc:
            raise SchemaError(
                f"the database {self.location} has no queuectl tables: run `queuectl db migrate`"
            ) from exc
        except pg_errors.InvalidSchemaName as exc:  # search_path names no existing schema
            raise self._no_schema() from exc
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(
                f"lost the connection to PostgreSQL: {_first_line(exc)}"
            ) from exc
        except pg_errors.UniqueViolation:
            raise
        except psycopg.Error as exc:
            raise StorageError(f"database error: {_first_line(exc)}") from exc

    def _no_schema(self) -> SchemaError:
        return SchemaError(
            f"the database {self.location} has no schema to create the queue in: "
            "the search_path names none that exists (CREATE SCHEMA it first)"
        )

    def _notify(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(Q["notify"], {"channel": self._channel_name(conn)})

    def _channel_name(self, conn: psycopg.Connection[Any]) -> str:
        # Channels are per database; naming it after the schema keeps queues that
        # share a database in different schemas from waking each other.
        if self._channel is None:
            row = conn.execute("SELECT current_schema() AS s").fetchone()
            schema = row["s"] if row and row["s"] else "public"
            self._channel = f"queuectl_{schema}"[:63]
        return self._channel

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._pooled:
            _release_pool(self._url)
            self._pooled = False
        else:
            self._source.close()

    # -- clock and wake-ups -------------------------------------------------------------------

    def now(self) -> float:
        """The database clock, estimated locally between measurements (for scheduling
        wake-ups only; every decision that matters is taken by the database)."""
        if self._test_clock is not None:
            return self._test_clock()
        local = self._local_clock()
        if self._offset is None or local - self._offset_at > CLOCK_RESYNC:
            before = self._local_clock()
            with self._tx() as conn:
                row = conn.execute(Q["now"]).fetchone()
            after = self._local_clock()
            assert row is not None
            db_now = float(row["now"])
            self._offset = db_now - (before + after) / 2
            self._offset_at = after
            local = after
        return local + self._offset

    def wait_for_change(self, timeout: float, interrupt: threading.Event) -> bool:
        """Wait on the LISTEN connection's socket: a NOTIFY wakes us at once."""
        listener = self._ensure_listener()
        if listener is None:  # not connected: poll at a slower pace until it is back
            return super().wait_for_change(min(timeout, NO_LISTEN_POLL), interrupt)
        if self.changed():
            return True
        deadline = time.monotonic() + timeout
        while not interrupt.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Short slices so a set `interrupt` is seen promptly.
            readable, _, _ = select.select([listener.pgconn.socket], [], [], min(remaining, 0.25))
            if readable and self.changed():
                return True
            if self._listener is None:  # lost while waiting
                return True
        return False

    def changed(self) -> bool:
        listener = self._ensure_listener()
        if listener is None:
            now = time.monotonic()
            if now - self._last_poll_hint >= NO_LISTEN_POLL:
                self._last_poll_hint = now
                return True
            return False
        try:
            listener.pgconn.consume_input()
            seen = False
            while listener.pgconn.notifies() is not None:
                seen = True
            if listener.pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("LISTEN connection lost")
            return seen
        except psycopg.Error:
            # Lost (server restart, pg_terminate_backend): poll until it is back.
            self._listener = None
            listener.close()
            self._listen_retry_at = time.monotonic() + LISTEN_RETRY
            return True

    def _ensure_listener(self) -> psycopg.Connection[Any] | None:
        if self._listener is not None:
            return self._listener
        if time.monotonic() < self._listen_retry_at:
            return None
        try:
            conn = _connect(self._url, 0)
            channel = self._channel_name(conn)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except (StorageError, psycopg.Error):
            self._listen_retry_at = time.monotonic() + LISTEN_RETRY
            return None
        self._listener = conn
        return conn

    # -- schema ------------------------------------------------------------------------------

    def schema_version(self) -> tuple[int, int]:
        latest = migration_scripts("postgres")[-1][0]
        with self._tx() as conn:
            row = conn.execute(
                "SELECT to_regclass('schema_migrations') AS t, current_schema() AS s"
            ).fetchone()
            if row is not None and row["s"] is None:  # not "needs migrations": no place for them
                raise self._no_schema()
            if row is None or row["t"] is None:
                return 0, latest
            row = conn.execute(
                "SELECT coalesce(max(version), 0) AS v FROM schema_migrations"
            ).fetchone()
        assert row is not None
        return int(row["v"]), latest

    def migrate(self) -> list[int]:
        applied: list[int] = []
        for number, name, script in migration_scripts("postgres"):
            with self._tx() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at double precision NOT NULL)"
                )
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (number,)
                ).fetchone()
                if done:
                    continue
                conn.execute(script.encode())  # several statements, no parameters
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    " VALUES (%s, %s, extract(epoch FROM now()))",
                    (number, name),
                )
            applied.append(number)
        latest = migration_scripts("postgres")[-1][0]
        current, _ = self.schema_version()
        if current > latest:
            raise SchemaError(
                f"the database {self.location} has schema version {current}, newer than "
                f"this queuectl ({latest}); upgrade queuectl"
            )
        return applied

    def migrate_and_close(self) -> list[int]:
        """`migrate()`, then `close()` (for one-shot setup)."""
        try:
            return self.migrate()
        finally:
            self.close()

    # -- jobs ------------------------------------------------------------------------------

    def enqueue(self, jobs: Sequence[NewJob]) -> float:
        rows = [
            (j.id, j.command, j.max_retries, j.priority, j.queue, j.timeout, j.run_at) for j in jobs
        ]
        try:
            with self._tx() as conn:
                # now() is the transaction's start: the created_at of every row.
                row = conn.execute("SELECT queuectl_now() AS t").fetchone()
                with conn.cursor() as cur:
                    cur.executemany(Q["insert_job"], rows)
                self._notify(conn)
        except pg_errors.UniqueViolation as exc:
            raise _duplicate([j.id for j in jobs], self, "nothing was added") from exc
        assert row is not None
        return float(row["t"])

    def _get_many(self, ids: Sequence[str]) -> list[Job]:
        with self._tx(one_statement=True) as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE id = ANY(%s)", (list(ids),)).fetchall()
        return [Job.from_row(r) for r in rows]

    def claim(self, worker_id: str, queues: Sequence[str], lease_seconds: float) -> Job | None:
        params = {"worker_id": worker_id, "lease_seconds": lease_seconds, "queues": list(queues)}
        with self._tx(one_statement=True) as conn:
            row = conn.execute(
                Q["claim_job_in_queues" if queues else "claim_job"], params
            ).fetchone()
        return Job.from_row(row) if row else None

    def complete(self, job_id: str, run: int, worker_id: str, exit_code: int) -> bool:
        params = {"id": job_id, "run": run, "worker_id": worker_id, "exit_code": exit_code}
        with self._tx(one_statement=True) as conn:
            return conn.execute(Q["complete_job"], params).rowcount == 1

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
        params = {
            "id": job_id,
            "run": run,
            "worker_id": worker_id,
            "state": JobState.DEAD.value if dead else JobState.FAILED.value,
            "attempts": attempts,
            "dead": dead,
            "retry_in": retry_in,
            "exit_code": exit_code,
            "error": error,
        }
        with self._tx() as conn:
            ok: bool = conn.execute(Q["fail_job"], params).rowcount == 1
            if ok and not dead:
                self._notify(conn)  # idle workers learn the new due time
        return ok

    def release(self, job_id: str, run: int, worker_id: str, reason: str) -> bool:
        params = {"id": job_id, "run": run, "worker_id": worker_id, "reason": reason}
        with self._tx() as conn:
            ok: bool = conn.execute(Q["release_job"], params).rowcount == 1
            if ok:
                self._notify(conn)
        return ok

    def get_job(self, job_id: str) -> Job:
        with self._tx(one_statement=True) as conn:
            row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r}")
        return Job.from_row(row)

    def list_jobs(
        self, state: JobState | None = None, queue: str | None = None, limit: int | None = None
    ) -> list[Job]:
        params: dict[str, Any] = {"queue": queue, "limit": limit}
        with self._tx() as conn:
            if state is None:
                rows = conn.execute(Q["list_jobs"], params).fetchall()
            else:
                rows = conn.execute(
                    Q["list_jobs_in_state"], {**params, "state": state.value}
                ).fetchall()
        return [Job.from_row(r) for r in rows]

    def count_by_state(self) -> dict[JobState, int]:
        with self._tx(one_statement=True) as conn:
            rows = conn.execute(Q["count_by_state"]).fetchall()
        return {JobState(r["state"]): int(r["n"]) for r in rows}

    def retry_dead_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        # Workers waiting for jobs are woken: these are runnable now.
        return self._change_each(job_ids, "retry_dead_job", refused_retry, notify=True)

    def cancel_jobs(self, job_ids: Sequence[str]) -> list[Job]:
        return self._change_each(job_ids, "cancel_job", refused_cancel, notify=False)

    def _change_each(
        self,
        job_ids: Sequence[str],
        query: str,
        refusal: Callable[[Job], WrongState],
        *,
        notify: bool,
    ) -> list[Job]:
        """Run `query` (an UPDATE ... RETURNING that matches only a job in the right
        state) for each job, in one transaction; a job it does not match is refused
        (JobNotFound or `refusal`), and the transaction rolls back."""
        rows: list[Any] = []
        refused: str | None = None
        try:
            with self._tx() as conn:
                for job_id in job_ids:
                    row = conn.execute(Q[query], {"id": job_id}).fetchone()
                    if row is None:
                        refused = job_id
                        raise _RollBack
                    rows.append(row)
                if notify:
                    self._notify(conn)
        except _RollBack:
            assert refused is not None
            # Read after the rollback: the connection serves one transaction at a time.
            raise refusal(self.get_job(refused)) from None
        return [Job.from_row(row) for row in rows]

    def next_due_at(self, queues: Sequence[str]) -> float | None:
        with self._tx(one_statement=True) as conn:
            row = conn.execute(Q["next_due_at"], {"queues": list(queues) or None}).fetchone()
        value = None if row is None else next(iter(row.values()))
        return None if value is None else float(value)

    def import_jobs(self, jobs: Sequence[Job]) -> int:
        now = self.now()
        rows = [import_row(job, now) for job in jobs]
        try:
            with self._tx() as conn:
                with conn.cursor() as cur:
                    cur.executemany(Q["import_job"], rows)
                self._notify(conn)
        except pg_errors.UniqueViolation as exc:
            ids = [j.id for j in jobs]
            raise _duplicate(ids, self, "nothing was imported") from exc
        return len(rows)

    # -- workers and leases -----------------------------------------------------------------

    def register_worker(self, worker: WorkerInfo) -> None:
        with self._tx(one_statement=True) as conn:
            conn.execute(Q["register_worker"], _worker_params(worker))

    def deregister_worker(self, worker_id: str) -> None:
        with self._tx(one_statement=True) as conn:
            conn.execute(Q["deregister_worker"], {"id": worker_id})

    def heartbeat(
        self, worker: WorkerInfo, lease_seconds: float, job_ids: Sequence[str]
    ) -> Heartbeat:
        params = {"worker_id": worker.id, "lease_seconds": lease_seconds, "ids": list(job_ids)}
        with self._tx() as conn:
            held = conn.execute(Q["renew_leases"], params).fetchall()
            row = conn.execute(Q["touch_worker"], {"id": worker.id}).fetchone()
            if row is None:
                conn.execute(Q["register_worker"], _worker_params(worker))
        return Heartbeat(
            held_job_ids=frozenset(r["id"] for r in held),
            stop_requested=bool(row["stop_requested"]) if row else False,
        )

    def recover(
        self,
        lost_worker_ids: Sequence[str],
        stale_after: float,
        *,
        unrenewed: Sequence[str] | None = None,
        exclude: str | None = None,
    ) -> list[RecoveredJob]:
        lost = list(lost_worker_ids)
        params = {
            "lost": lost,
            "unrenewed": None if unrenewed is None else list(unrenewed),
            "exclude": exclude,
        }
        with self._tx() as conn:
            rows = conn.execute(Q["recover_jobs"], params).fetchall()
            conn.execute(Q["prune_workers"], {"lost": lost, "stale_after": stale_after})
            if rows:
                self._notify(conn)
        return [
            RecoveredJob(id=r["id"], worker_id=r["worker_id"], state=JobState(r["state"]))
            for r in rows
        ]

    def list_workers(self) -> list[WorkerInfo]:
        with self._tx() as conn:
            running = conn.execute(Q["running_jobs_by_worker"]).fetchall()
            rows = conn.execute(Q["list_workers"]).fetchall()
        current: dict[str, list[str]] = {}
        for r in running:
            current.setdefault(r["worker_id"], []).append(r["id"])
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
            for r in rows
        ]

    def request_stop(self, worker_ids: Sequence[str]) -> int:
        with self._tx() as conn:
            count: int = conn.execute(Q["request_stop"], {"ids": list(worker_ids)}).rowcount
            self._notify(conn)
        return count

    # -- settings ------------------------------------------------------------------------------

    def get_config(self) -> dict[str, str]:
        with self._tx(one_statement=True) as conn:
            rows = conn.execute(Q["get_config"]).fetchall()
        return {r["key"]: r["value"] for r in rows}

    def update_config(self, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        with self._tx() as conn:
            # Two updates must not both check against the same old settings. This
            # mode conflicts with itself and with writes, not with readers.
            conn.execute("LOCK TABLE config IN SHARE ROW EXCLUSIVE MODE")
            rows = conn.execute(Q["get_config"]).fetchall()
            for key, value in change({r["key"]: r["value"] for r in rows}).items():
                conn.execute(Q["set_config"], {"key": key, "value": value})


def _worker_params(worker: WorkerInfo) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": worker.started_at,
        "concurrency": worker.concurrency,
        "queues": json.dumps(list(worker.queues)),
    }


def _duplicate(ids: Sequence[str], store: PostgresStore, outcome: str) -> DuplicateJob:
    """The error for a batch that broke the unique index on `id`, naming the id."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            return DuplicateJob(f"job id {job_id!r} appears twice in the input; {outcome}")
        seen.add(job_id)
    taken = {j.id for j in store._get_many(ids)}
    for job_id in ids:
        if job_id in taken:
            return DuplicateJob(f"a job with id {job_id!r} already exists; {outcome}")
    return DuplicateJob(f"duplicate job id; {outcome}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _RollBack(Exception):
    """Raised inside a transaction to roll it back (psycopg rolls back on any exception)."""
