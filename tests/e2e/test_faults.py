"""End-to-end fault scenarios on SQLite: the real `queuectl` command under crashes,
read-only and full storage, misbehaving jobs and long runs.

Everything is driven through the installed command in subprocesses; waits poll
with deadlines (`wait_for`), and every process started here is killed afterwards.
Every scenario ends with `check_invariants` (tests/e2e/ledger.py); jobs that run
record their runs in a ledger file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Queuectl, WorkerProcess
from tests.e2e.conftest import ProcessGroups, assert_error, lines
from tests.e2e.conftest import quote_path as qp
from tests.e2e.conftest import stop_worker as stop
from tests.e2e.ledger import Kills, Ledger, check_invariants, integrity
from tests.helpers import wait_for


def total_jobs(q: Queuectl) -> int:
    return sum(q.counts().values())


# -- 1. kill -9 during a batch enqueue --------------------------------------------------


BATCH = 50_000


@pytest.mark.parametrize("moment", ["wal-grows", "random", "late"])
def test_kill9_during_batch_enqueue_is_all_or_nothing(sq: Queuectl, moment: str) -> None:
    before = {j["id"] for j in sq.json("list")}
    batch = "".join(
        json.dumps({"command": "true", "id": f"batch-{i}"}) + "\n" for i in range(BATCH)
    ).encode()
    wal = sq.db.with_name(sq.db.name + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    out, err = sq.root / "enqueue.out", sq.root / "enqueue.err"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            [sq.exe, "enqueue", "--file", "-"],
            stdin=subprocess.PIPE,
            stdout=o,
            stderr=e,
            env=sq.env,
            cwd=sq.root,
        )
    try:
        assert proc.stdin is not None
        proc.stdin.write(batch)  # returns once the command has read (nearly) all of it
        proc.stdin.close()
        if moment == "wal-grows":
            # Mid-write: the transaction has started spilling pages to the WAL.
            wait_for(
                lambda: (
                    (wal.exists() and wal.stat().st_size > wal_before) or proc.poll() is not None
                ),
                timeout=30,
                interval=0.001,
                message="the enqueue to start writing",
            )
        else:
            # A random-ish moment in the ~1 s the command takes after reading stdin
            # (it starts writing at ~0.4 s and commits near the end); "late" aims
            # around the commit.
            low = 0.0 if moment == "random" else 0.6
            delay = random.uniform(low, 1.1)
            moment = f"{moment} {delay:.3f}s"
            deadline = time.monotonic() + delay
            wait_for(
                lambda: time.monotonic() >= deadline or proc.poll() is not None,
                timeout=5,
                interval=0.005,
                message="the chosen moment",
            )
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    jobs = sq.json("list")
    new = [j for j in jobs if j["id"] not in before]
    assert len(new) in (0, BATCH), f"partial batch after kill -9 ({moment}): {len(new)} jobs"
    if new:
        assert {j["id"] for j in new} == {f"batch-{i}" for i in range(BATCH)}
        assert {j["state"] for j in new} == {"pending"}
    assert integrity(sq.db) == "ok"
    # The queue still works after the crash.
    job_id = sq.enqueue({"command": "true", "id": "after-crash"})
    assert job_id == "after-crash"
    assert total_jobs(sq) == len(before) + len(new) + 1
    # Ids the killed command printed in full (if it got that far) were acknowledged.
    printed = [i.strip() for i in out.read_text().splitlines(keepends=True) if i.endswith("\n")]
    killed = ("enqueue --file - (killed)", None, err.read_text())
    check_invariants(sq, acked={*before, *printed, job_id}, outputs=[killed])


# -- 2. read-only database ---------------------------------------------------------------


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make files immutable with `chattr +i` (root ignores permission bits, not this);
    skip the test where the filesystem or the user cannot."""
    done: list[Path] = []
    try:
        for path in paths:
            result = subprocess.run(
                ["chattr", "+i", str(path)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                pytest.skip(f"chattr +i unavailable here: {result.stderr.strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_enqueue_to_read_only_database_fails_cleanly(sq: Queuectl, tmp_path: Path) -> None:
    sq.enqueue({"command": "true", "id": "existing"})
    jobs_before = sq.json("list")
    counts_before = sq.counts()
    wal = sq.db.with_name(sq.db.name + "-wal")
    assert not wal.exists(), "the last connection should have checkpointed the WAL"
    file_before = digest(sq.db)
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps({"command": "true"}) + "\n" for _ in range(3)))

    with immutable(sq.db):
        message = assert_error(sq.run("enqueue", '{"command":"true"}', check=False), 1)
        assert "read-only" in message, message
        message = assert_error(sq.run("enqueue", "--file", str(batch), check=False), 1)
        assert "read-only" in message, message
        # Reading still works, and shows nothing changed.
        assert sq.json("list") == jobs_before
        assert sq.counts() == counts_before
        assert digest(sq.db) == file_before

    assert sq.json("list") == jobs_before
    assert integrity(sq.db) == "ok"
    check_invariants(sq, acked={"existing"})


# -- 3. full disk for the job logs -------------------------------------------------------


def test_full_log_disk_is_reported_and_results_stand(sq: Queuectl) -> None:
    """A job whose output cannot be logged keeps its own result: one that exited 0
    completed (failing it would run its side effects again), and the worker says
    that the output was not logged."""
    ledger = Ledger(sq.root / "ledger")
    logs = sq.db.with_name(sq.db.stem + ".logs")
    logs.mkdir(mode=0o700)
    (logs / "noisy.log").symlink_to("/dev/full")
    # The full one runs first (priority); the others must still complete afterwards.
    noisy = ledger.command("echo this cannot be logged")
    acked = [sq.enqueue({"command": noisy, "id": "noisy", "max_retries": 1, "priority": 9})]
    acked.append(sq.enqueue({"command": ledger.command(), "id": "silent"}))
    acked.append(sq.enqueue({"command": ledger.command("echo logged fine"), "id": "normal"}))
    worker = sq.start_worker()

    done = sq.wait_state("noisy", "completed")
    assert (done["exit_code"], done["attempts"], done["runs"]) == (0, 1, 1), done
    wait_for(lambda: "[noisy] its output was not logged" in worker.stderr(), message="the note")
    assert "No space left" in worker.stderr()
    sq.wait_state("silent", "completed")
    sq.wait_state("normal", "completed")
    assert "logged fine" in sq.run("logs", "normal").stdout
    assert worker.proc.poll() is None, worker.stderr()
    # And afterwards too.
    later = sq.enqueue({"command": ledger.command("echo later")})
    sq.wait_state(later, "completed")
    stop(worker)
    checked = check_invariants(sq, acked=[*acked, later], ledger=ledger)
    assert {j: len(r) for j, r in checked.runs.items()} == {
        "noisy": 1,
        "silent": 1,
        "normal": 1,
        later: 1,
    }


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system (tmpfs), to fill. Mounting needs root, as CI runs."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named_as_such(small_disk: Path) -> None:
    """With no worker running, opening the WAL database must create its -shm file;
    on a full disk SQLite says only "disk I/O error". Nothing is lost, and all works
    once there is room again."""
    q = Queuectl(small_disk)
    try:
        job_id = q.enqueue({"command": "true"})
        filler = small_disk / "filler"
        with open(filler, "wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
        for args in (["status"], ["enqueue", '{"command": "true"}']):
            result = q.run(*args, check=False)
            assert result.returncode == 1
            assert result.stderr.startswith("queuectl: error: the disk holding "), result.stderr
            assert " is full" in result.stderr and result.stderr.count("\n") == 1
        filler.unlink()
        assert [j["id"] for j in q.json("list")] == [job_id]
    finally:
        q.cleanup()


def test_a_worker_out_of_descriptors_gives_jobs_back_and_carries_on(sq: Queuectl) -> None:
    """Sixteen slots in 40 descriptors: starts fail with EMFILE. Each such job goes
    back to pending uncharged, claims pause for a moment, and every job still runs
    exactly once. The worker used to hang for good, deaf to SIGTERM."""
    ledger = Ledger(sq.root / "ledger")
    acked = [sq.enqueue({"command": ledger.command("sleep 0.3")}) for _ in range(24)]
    worker = sq.start_worker(
        "--count", "16", launcher=("sh", "-c", 'ulimit -n 40 && exec "$@"', "sh")
    )
    wait_for(
        lambda: sq.counts().get("completed", 0) == len(acked),
        timeout=60,
        message="every job completed",
    )
    assert "cannot start jobs: cannot start /bin/sh: Too many open files" in worker.stderr()
    stop(worker)
    assert "Traceback" not in worker.stderr()
    checked = check_invariants(sq, acked=acked, ledger=ledger)
    assert sorted(len(r) for r in checked.runs.values()) == [1] * len(acked)
    assert {j["attempts"] for j in sq.json("list")} == {1}  # none was charged


def test_a_database_stall_past_the_lease_guard_does_not_spin(sq: Queuectl) -> None:
    """Another connection holds the write lock longer than the lease guard. The
    watchdog stops the running jobs, as it must; afterwards the worker waits for
    its heartbeat before it claims again. It used to claim, find itself past the
    guard, give the job back unstarted and claim it again, thousands of times."""
    sq.use_fast_leases()  # lease 3 s, guard at 2 s
    ledger = Ledger(sq.root / "ledger")
    acked = [sq.enqueue({"command": ledger.command("sleep 1")}) for _ in range(6)]
    worker = sq.start_worker("--count", "2")
    wait_for(lambda: sq.counts().get("running", 0) == 2, message="two jobs running")
    blocker = sqlite3.connect(sq.db, isolation_level=None, timeout=30)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        time.sleep(4)  # the stall itself: longer than the guard (no condition to await)
        blocker.execute("COMMIT")
    finally:
        blocker.close()
    wait_for(
        lambda: sq.counts().get("completed", 0) == len(acked),
        timeout=60,
        message="every job completed",
    )
    stop(worker)
    jobs = sq.json("list")
    assert max(j["runs"] for j in jobs) <= 2, [j["runs"] for j in jobs]
    assert worker.stderr().count("back to pending") <= 2 * len(acked), worker.stderr()
    # Each given-back run says why on the terminal, not only in its `last_error`.
    given_back = [line for line in worker.stderr().splitlines() if "back to pending" in line]
    assert all("could not renew the lease in time" in line for line in given_back), given_back
    check_invariants(sq, acked=acked, ledger=ledger)


# -- 4. jobs that read stdin, leave children, fail in different ways ---------------------


def test_job_stdin_background_children_and_failure_kinds(
    sq: Queuectl, tmp_path: Path, process_groups: ProcessGroups
) -> None:
    pidfile = tmp_path / "pids"
    ledger = Ledger(tmp_path / "ledger")
    # Each body runs in a subshell of the ledger's shell: `$$` there is still the job's
    # shell (its process group leader), and `kill -9 $$` kills that shell.
    specs: list[dict[str, Any]] = [
        {"command": ledger.command("cat"), "id": "reads-stdin"},
        {
            "command": ledger.command(f"sleep 30 & echo $$ $! > {qp(pidfile)}; echo done"),
            "id": "leaves-child",
        },
        {"command": ledger.command("exit 3"), "id": "exit3", "max_retries": 1},
        {"command": ledger.command("kill -9 $$"), "id": "signalled", "max_retries": 1},
        {
            "command": ledger.command("no-such-command-queuectl-test"),
            "id": "missing",
            "max_retries": 1,
        },
    ]
    acked = [sq.enqueue(spec) for spec in specs]
    began = time.monotonic()
    worker = sq.start_worker("--count", "2")

    cat = sq.wait_state("reads-stdin", "completed", timeout=10)
    assert cat["exit_code"] == 0
    leaves = sq.wait_state("leaves-child", "completed", timeout=10)
    assert time.monotonic() - began < 5 + 3, "a background child delayed the job"  # + start-up
    started = leaves["started_at"]
    finished = leaves["finished_at"]
    assert started and finished
    assert "done" in sq.run("logs", "leaves-child").stdout
    shell_pid, sleep_pid = (int(x) for x in lines(pidfile)[0].split())
    # The job's whole process group (the shell led it; `sleep 30` was in it) is gone.
    wait_for(lambda: process_groups.gone(shell_pid), timeout=5, message="the job's group to go")
    assert not Path(f"/proc/{sleep_pid}").exists() or _state(sleep_pid) == "Z"

    exit3 = sq.wait_state("exit3", "dead")
    signalled = sq.wait_state("signalled", "dead")
    missing = sq.wait_state("missing", "dead")
    assert exit3["exit_code"] == 3
    assert exit3["last_error"] == "exit code 3"
    assert signalled["exit_code"] != 0 and signalled["exit_code"] != 3
    assert "SIGKILL" in signalled["last_error"], signalled
    assert missing["exit_code"] == 127
    assert "not found" in missing["last_error"], missing
    errors = {exit3["last_error"], signalled["last_error"], missing["last_error"]}
    assert len(errors) == 3, errors
    stop(worker)
    runs = check_invariants(sq, acked=acked, ledger=ledger).runs
    assert {j: [(r.exit_code, r.pid) for r in rs] for j, rs in runs.items()} == {
        "reads-stdin": [(0, runs["reads-stdin"][0].pid)],
        "leaves-child": [(0, shell_pid)],
        "exit3": [(3, runs["exit3"][0].pid)],
        "signalled": [(None, runs["signalled"][0].pid)],  # its shell died mid-run
        "missing": [(127, runs["missing"][0].pid)],
    }


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat.rpartition(")")[2].split()[0]


# -- 5. many quick jobs: no zombies, no fd leak ------------------------------------------


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid:
            found.append((int(entry.name), fields[0]))
    return found


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_thousand_quick_jobs_leave_no_zombies_and_leak_no_fds(sq: Queuectl) -> None:
    ledger = Ledger(sq.root / "ledger")
    line = json.dumps({"command": ledger.command()}) + "\n"
    worker = sq.start_worker("--count", "4", "--quiet")
    acked = sq.run("enqueue", "--file", "-", input=line * 10).stdout.split()
    wait_for(lambda: sq.counts()["completed"] == 10, timeout=20, interval=0.1, message="10 jobs")
    # Settle: the worker is idle; sample its descriptors.
    baseline = fd_count(worker.pid)

    acked += sq.run("enqueue", "--file", "-", input=line * 990).stdout.split()
    wait_for(
        lambda: sq.counts()["completed"] == 1000,
        timeout=60,
        interval=0.2,
        message="1000 jobs completed",
    )
    assert sum(sq.counts().values()) == 1000
    wait_for(
        lambda: not [c for c in children(worker.pid) if c[1] == "Z"],
        timeout=3,
        message=f"no zombie children of the worker: {children(worker.pid)}",
    )
    # Transient descriptors (a job just reaped) may still be closing: poll, don't sample once.
    counts: list[int] = []

    def same() -> bool:
        counts.append(fd_count(worker.pid))
        return counts[-1] == baseline

    try:
        wait_for(same, timeout=3, interval=0.1, message=f"fd count back to {baseline}")
    except AssertionError:
        raise AssertionError(f"fd count not back to {baseline}: last {counts[-5:]}") from None
    assert worker.proc.poll() is None
    stop(worker)
    runs = check_invariants(sq, acked=acked, ledger=ledger).runs
    assert len(acked) == 1000 and set(runs) == set(acked)
    assert all(len(r) == 1 for r in runs.values()), "a job ran more than once"


# -- 6. a job that kills its own worker ---------------------------------------------------


def _died_or_dead(q: Queuectl, worker: WorkerProcess) -> bool:
    return worker.proc.poll() is not None or q.state("killer") == "dead"


def test_job_killing_its_worker_ends_dead_while_others_complete(sq: Queuectl) -> None:
    max_retries = int(sq.run("config", "get", "max_retries").stdout.strip())
    assert max_retries == 3
    ledger, kills = Ledger(sq.root / "ledger"), Kills()
    command = ledger.command("kill -9 $PPID; sleep 5")  # $PPID: the worker
    sq.enqueue({"command": command, "id": "killer", "priority": 5})
    batch = (json.dumps({"command": ledger.command()}) + "\n") * 100
    others = sq.run("enqueue", "--file", "-", input=batch).stdout.split()
    assert len(others) == 100

    deaths = 0
    survivor: WorkerProcess | None = None
    for round_ in range(max_retries + 2):
        # One slot: a job running beside the killer would be cut short with it and
        # counted as lost too (see docs/DECISIONS.md, "bystanders").
        worker = sq.start_worker("--count", "1", "--quiet", name=f"w{round_}", wait=False)
        wait_for(
            partial(_died_or_dead, sq, worker),
            timeout=30,
            interval=0.1,
            message="the worker to die or the killer job to be dead",
        )
        if worker.proc.poll() is None:
            survivor = worker
            break
        assert worker.proc.returncode == -signal.SIGKILL, worker.stderr()
        kills.died(worker)  # before the next worker starts
        deaths += 1
    assert survivor is not None, f"the job killed {deaths} workers and never went to the DLQ"
    assert deaths == max_retries, f"{deaths} workers killed, expected {max_retries}"

    killer = sq.job("killer")
    assert killer["state"] == "dead"
    assert "worker lost" in killer["last_error"], killer
    assert [j["id"] for j in sq.json("dlq", "list")] == ["killer"]
    wait_for(
        lambda: sq.counts()["completed"] == 100,
        timeout=60,
        interval=0.2,
        message="the 100 other jobs completed",
    )
    assert {j["state"] for j in sq.json("list") if j["id"] in set(others)} == {"completed"}
    stop(survivor)
    runs = check_invariants(sq, acked=["killer", *others], ledger=ledger, kills=kills).runs
    # The killer started once per worker it killed and never finished a run.
    assert [(r.ppid, r.end) for r in runs["killer"]] == [
        (w.pid, None) for w in sq.workers[:max_retries]
    ]
    assert set(runs) == {"killer", *others}
    assert all(len(runs[i]) == 1 and runs[i][0].ppid == survivor.pid for i in others)


def _exited(worker: WorkerProcess) -> bool:
    return worker.proc.poll() is not None


def test_a_job_that_kills_its_worker_at_once_never_outlives_it(
    sq: Queuectl, process_groups: ProcessGroups
) -> None:
    """The job's first command kills its worker, racing the worker's message to the
    watchdog about the job's process group. The job waits behind a gate until that
    message is out (executor.GATE), so the watchdog always kills the rest of
    it. Before the gate, the job outlived its worker in 5 of 10 tries."""
    rounds = 6
    sq.run("config", "set", "max_retries", str(rounds + 1))  # not dead before the end
    ledger, kills = Ledger(sq.root / "ledger"), Kills()
    survived = sq.root / "survived"
    sq.enqueue(
        {
            "id": "killer",
            "command": ledger.command(f"kill -9 $PPID; sleep 1; echo survived >> {qp(survived)}"),
        }
    )
    for round_ in range(rounds):
        worker = sq.start_worker("--count", "1", "--quiet", name=f"w{round_}", wait=False)
        wait_for(
            partial(_exited, worker),
            timeout=30,
            interval=0.05,
            message=f"worker {round_} to be killed by its job",
        )
        kills.died(worker)
        [run] = [r for r in ledger.runs() if r.ppid == worker.pid]
        wait_for(
            partial(process_groups.gone, run.pid),
            timeout=10,
            interval=0.05,
            message=f"the job's process group {run.pid} to be gone",
        )
    assert not survived.exists(), survived.read_text()
    job = sq.job("killer")
    assert job["recoveries"] == rounds - 1  # the last worker's death is not recovered yet
    check_invariants(sq, acked=["killer"], ledger=ledger, kills=kills)
