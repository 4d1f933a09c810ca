"""Opening SQLite databases: migrations, newer or damaged files, concurrent first opens,
and the permissions of what queuectl creates."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuectl.errors import QueuectlError, SchemaError, StorageError, StorageUnavailable
from queuectl.models import JobState, NewJob
from queuectl.storage.sqlfile import migration_scripts
from queuectl.storage.sqlite import SQLiteStore
from tests.conftest import Queuectl
from tests.helpers import FakeClock, wait_for

MIGRATIONS = migration_scripts("sqlite")
LATEST = MIGRATIONS[-1][0]


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, closed afterwards."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def make_db(path: Path, jobs: int = 0) -> None:
    store = SQLiteStore(path)
    try:
        if jobs:
            store.enqueue(
                [
                    NewJob(id=f"j{i}", command="echo " + "x" * 200, max_retries=3)
                    for i in range(jobs)
                ]
            )
    finally:
        store.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- migrations -----------------------------------------------------------------------------


def test_migration_scripts_are_numbered_one_by_one() -> None:
    assert [n for n, _, _ in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_fresh_database_records_every_migration(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    clock = FakeClock()
    store = SQLiteStore(db, clock=clock)
    store.close()
    with raw(db) as conn:
        rows = conn.execute(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert rows == [(n, name, clock.now) for n, name, _ in MIGRATIONS]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"jobs", "workers", "config", "schema_migrations"} <= tables
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reopening_a_current_database_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_db(db, jobs=3)
    with raw(db) as watcher:
        before = watcher.execute("SELECT * FROM schema_migrations").fetchall()
        version_before = watcher.execute("PRAGMA data_version").fetchone()[0]
        store = SQLiteStore(db, clock=FakeClock(start=2_000_000_000.0))
        try:
            assert [j.id for j in store.list_jobs()] == ["j0", "j1", "j2"]
        finally:
            store.close()
        # data_version changes when another connection commits anything.
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version_before
        assert watcher.execute("SELECT * FROM schema_migrations").fetchall() == before
        assert watcher.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_empty_file_is_a_new_database(tmp_path: Path) -> None:
    # queuectl creates the file before SQLite initialises it: a crash in between
    # leaves an empty file, which must simply become a fresh queue.
    db = tmp_path / "q.db"
    db.touch()
    make_db(db, jobs=1)
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST


def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    make_db(db, jobs=2)
    with raw(db) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(SchemaError) as caught:
        SQLiteStore(db)
    message = caught.value.message
    assert str(db) in message
    assert "newer" in message and "upgrade" in message
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST + 1
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2
        assert len(conn.execute("SELECT * FROM schema_migrations").fetchall()) == len(MIGRATIONS)


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "q.db"
    go = tmp_path / "go"
    script = r"""
import os, sys, time
from pathlib import Path
from queuectl.storage.sqlite import SQLiteStore
from queuectl.models import NewJob
db, go, name = sys.argv[1:4]
Path(go + "." + name).touch()
while not os.path.exists(go):
    time.sleep(0.001)
store = SQLiteStore(db)
try:
    store.enqueue([NewJob(id=name, command="true", max_retries=1)])
finally:
    store.close()
"""
    names = [f"p{i}" for i in range(6)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(db), str(go), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in names
    ]
    try:
        wait_for(
            lambda: all(Path(f"{go}.{n}").exists() for n in names),
            timeout=20,
            message="openers to be ready",
        )
        go.touch()
        results = [p.communicate(timeout=30) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err.decode()
    with raw(db) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(n,) for n, _, _ in MIGRATIONS]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert sorted(r[0] for r in conn.execute("SELECT id FROM jobs")) == names


# -- damaged and foreign files ---------------------------------------------------------------


def _random_bytes(valid: bytes) -> bytes:
    return os.urandom(16384)


def _fake_header(valid: bytes) -> bytes:
    return b"SQLite format 3\x00" + os.urandom(16384)


def _truncated_to_50(valid: bytes) -> bytes:
    return valid[:50]


def _truncated_to_one_page(valid: bytes) -> bytes:
    return valid[:4096]


def _truncated_to_half(valid: bytes) -> bytes:
    return valid[: len(valid) // 2]


def _text_file(valid: bytes) -> bytes:
    return b"this is my shopping list\n" * 100


DAMAGE = [
    _random_bytes,
    _fake_header,
    _truncated_to_50,
    _truncated_to_one_page,
    _truncated_to_half,
    _text_file,
]


@pytest.fixture
def valid_db_bytes(tmp_path: Path) -> bytes:
    db = tmp_path / "valid.db"
    make_db(db, jobs=300)
    assert not Path(f"{db}-wal").exists()  # checkpointed into the main file on close
    return db.read_bytes()


def _damaged(tmp_path: Path, valid: bytes, damage_name: str) -> tuple[Path, bytes]:
    damage = {d.__name__: d for d in DAMAGE}[damage_name]
    db = tmp_path / "damaged.db"
    content = damage(valid)
    db.write_bytes(content)
    return db, content


@pytest.mark.parametrize("damage", [d.__name__ for d in DAMAGE])
def test_damaged_file_is_refused_cleanly(
    tmp_path: Path, valid_db_bytes: bytes, damage: str
) -> None:
    db, content = _damaged(tmp_path, valid_db_bytes, damage)
    with pytest.raises(StorageUnavailable) as caught:
        store = SQLiteStore(db)
        # Refusing at the first read would do too; reaching the end would not.
        try:
            store.count_by_state()
            store.list_jobs()
        finally:
            store.close()
    error = caught.value
    assert isinstance(error, QueuectlError)
    assert not isinstance(error, sqlite3.Error)
    assert "damaged" in error.message or "not a queuectl database" in error.message
    assert "\n" not in error.message
    assert db.read_bytes() == content  # never "repaired" by overwriting


def test_damaged_file_error_names_the_file(tmp_path: Path) -> None:
    db = tmp_path / "damaged.db"
    db.write_bytes(os.urandom(16384))
    with pytest.raises(StorageUnavailable) as caught:
        SQLiteStore(db)
    assert str(db) in caught.value.message


def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / "notes.sqlite"
    with raw(db) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    before = db.read_bytes()
    with pytest.raises(StorageError):
        SQLiteStore(db).close()
    assert db.read_bytes() == before
    with raw(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables == ["notes"]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_foreign_database_with_a_clashing_table_is_a_clean_error(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    with raw(db) as conn:
        conn.execute("CREATE TABLE jobs (something TEXT)")
    with pytest.raises(StorageError) as caught:
        SQLiteStore(db).close()
    assert not isinstance(caught.value, sqlite3.Error)
    with raw(db) as conn:  # the failed migration was rolled back
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables == ["jobs"]


# -- the command line on a bad database -----------------------------------------------------


@pytest.fixture
def qctl(tmp_path: Path) -> Iterator[Queuectl]:
    """The real CLI on a private SQLite queue (these cases are about SQLite files)."""
    q = Queuectl(tmp_path)
    q.use_fast_leases()
    try:
        yield q
    finally:
        q.cleanup()


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("queuectl: error: ")
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("list", "--json"),
        ("enqueue", '{"command": "true"}'),
        ("config", "get", "max_retries"),
        ("worker", "start"),
    ],
)
def test_cli_on_a_damaged_database_prints_one_line(qctl: Queuectl, args: tuple[str, ...]) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{qctl.db}{suffix}").unlink(missing_ok=True)
    garbage = os.urandom(16384)
    qctl.db.write_bytes(garbage)
    result = qctl.run(*args, check=False, timeout=30)
    _assert_one_line_error(result)
    assert "damaged" in result.stderr or "not a queuectl database" in result.stderr
    assert qctl.db.read_bytes() == garbage


def test_cli_on_a_newer_database_prints_one_line(qctl: Queuectl) -> None:
    with raw(qctl.db) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    result = qctl.run("status", check=False)
    _assert_one_line_error(result)
    assert "upgrade queuectl" in result.stderr


# -- permissions ------------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask")
def test_new_database_and_directory_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "queuectl"
    db = directory / "queue.db"
    store = SQLiteStore(db)
    try:
        store.enqueue([NewJob(id="a", command="true", max_retries=1)])
        assert store.count_by_state() == {JobState.PENDING: 1}
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        assert wal.exists() and shm.exists()  # while a connection is open
        assert mode(directory) == 0o700
        assert {p.name: mode(p) for p in (db, wal, shm)} == {
            db.name: 0o600,
            wal.name: 0o600,
            shm.name: 0o600,
        }
    finally:
        store.close()
    assert mode(db) == 0o600


def test_cli_creates_a_private_queue(qctl: Queuectl) -> None:
    # The qctl fixture's `config set` created the default data directory.
    assert mode(qctl.db.parent) == 0o700
    assert mode(qctl.db) == 0o600
    job_id = qctl.enqueue({"command": "echo secret"})
    worker = qctl.start_worker()
    try:
        qctl.wait_state(job_id, "completed")
        for suffix in ("-wal", "-shm"):  # the running worker keeps them open
            extra = Path(f"{qctl.db}{suffix}")
            assert extra.exists(), extra
            assert mode(extra) == 0o600, extra
        logs = qctl.db.with_name("queuectl.logs")
        assert mode(logs) == 0o700
        log_files = list(logs.iterdir())
        assert log_files, "the job left no log"
        assert {f.name: mode(f) for f in log_files} == {f.name: 0o600 for f in log_files}
        assert "secret" in qctl.run("logs", job_id).stdout
    finally:
        worker.signal(2)
        deadline = time.monotonic() + 20
        worker.wait(timeout=max(1.0, deadline - time.monotonic()))
