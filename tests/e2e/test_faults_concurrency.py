"""End-to-end concurrency faults on SQLite: many concurrent CLI writers and readers
beside busy workers, `kill -9` of a worker's whole process group, and several worker
processes draining one large queue.

Everything goes through the installed `queuectl` command in subprocesses; waits
poll with deadlines (`wait_for`), and every process started here is killed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from tests.conftest import Queuectl, WorkerProcess
from tests.e2e.conftest import lines
from tests.e2e.conftest import quote_path as qp
from tests.helpers import wait_for


def bad_output(text: str) -> bool:
    """Stderr that betrays lock contention or a crash."""
    return "locked" in text.lower() or "Traceback" in text


def completed_count(q: Queuectl) -> int:
    return q.counts().get("completed", 0)


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# -- 1. concurrent batch enqueuers, a polling lister and busy workers ---------------------


ENQUEUERS = 8
PER_ENQUEUER = 500
BATCH = 50


class CallLog:
    """Every CLI call made by the helper threads: (what, exit code, stderr)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int, str]] = []
        self.printed_ids: list[str] = []
        self.errors: list[BaseException] = []

    def add(self, what: str, code: int, stderr: str) -> None:
        with self.lock:
            self.calls.append((what, code, stderr))


def popen_run(q: Queuectl, args: list[str], data: bytes | None) -> tuple[int, str, str]:
    """Run `queuectl ARGS` with Popen (stdin `data`), returning code, stdout, stderr."""
    proc = subprocess.Popen(
        [q.exe, *args],
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=q.env,
        cwd=q.root,
    )
    try:
        out, err = proc.communicate(data, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def enqueuer(q: Queuectl, index: int, log: CallLog) -> None:
    try:
        for start in range(0, PER_ENQUEUER, BATCH):
            data = "".join(
                json.dumps({"command": "true", "id": f"e{index}-{i}"}) + "\n"
                for i in range(start, start + BATCH)
            ).encode()
            code, out, err = popen_run(q, ["enqueue", "--file", "-"], data)
            log.add(f"enqueue e{index} batch {start}", code, err)
            with log.lock:
                log.printed_ids.extend(out.split())
    except BaseException as exc:  # reported by the test
        with log.lock:
            log.errors.append(exc)


def lister(q: Queuectl, done: threading.Event, log: CallLog) -> None:
    try:
        while not done.is_set():
            code, out, err = popen_run(q, ["list", "--json"], None)
            if code == 0:
                try:
                    parsed = json.loads(out)
                    assert isinstance(parsed, list)
                except (ValueError, AssertionError):
                    code = -999
                    err += f"\nlist --json printed no JSON array: {out[:200]!r}"
            log.add("list --json", code, err)
            done.wait(0.05)  # pacing between polls, not a wait for a condition
    except BaseException as exc:  # reported by the test
        with log.lock:
            log.errors.append(exc)


def test_concurrent_batch_enqueuers_lister_and_workers(sq: Queuectl) -> None:
    total = ENQUEUERS * PER_ENQUEUER
    workers = [sq.start_worker("--count", "2", "--quiet", name=f"busy{i}") for i in range(2)]
    log = CallLog()
    done = threading.Event()
    list_thread = threading.Thread(target=lister, args=(sq, done, log), daemon=True)
    threads = [
        threading.Thread(target=enqueuer, args=(sq, i, log), daemon=True) for i in range(ENQUEUERS)
    ]
    list_thread.start()
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive(), "an enqueuer did not finish within 120 s"
    finally:
        done.set()
        list_thread.join(timeout=60)
    assert not list_thread.is_alive()
    assert not log.errors, log.errors

    enqueues = [c for c in log.calls if c[0].startswith("enqueue")]
    listings = [c for c in log.calls if c[0] == "list --json"]
    assert len(enqueues) == ENQUEUERS * PER_ENQUEUER // BATCH
    assert len(listings) >= 2, "the lister did not poll during the enqueues"
    print(f"{len(listings)} list calls, {completed_count(sq)} jobs completed when enqueues ended")
    failed = [c for c in log.calls if c[1] != 0]
    assert not failed, f"{len(failed)} CLI calls failed, e.g. {failed[:3]}"
    noisy = [c for c in log.calls if bad_output(c[2])]
    assert not noisy, f"{len(noisy)} CLI calls reported locking/crashes, e.g. {noisy[:3]}"

    expected = {f"e{p}-{i}" for p in range(ENQUEUERS) for i in range(PER_ENQUEUER)}
    assert sorted(log.printed_ids) == sorted(expected)
    stored = [j["id"] for j in sq.json("list")]
    assert len(stored) == total and set(stored) == expected

    wait_for(
        lambda: completed_count(sq) == total or any(w.proc.poll() is not None for w in workers),
        timeout=120,
        interval=0.5,
        message=f"all {total} jobs to complete",
    )
    assert sq.counts() == {**dict.fromkeys(sq.counts(), 0), "completed": total}
    for w in workers:
        assert w.proc.poll() is None, f"worker died: {w.stderr()}"
        assert not bad_output(w.stderr()), w.stderr()


# -- 2. kill -9 of a worker's whole process group ------------------------------------------


def stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, pgid) of a process from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def live_members(pgid: int) -> list[int]:
    """Non-zombie processes of group `pgid` (zombies count as dead: PID 1 here may
    not reap orphans promptly)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = stat_fields(int(entry))
        if info is not None and info[1] == pgid and info[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def test_kill9_of_worker_group_kills_job_group_and_job_recovers(sq: Queuectl) -> None:
    pids, kids, ran, marker = (sq.root / n for n in ("pids", "kids", "ran", "marker"))
    command = (
        f"echo $$ >> {qp(pids)}; "
        f"if [ ! -e {qp(ran)} ]; then touch {qp(ran)}; "
        f"sleep 60 & echo $! >> {qp(kids)}; sleep 60 & echo $! >> {qp(kids)}; wait; "
        f"else sleep 1; echo done >> {qp(marker)}; fi"
    )
    sq.enqueue({"command": command, "id": "victim"})

    out, err = sq.root / "leader.out", sq.root / "leader.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sq.exe, "worker", "start", "--quiet"],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env=sq.env,
            cwd=sq.root,
            start_new_session=True,
        )
    leader = WorkerProcess(proc, out, err)
    sq.workers.append(leader)  # killed by cleanup if anything below fails
    job_pgid: int | None = None
    try:
        wait_for(lambda: len(lines(kids)) == 2, timeout=20, message="the job's sleeps to start")
        job_pid = int(lines(pids)[0])
        info = stat_fields(job_pid)
        assert info is not None, "the job's shell is already gone"
        job_pgid = info[1]
        assert job_pgid != os.getpgid(proc.pid), "the job does not run in its own group"
        members = set(live_members(job_pgid))
        assert {job_pid, *map(int, lines(kids))} <= members, members
        assert sq.state("victim") == "running"

        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        proc.wait(timeout=10)

        survivors = wait_for(
            lambda: not live_members(job_pgid),
            timeout=15,
            interval=0.1,
            message=f"the job's process group {job_pgid} to die",
        )
        assert survivors

        sq.start_worker("--quiet", name="rescuer")
        job = sq.wait_state("victim", "completed", timeout=60)
        assert lines(marker) == ["done"]
        assert len(lines(pids)) == 2 and lines(pids)[0] != lines(pids)[1]
        assert job["exit_code"] == 0
    finally:
        if job_pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job_pgid, signal.SIGKILL)


# -- 3. four worker processes drain one large queue, each job exactly once -----------------


DRAIN_JOBS = 5_000


def test_four_workers_run_every_job_exactly_once(sq: Queuectl) -> None:
    marker = sq.root / "marker"
    command = f'echo "$QUEUECTL_JOB_ID" >> {qp(marker)}'
    batch = "".join(
        json.dumps({"command": command, "id": f"d{i}"}) + "\n" for i in range(DRAIN_JOBS)
    )
    assert len(sq.run("enqueue", "--file", "-", input=batch).stdout.split()) == DRAIN_JOBS

    started = time.monotonic()
    workers = [sq.start_worker("--count", "2", "--quiet", name=f"drain{i}") for i in range(4)]
    wait_for(
        lambda: (
            completed_count(sq) == DRAIN_JOBS or any(w.proc.poll() is not None for w in workers)
        ),
        timeout=90,
        interval=0.5,
        message=f"all {DRAIN_JOBS} jobs to complete",
    )
    elapsed = time.monotonic() - started
    for w in workers:
        assert w.proc.poll() is None, f"worker died: {w.stderr()}"
        assert not bad_output(w.stderr()), w.stderr()
    print(f"{DRAIN_JOBS} jobs drained by 4 workers in {elapsed:.1f}s")

    assert sq.counts().get("completed") == DRAIN_JOBS
    seen = Counter(lines(marker))
    assert set(seen) == {f"d{i}" for i in range(DRAIN_JOBS)}
    twice = {k: v for k, v in seen.items() if v != 1}
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {list(twice.items())[:5]}"
