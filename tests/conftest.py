"""Fixtures shared by every tier.

`store` runs the contract suite against every backend through one
parametrised fixture; `qctl` drives the real `queuectl` command in
subprocesses against a private data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.models import JobState
from queuectl.storage.base import Store
from queuectl.storage.sqlite import SQLiteStore
from tests.helpers import FakeClock, wait_for
from tests.pg import fresh_schema, require_pg

BACKENDS = ["sqlite", "postgresql"]

StoreFactory = Callable[[], Store]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a test runs against; PostgreSQL tests need the server (tests/pg.py)."""
    name: str = request.param
    if name == "postgresql":
        require_pg()
    return name


@pytest.fixture
def store_factory(backend: str, tmp_path: Path, clock: FakeClock) -> Iterator[StoreFactory]:
    """Opens connections to one fresh, migrated database of `backend`, all on the fake
    clock; every store opened is closed after the test."""
    opened: list[Store] = []
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            path = tmp_path / "queue.db"

            def make() -> Store:
                opened.append(SQLiteStore(path, clock=clock))
                return opened[-1]
        else:
            from queuectl.storage.postgres import PostgresStore

            url = stack.enter_context(fresh_schema())
            PostgresStore(url, require_schema=False).migrate_and_close()

            def make() -> Store:
                opened.append(PostgresStore(url, test_clock=clock))
                return opened[-1]

        try:
            yield make
        finally:
            for s in opened:
                s.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """A fresh, migrated store on a real database of each backend, with a fake clock."""
    return store_factory()


def queuectl_executable() -> str:
    """The real console script installed beside this interpreter."""
    candidate = Path(sys.executable).parent / "queuectl"
    found = str(candidate) if candidate.exists() else shutil.which("queuectl")
    assert found, "the queuectl command is not installed (pip install -e .)"
    return found


class WorkerProcess:
    """A `queuectl worker start` running in the background, output in files."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.proc = proc
        self.out_path = out
        self.err_path = err

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Queuectl:
    """Runs the real `queuectl` command against a private queue."""

    def __init__(self, root: Path, backend: str = "sqlite", url: str | None = None) -> None:
        self.root = root
        self.backend = backend
        #: The SQLite file (for SQLite-only checks), or None on PostgreSQL.
        self.db_file = root / "data" / "queuectl" / "queuectl.db" if url is None else None
        #: What --db / QUEUECTL_DB names: the SQLite path or the PostgreSQL URL.
        self.db_target = url or str(self.db_file)
        self.env = {
            **os.environ,
            "XDG_DATA_HOME": str(root / "data"),
            "QUEUECTL_DB": self.db_target,
        }
        self.env.pop("QUEUECTL_DEBUG", None)
        self.exe = queuectl_executable()
        self.workers: list[WorkerProcess] = []
        #: Every command `run` made, for checks over all of them (exit codes, stderr).
        self.calls: list[subprocess.CompletedProcess[str]] = []

    @property
    def db(self) -> Path:
        """The SQLite file, for SQLite-only checks."""
        assert self.db_file is not None, "not a SQLite queue"
        return self.db_file

    def use_fast_leases(self) -> None:
        """Leases of 3 s renewed every 0.5 s, so crash recovery fits in a test (the
        heartbeat goes first: a lease must outlast two heartbeats)."""
        self.run("config", "set", "heartbeat_interval", "0.5")
        self.run("config", "set", "lease_timeout", "3")

    def run(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 60,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command; with `check`, a non-zero exit fails the test with its stderr.
        `env`: variables set (or replaced) for this command only."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [self.exe, *args],
            input=data,
            capture_output=True,
            env=self.env if env is None else {**self.env, **env},
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        result = subprocess.CompletedProcess(
            proc.args,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
        self.calls.append(result)
        if check and result.returncode != 0:
            raise AssertionError(
                f"queuectl {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        """Run a data command with --json and parse its stdout (which must be one document)."""
        return json.loads(self.run(*args, "--json").stdout)

    def enqueue(self, spec: dict[str, Any]) -> str:
        return self.run("enqueue", json.dumps(spec)).stdout.strip()

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as `show --json` prints it (`Job.to_dict`), read straight from the
        database. Tests poll this; through the CLI each poll on PostgreSQL paid 0.2-0.3 s
        importing the driver. `show --json` itself is tested in tests/e2e/test_cli.py."""
        from queuectl.storage import open_store

        store = open_store(self.db_target)
        try:
            result: dict[str, Any] = json.loads(json.dumps(store.get_job(job_id).to_dict()))
        finally:
            store.close()
        return result

    def state(self, job_id: str) -> str:
        return str(self.job(job_id)["state"])

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = self.json("status")["jobs"]
        return result

    def count(self, state: str) -> int:
        """Jobs in `state`, read straight from the database (fast enough to poll)."""
        from queuectl.storage import open_store

        store = open_store(self.db_target)
        try:
            return store.count_by_state().get(JobState(state), 0)
        finally:
            store.close()

    def start_worker(
        self,
        *args: str,
        name: str | None = None,
        wait: bool = True,
        own_group: bool = False,
        launcher: tuple[str, ...] = (),
        piped_stdout: bool = False,
    ) -> WorkerProcess:
        """Start `queuectl worker start ARGS` in the background; with `wait`, until it has
        registered (without, for workers that may die at once by design). `own_group`:
        in a process group of its own, like a command started at a shell prompt, so
        that `os.killpg(worker.pid, SIGINT)` is a terminal's Ctrl+C. `launcher`: a
        command it runs under (`nohup`). `piped_stdout`: its stdout is a pipe the test
        holds (`worker.proc.stdout`) instead of a file."""
        index = len(self.workers)
        out = self.root / f"{name or f'worker{index}'}.out"
        err = self.root / f"{name or f'worker{index}'}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(
                [*launcher, self.exe, "worker", "start", *args],
                stdout=subprocess.PIPE if piped_stdout else o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.root,
                process_group=0 if own_group else None,
            )
        worker = WorkerProcess(proc, out, err)
        self.workers.append(worker)
        if not wait:
            return worker
        wait_for(
            lambda: "started:" in worker.stderr() or proc.poll() is not None,
            timeout=20,
            message="worker to start",
        )
        assert proc.poll() is None, f"worker exited early: {worker.stderr()}"
        return worker

    def wait_state(self, job_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        def reached() -> dict[str, Any]:
            job = self.job(job_id)
            return job if job["state"] == state else {}

        return wait_for(reached, timeout=timeout, message=f"job {job_id} to be {state}")

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait()


@pytest.fixture
def qctl(backend: str, tmp_path: Path) -> Iterator[Queuectl]:
    """The real `queuectl` command on a private queue of each backend (a fresh SQLite
    file, or a fresh PostgreSQL schema migrated with `db migrate`), with fast leases."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_schema()) if backend == "postgresql" else None
        q = Queuectl(tmp_path, backend, url)
        stack.callback(q.cleanup)
        if url is not None:
            q.run("db", "migrate")
        q.use_fast_leases()
        yield q
