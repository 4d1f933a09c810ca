"""End-to-end concurrency faults on SQLite: many concurrent CLI writers and a lister
every 50 ms beside busy workers, `kill -9` of a worker's whole process group, several
worker processes draining one large queue, and workers killed every few seconds (with
a slow, full-size soak that prints its figures).

Everything goes through the installed `queuectl` command in subprocesses; waits
poll with deadlines (`wait_for`), and every process started here is killed afterwards.
Every scenario ends with `check_invariants` (tests/e2e/ledger.py) over the run
ledger the jobs write.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Queuectl, WorkerProcess
from tests.e2e.conftest import lines
from tests.e2e.conftest import quote_path as qp
from tests.e2e.conftest import stop_worker as stop
from tests.e2e.ledger import (
    RECOVERY_SLACK,
    Kills,
    Ledger,
    bad_output,
    check_invariants,
    recovered_lines,
    recovery_times,
    vm_hwm_kib,
)
from tests.helpers import wait_for


def completed_count(q: Queuectl) -> int:
    return q.counts().get("completed", 0)


# -- 1. concurrent batch enqueuers, a lister every 50 ms and busy workers -------------------


ENQUEUERS = 8
PER_ENQUEUER = 500
BATCH = 50
LIST_EVERY = 0.05


class CallLog:
    """Every CLI call made by the helper threads: (what, exit code, stderr)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int | None, str]] = []
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


def enqueuer(q: Queuectl, index: int, command: str, log: CallLog) -> None:
    try:
        for start in range(0, PER_ENQUEUER, BATCH):
            data = "".join(
                json.dumps({"command": command, "id": f"e{index}-{i}"}) + "\n"
                for i in range(start, start + BATCH)
            ).encode()
            code, out, err = popen_run(q, ["enqueue", "--file", "-"], data)
            log.add(f"enqueue e{index} batch {start}", code, err)
            with log.lock:
                log.printed_ids.extend(out.split())
    except BaseException as exc:  # reported by the test
        with log.lock:
            log.errors.append(exc)


class ListPoller:
    """Starts `queuectl list --json` every `LIST_EVERY` seconds until `done` is set,
    without waiting for earlier calls (they may overlap), and checks each call as it
    ends: its exit code and stderr go to the `CallLog`, its stdout must be a JSON array
    of distinct, known jobs. Output goes to files (a pipe nobody reads would block)."""

    def __init__(self, q: Queuectl, done: threading.Event, log: CallLog) -> None:
        self.q, self.done, self.log = q, done, log
        self.dir = q.root / "lists"
        self.dir.mkdir()
        self.launched: list[float] = []  # monotonic launch times
        self.durations: list[float] = []  # launch to exit, measured when reaped
        self.listed: list[int] = []  # jobs each call printed
        self.running: list[tuple[int, subprocess.Popen[bytes], float]] = []

    def launch(self) -> None:
        n = len(self.launched)
        with open(self.dir / f"{n}.out", "wb") as o, open(self.dir / f"{n}.err", "wb") as e:
            proc = subprocess.Popen(
                [self.q.exe, "list", "--json"],
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                env=self.q.env,
                cwd=self.q.root,
            )
        self.launched.append(time.monotonic())
        self.running.append((n, proc, self.launched[-1]))

    def reap(self, block: bool = False) -> None:
        still = []
        for n, proc, began in self.running:
            if block:
                proc.wait(timeout=60)
            if proc.poll() is None:
                still.append((n, proc, began))
                continue
            self.durations.append(time.monotonic() - began)
            out, err = self.dir / f"{n}.out", self.dir / f"{n}.err"
            stderr = err.read_text(errors="replace")
            if proc.returncode == 0:
                stderr += self.check_listing(out.read_text(errors="replace"))
            self.log.add("list --json", proc.returncode, stderr)
            out.unlink()
            err.unlink()
        self.running = still

    def check_listing(self, out: str) -> str:
        """Problems with one call's stdout, as text to add to its stderr."""
        try:
            ids = [job["id"] for job in json.loads(out)]
        except (ValueError, TypeError, KeyError):
            return f"\nlist --json printed no JSON array of jobs: {out[:200]!r}"
        self.listed.append(len(ids))
        if len(set(ids)) != len(ids) or not all(i.startswith("e") for i in ids):
            return f"\nlist --json printed duplicate or unknown ids: {ids[:20]}"
        return ""

    def run(self) -> None:
        try:
            next_at = time.monotonic()
            while not self.done.is_set():
                self.launch()
                self.reap()
                # Pacing, not a wait for a condition: the next call is due LIST_EVERY after
                # this one was (later if the machine fell behind; never in a burst).
                next_at = max(next_at + LIST_EVERY, time.monotonic())
                self.done.wait(next_at - time.monotonic())
            self.reap(block=True)
        except BaseException as exc:  # reported by the test
            with self.log.lock:
                self.log.errors.append(exc)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.launched, self.launched[1:], strict=False)]


def test_concurrent_batch_enqueuers_lister_and_workers(sq: Queuectl) -> None:
    total = ENQUEUERS * PER_ENQUEUER
    ledger = Ledger(sq.root / "ledger")
    workers = [sq.start_worker("--count", "2", "--quiet", name=f"busy{i}") for i in range(2)]
    log = CallLog()
    done = threading.Event()
    poller = ListPoller(sq, done, log)
    list_thread = threading.Thread(target=poller.run, daemon=True)
    threads = [
        threading.Thread(target=enqueuer, args=(sq, i, ledger.command(), log), daemon=True)
        for i in range(ENQUEUERS)
    ]
    list_thread.start()
    began = time.monotonic()
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=120)
            assert not t.is_alive(), "an enqueuer did not finish within 120 s"
    finally:
        enqueue_seconds = time.monotonic() - began
        done.set()
        list_thread.join(timeout=90)
    assert not list_thread.is_alive()
    assert not log.errors, log.errors

    enqueues = [c for c in log.calls if c[0].startswith("enqueue")]
    listings = [c for c in log.calls if c[0] == "list --json"]
    assert len(enqueues) == ENQUEUERS * PER_ENQUEUER // BATCH
    gaps = sorted(poller.gaps())
    durations = sorted(poller.durations)
    print(
        f"{len(listings)} list calls in {enqueue_seconds:.1f}s of enqueueing: launched every "
        f"{gaps[len(gaps) // 2] * 1000:.0f} ms (median; slowest gap {gaps[-1] * 1000:.0f} ms), "
        f"each took {durations[len(durations) // 2]:.2f}s (median; worst {durations[-1]:.2f}s) "
        f"for up to {max(poller.listed)} jobs; {completed_count(sq)} jobs completed by then"
    )
    # The listings overlapped the enqueues (how often they came is printed above, not
    # asserted: on a starved machine the pacing stretches, and that is no defect).
    assert len(listings) >= 10 and len(listings) == len(poller.launched)
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
    for w in workers:
        stop(w)
    runs = check_invariants(sq, acked=log.printed_ids, ledger=ledger, outputs=log.calls).runs
    assert set(runs) == expected and all(len(r) == 1 for r in runs.values())


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
    ledger, kills = Ledger(sq.root / "ledger"), Kills()
    kids, ran = sq.root / "kids", sq.root / "ran"
    body = (
        f"if [ ! -e {qp(ran)} ]; then touch {qp(ran)}; "
        f"sleep 60 & echo $! >> {qp(kids)}; sleep 60 & echo $! >> {qp(kids)}; wait; "
        f"else sleep 1; fi"
    )
    sq.enqueue({"command": ledger.command(body), "id": "victim"})

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
        first = ledger.runs()
        assert [(r.job_id, r.ppid, r.end) for r in first] == [("victim", proc.pid, None)]
        job_pid = first[0].pid
        info = stat_fields(job_pid)
        assert info is not None, "the job's shell is already gone"
        job_pgid = info[1]
        assert job_pgid != os.getpgid(proc.pid), "the job does not run in its own group"
        members = set(live_members(job_pgid))
        assert {job_pid, *map(int, lines(kids))} <= members, members
        assert sq.state("victim") == "running"

        kills.killing(proc.pid)
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
        proc.wait(timeout=10)

        survivors = wait_for(
            lambda: not live_members(job_pgid),
            timeout=15,
            interval=0.1,
            message=f"the job's process group {job_pgid} to die",
        )
        assert survivors

        rescuer = sq.start_worker("--quiet", name="rescuer")
        job = sq.wait_state("victim", "completed", timeout=60)
        assert job["exit_code"] == 0
        stop(rescuer)
        runs = check_invariants(sq, acked=["victim"], ledger=ledger, kills=kills).runs
        # The killed run never finished; the rescuer's run (another shell) did, once.
        assert [(r.ppid, r.exit_code) for r in runs["victim"]] == [
            (proc.pid, None),
            (rescuer.pid, 0),
        ]
        assert runs["victim"][1].pid != job_pid
        assert job["recoveries"] == 1 and job["runs"] == 2 and job["attempts"] == 1, job
    finally:
        if job_pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(job_pgid, signal.SIGKILL)


# -- 3. four worker processes drain one large queue, each job exactly once -----------------


DRAIN_JOBS = 5_000


def test_four_workers_run_every_job_exactly_once(sq: Queuectl) -> None:
    ledger = Ledger(sq.root / "ledger")
    batch = "".join(
        json.dumps({"command": ledger.command(), "id": f"d{i}"}) + "\n" for i in range(DRAIN_JOBS)
    )
    acked = sq.run("enqueue", "--file", "-", input=batch).stdout.split()
    assert len(acked) == DRAIN_JOBS

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
    for w in workers:
        stop(w)
    runs = check_invariants(sq, acked=acked, ledger=ledger).runs
    assert set(runs) == {f"d{i}" for i in range(DRAIN_JOBS)}
    twice = {k: len(v) for k, v in runs.items() if len(v) != 1}
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {list(twice.items())[:5]}"
    assert {r.ppid for rs in runs.values() for r in rs} == {w.pid for w in workers}


# -- 4. four workers while one is killed every few seconds ----------------------------------


@dataclass
class KillSoak:
    """Figures of one `kill_soak` run."""

    backend: str
    jobs: int
    kills: int
    seconds: float
    runs: int
    duplicates: int
    recoveries: int
    recovery_times: list[float]
    locked: int
    peak_worker_kib: int

    def report(self) -> str:
        times = sorted(self.recovery_times)
        return (
            f"kill soak ({self.backend}): {self.jobs} jobs, 4 workers x 2 slots, "
            f"{self.kills} kill -9 in {self.seconds:.1f}s\n"
            f"  recovery after kill -9 (kill -> job running again): median "
            f"{statistics.median(times):.2f}s, worst {times[-1]:.2f}s over {len(times)} cut runs\n"
            f"  runs {self.runs}, duplicate runs {self.duplicates}, recorded recoveries "
            f"{self.recoveries}\n"
            f"  'locked' errors seen: {self.locked}\n"
            f"  peak worker memory (VmHWM): {self.peak_worker_kib / 1024:.1f} MiB"
        )


def kill_soak(q: Queuectl, jobs: int, kill_every: float, body: str) -> KillSoak:
    """Run `jobs` ledger jobs (`body` each) on 4 workers of 2 slots; every `kill_every`
    seconds kill -9 the oldest worker and start a replacement. Ends with every worker
    stopped gracefully and `check_invariants`; returns the figures."""
    ledger, kills = Ledger(q.root / "ledger"), Kills()
    batch = (json.dumps({"command": ledger.command(body)}) + "\n") * jobs
    acked = q.run("enqueue", "--file", "-", input=batch).stdout.split()
    assert len(acked) == jobs
    live = [q.start_worker("--count", "2", name=f"soak{i}") for i in range(4)]
    began = time.monotonic()
    deadline = began + jobs * 0.1 + 60

    def finished() -> bool:
        return completed_count(q) + q.counts()["dead"] == jobs

    while not finished():
        due = time.monotonic() + kill_every
        left = deadline - time.monotonic()
        assert left > 0, f"not done within {deadline - began:.0f}s: {q.counts()}"
        # Pacing between kills (a deadline, not a wait for a condition).
        wait_for(
            lambda due=due: time.monotonic() >= due or finished(),  # type: ignore[misc]
            timeout=left,
            interval=0.1,
            message="the next kill or the end",
        )
        if time.monotonic() >= due:
            kills.kill9(live.pop(0))
            live.append(q.start_worker("--count", "2", name=f"soak{len(q.workers)}"))
    seconds = time.monotonic() - began

    peaks = dict(kills.peak_kib)
    for worker in live:
        peaks[worker.pid] = vm_hwm_kib(worker.pid) or 0
        assert worker.proc.poll() is None, worker.stderr()
    for worker in live:
        stop(worker)
    outputs = [c.stderr for c in q.calls] + [w.stderr() + w.stdout() for w in q.workers]
    locked = sum(text.lower().count("locked") for text in outputs)
    checked = check_invariants(q, acked=acked, ledger=ledger, kills=kills)

    # Every duplicate run is explained by a recorded recovery of a lost worker.
    said = recovered_lines(q)
    for job_id, job in checked.jobs.items():
        runs = checked.runs.get(job_id, [])
        assert job["state"] == "completed" and job["attempts"] == 1, job
        assert len(runs) - 1 <= job["recoveries"], (job, runs)
        cut = [r for r in runs if r.end is None]
        assert all(r.ppid in kills.at for r in cut), (job, runs)
        assert len(cut) <= job["recoveries"], (job, runs)
        assert said[job_id] <= job["recoveries"], (job, said[job_id])
    recoveries = sum(j["recoveries"] for j in checked.jobs.values())
    # A worker killed between committing a recovery and printing it loses the line.
    assert sum(said.values()) >= recoveries - len(kills.at), (sum(said.values()), recoveries)
    return KillSoak(
        backend=q.backend,
        jobs=jobs,
        kills=len(kills.at),
        seconds=seconds,
        runs=sum(len(r) for r in checked.runs.values()),
        duplicates=checked.duplicates,
        recoveries=recoveries,
        recovery_times=recovery_times(checked.runs, kills),
        locked=locked,
        peak_worker_kib=max(peaks.values()),
    )


def check_soak(q: Queuectl, figures: KillSoak, min_kills: int) -> None:
    print(figures.report())
    assert figures.kills >= min_kills, "the jobs ran out before enough kills"
    assert figures.recovery_times, "no kill cut a run short"
    assert figures.duplicates <= figures.recoveries
    assert figures.locked == 0
    # Same host: a dead worker's jobs are recovered at the next heartbeat of any live
    # worker (or by the replacement as it starts); the bound held everywhere is one
    # lease plus one heartbeat.
    settings = q.json("config", "show")
    bound = settings["lease_timeout"] + settings["heartbeat_interval"] + RECOVERY_SLACK
    assert max(figures.recovery_times) <= bound, sorted(figures.recovery_times)[-5:]


def test_workers_killed_every_few_seconds_lose_nothing_and_run_nothing_twice_at_once(
    sq: Queuectl,
) -> None:
    figures = kill_soak(sq, jobs=300, kill_every=1.2, body="sleep 0.1")
    check_soak(sq, figures, min_kills=2)


@pytest.mark.slow
def test_soak_5000_jobs_with_a_worker_killed_every_3_seconds(qctl: Queuectl) -> None:
    figures = kill_soak(qctl, jobs=5_000, kill_every=3.0, body="sleep 0.1")
    check_soak(qctl, figures, min_kills=10)
