"""Fixtures shared by every tier.

`store` runs the contract suite against every backend through one
parametrised fixture; `qctl` drives the real `queuectl` command in
subprocesses against a private data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from queuectl.storage.base import Store
from queuectl.storage.sqlite import SQLiteStore
from tests.helpers import FakeClock, wait_for

BACKENDS = ["sqlite"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A fresh, migrated store on a real database, with a fake clock."""
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path / "queue.db", clock=clock)
    else:  # pragma: no cover - later backends
        raise AssertionError(request.param)
    try:
        yield s
    finally:
        s.close()


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

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "data" / "queuectl" / "queuectl.db"
        self.env = {
            **os.environ,
            "XDG_DATA_HOME": str(root / "data"),
            "QUEUECTL_DB": str(self.db),
        }
        self.env.pop("QUEUECTL_DEBUG", None)
        self.exe = queuectl_executable()
        self.workers: list[WorkerProcess] = []

    def run(
        self, *args: str, input: str | bytes | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run one command; with `check`, a non-zero exit fails the test with its stderr."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [self.exe, *args],
            input=data,
            capture_output=True,
            env=self.env,
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
        result: dict[str, Any] = self.json("show", job_id)
        return result

    def state(self, job_id: str) -> str:
        return str(self.job(job_id)["state"])

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = self.json("status")["jobs"]
        return result

    def start_worker(self, *args: str, name: str | None = None) -> WorkerProcess:
        """Start `queuectl worker start ARGS` in the background and wait until it is registered."""
        index = len(self.workers)
        out = self.root / f"{name or f'worker{index}'}.out"
        err = self.root / f"{name or f'worker{index}'}.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(
                [self.exe, "worker", "start", *args],
                stdout=o,
                stderr=e,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.root,
            )
        worker = WorkerProcess(proc, out, err)
        self.workers.append(worker)
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
def qctl(tmp_path: Path) -> Iterator[Queuectl]:
    """The real `queuectl` command on a private queue, with fast lease settings."""
    q = Queuectl(tmp_path)
    q.run("config", "set", "heartbeat_interval", "0.5")
    q.run("config", "set", "lease_timeout", "3")
    try:
        yield q
    finally:
        q.cleanup()
