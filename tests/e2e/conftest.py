"""Helpers for the end-to-end tier: only the real `queuectl` command, in subprocesses.

Nothing here imports queuectl itself; state is read through `show/list/status --json`
and job side effects are counted with files written by the jobs' shells (the fault
scenarios' run ledger and their shared invariant check are in tests/e2e/ledger.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import Queuectl, WorkerProcess
from tests.pg import fresh_schema

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 UTC timestamp as printed by queuectl (`...Z`), checked and parsed."""
    assert ISO_UTC.match(text), f"not an ISO-8601 UTC timestamp ending in Z: {text!r}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def epoch(text: str) -> float:
    return parse_iso(text).timestamp()


def lines(path: Path) -> list[str]:
    """The lines of a marker file (none if the file does not exist yet)."""
    if not path.exists():
        return []
    return path.read_text().splitlines()


PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>


def processes() -> Iterator[tuple[int, str, int, int, int]]:
    """`(pid, state, ppid, pgid, session)` of every process, from /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            data = Path(f"/proc/{name}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        state, ppid, pgid, session = data.rpartition(")")[2].split()[:4]
        yield int(name), state, int(ppid), int(pgid), int(session)


def session_members(sid: int) -> list[tuple[int, str, int, int]]:
    """`(pid, state, ppid, pgid)` of every process in session `sid`."""
    return [(p, state, pp, pg) for p, state, pp, pg, s in processes() if s == sid]


class ProcessGroups:
    """Checks that a job's process group is gone, with `os.killpg(pgid, 0)`.

    A job whose worker was SIGKILLed is re-parented; if that parent never reaps
    (some containers' init), its killed processes linger as zombies and
    `killpg(pgid, 0)` still succeeds. So the test process makes itself the child
    subreaper: orphans of the workers it starts come to it, and it reaps exactly
    the members of the group asked about before asking.
    """

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = libc.prctl
        self.subreaper = self._prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0

    def gone(self, pgid: int) -> bool:
        """True when no process of group `pgid` exists any more."""
        while True:  # reap our exited children in that group (never anyone else's)
            try:
                pid, _ = os.waitpid(-pgid, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    def session_gone(self, sid: int) -> bool:
        """True when no process of session `sid` exists any more, whatever its group
        (our own exited children in it are reaped first, as in `gone`)."""
        for pid, state, ppid, _ in session_members(sid):
            if state == "Z" and ppid == os.getpid():
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        return not session_members(sid)

    def close(self) -> None:
        if self.subreaper:
            self._prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def process_groups() -> Iterator[ProcessGroups]:
    groups = ProcessGroups()
    try:
        yield groups
    finally:
        groups.close()


def popen_queuectl(qctl: Queuectl, *args: str) -> subprocess.Popen[str]:
    """Start one `queuectl` command in the background (for commands that block)."""
    return subprocess.Popen(
        [qctl.exe, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=qctl.env,
        cwd=qctl.root,
        text=True,
    )


def assert_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """A failed command: this exit code, nothing on stdout, one clear line on stderr."""
    assert result.returncode == code, (
        f"expected exit code {code}, got {result.returncode}: {result.stderr!r}"
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    message = result.stderr
    assert message.endswith("\n") and message.count("\n") == 1, (
        f"expected one line on stderr, got {message!r}"
    )
    assert message.strip(), "the error line is empty"
    return message.strip()


def quote_path(path: Path) -> str:
    """A path quoted for a job's shell command."""
    return shlex.quote(str(path))


def stop_worker(worker: WorkerProcess, sig: int = signal.SIGTERM) -> None:
    """Stop a worker gracefully and check it exits 0."""
    worker.signal(sig)
    assert worker.wait(timeout=30) == 0, worker.stderr()


@pytest.fixture
def sq(tmp_path: Path) -> Iterator[Queuectl]:
    """The real `queuectl` on a private SQLite queue (no PostgreSQL), with fast leases."""
    q = Queuectl(tmp_path)
    try:
        q.use_fast_leases()
        yield q
    finally:
        q.cleanup()


# -- PostgreSQL: one queue, many (simulated) hosts ------------------------------------------

#: The `hosts` fixture's lease and heartbeat: recovery within a few seconds.
LEASE_TIMEOUT = 3.0
HEARTBEAT_INTERVAL = 0.5


def with_url_params(url: str, **params: str) -> str:
    """`url` with query parameters added (`options` values are appended to, not replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in params.items():
        query[key] = f"{query[key]} {value}" if key == "options" and key in query else value
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class Hosts(Queuectl):
    """The real `queuectl` on one PostgreSQL queue, run "from" any host name."""

    def __init__(self, root: Path, url: str) -> None:
        super().__init__(root, "postgresql", url)
        self.others: list[subprocess.Popen[str]] = []

    @contextlib.contextmanager
    def on_host(self, host: str, db: str | None = None) -> Iterator[None]:
        """Commands run inside this block see `QUEUECTL_HOSTNAME=host` (and `db`, if given)."""
        saved = self.env
        self.env = {**saved, "QUEUECTL_HOSTNAME": host}
        if db is not None:
            self.env["QUEUECTL_DB"] = db
        try:
            yield
        finally:
            self.env = saved

    def start_on(
        self, host: str, *args: str, name: str | None = None, db: str | None = None
    ) -> WorkerProcess:
        """`queuectl worker start ARGS` on `host`, registered (killed by `cleanup`)."""
        with self.on_host(host, db):
            return self.start_worker(*args, name=name or host)

    def popen_on(self, host: str, *args: str) -> subprocess.Popen[str]:
        """A `queuectl` command on `host` in the background (killed by `cleanup`)."""
        with self.on_host(host):
            proc = popen_queuectl(self, *args)
        self.others.append(proc)
        return proc

    def enqueue_many(self, commands: list[str]) -> list[str]:
        batch = "".join(json.dumps({"command": c}) + "\n" for c in commands)
        ids = self.run("enqueue", "--file", "-", input=batch).stdout.split()
        assert len(ids) == len(commands) and len(set(ids)) == len(ids)
        return ids

    def jobs_by_id(self) -> dict[str, dict[str, Any]]:
        return {j["id"]: j for j in self.json("list")}

    def cleanup(self) -> None:
        super().cleanup()
        for proc in self.others:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def unmigrated(tmp_path: Path) -> Iterator[Hosts]:
    """`queuectl` on a fresh, empty PostgreSQL schema (no `db migrate` yet)."""
    with fresh_schema() as url:
        hosts = Hosts(tmp_path, url)
        try:
            yield hosts
        finally:
            hosts.cleanup()


@pytest.fixture
def hosts(unmigrated: Hosts) -> Hosts:
    """A migrated PostgreSQL queue with fast leases (recovery within a few seconds)."""
    unmigrated.run("db", "migrate")
    unmigrated.run("config", "set", "heartbeat_interval", str(HEARTBEAT_INTERVAL))
    unmigrated.run("config", "set", "lease_timeout", str(LEASE_TIMEOUT))
    return unmigrated
