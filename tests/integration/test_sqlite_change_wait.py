"""An idle SQLite worker waits for other processes' commits on inotify, not by polling.

Real files, a real second process writing with a durable (fsynced) commit,
and the real inotify watch.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from queuectl.models import NewJob
from queuectl.storage.fswatch import open_watch
from queuectl.storage.sqlite import SQLiteStore

ENQUEUE_ONE = """
import sys
from queuectl.models import NewJob
from queuectl.storage.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])  # durable: the commit is fsynced, as a CLI enqueue's
store.enqueue([NewJob(id="from-elsewhere", command="true", max_retries=3)])
store.close()
"""


def test_a_commit_by_another_process_ends_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    waiter = SQLiteStore(path, durable=False)
    try:
        writer = subprocess.Popen([sys.executable, "-c", ENQUEUE_ONE, str(path)])
        try:
            changed = waiter.wait_for_change(30.0, threading.Event())
        finally:
            assert writer.wait(30) == 0
        assert changed
        assert waiter.get_job("from-elsewhere").command == "true"
    finally:
        waiter.close()


def test_a_database_behind_a_symlink_is_watched_where_it_lives(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    link = tmp_path / "link" / "queue.db"
    link.symlink_to(tmp_path / "real" / "queue.db")
    waiter = SQLiteStore(link, durable=False)

    def enqueue_elsewhere() -> None:
        writer = SQLiteStore(link)
        try:
            writer.enqueue([NewJob(id="j1", command="true", max_retries=3)])
        finally:
            writer.close()

    timer = threading.Timer(0.3, enqueue_elsewhere)
    try:
        waiter.changed()
        timer.start()
        # Only the write event can end this wait in time: the once-a-call safety
        # check ran before the enqueue (SQLite keeps the -wal in real/, not link/).
        assert waiter.wait_for_change(5.0, threading.Event())
        assert waiter.get_job("j1").command == "true"
    finally:
        timer.join()
        waiter.close()


def test_an_idle_wait_does_not_poll_the_database(tmp_path: Path) -> None:
    waiter = SQLiteStore(tmp_path / "queue.db", durable=False)
    statements: list[str] = []
    waiter._conn.set_trace_callback(statements.append)
    try:
        assert not waiter.wait_for_change(0.5, threading.Event())
    finally:
        waiter.close()
    # Polling every few milliseconds would have run dozens of `PRAGMA data_version`.
    assert len(statements) <= 2, statements


def test_an_interrupt_ends_the_wait_early(tmp_path: Path) -> None:
    waiter = SQLiteStore(tmp_path / "queue.db", durable=False)
    interrupt = threading.Event()
    timer = threading.Timer(0.2, interrupt.set)
    timer.start()
    try:
        began = time.monotonic()
        assert not waiter.wait_for_change(60.0, interrupt)
        assert time.monotonic() - began < 30.0
    finally:
        timer.cancel()
        waiter.close()


def test_own_connection_commits_are_seen_like_anyone_elses(tmp_path: Path) -> None:
    # The worker's main connection and its watcher are two connections of one
    # process: a commit by either is a change for the other.
    path = tmp_path / "queue.db"
    waiter = SQLiteStore(path, durable=False)
    writer = SQLiteStore(path)
    try:
        waiter.changed()
        writer.enqueue([NewJob(id="j1", command="true", max_retries=3)])
        assert waiter.wait_for_change(30.0, threading.Event())
    finally:
        writer.close()
        waiter.close()


def test_the_watch_reports_only_the_named_files(tmp_path: Path) -> None:
    watch = open_watch(str(tmp_path), frozenset({"queue.db-wal"}))
    assert watch is not None, "inotify is available on Linux"
    try:
        (tmp_path / "other.log").write_text("not the queue")
        assert not watch.drain()
        (tmp_path / "queue.db-wal").write_bytes(b"frame")
        assert watch.wait(30.0)
        assert not watch.drain()  # consumed
    finally:
        watch.close()
