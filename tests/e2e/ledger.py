"""The run ledger and the one invariant check every fault scenario ends with.

Jobs in fault tests record each run by appending short lines to a ledger file, so
the checks count real side effects rather than what the queue says about itself:

    start JOB_ID ATTEMPT PID PPID T      written first thing by the job's shell
    end   JOB_ID ATTEMPT PID T RC        written last, after the job's body

`ATTEMPT` is `$QUEUECTL_ATTEMPT`, `PID` the job's shell (`$$`, the leader of its
process group), `PPID` the worker process that started it, `RC` the body's exit
status. `T` is read from /proc/uptime with the shell's `read` builtin (no process
is forked, so ledger jobs stay as cheap as `true`): CLOCK_BOOTTIME in seconds, with
10 ms resolution, monotonic and blind to wall-clock jumps. The test side reads the
same clock (`uptime()`), so times on both sides compare. Truncating to 10 ms keeps
order weakly (an event really before another never reads as after it), so every
comparison below allows equality; overlaps shorter than 10 ms cannot be seen, which
is why scenarios without crashes also count runs exactly.

A run killed with its worker has a start line and no end line; `Kills` records when
the test killed which worker, and `check_invariants` explains how such a run ends.
"""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import Queuectl, WorkerProcess
from tests.e2e.conftest import epoch, quote_path

#: How long after its lease expired a `running` job may still be seen before that
#: counts as stuck: one heartbeat (the next recovery sweep) plus this much slack for
#: a loaded machine.
RECOVERY_SLACK = 2.0
#: How long a run may go on after its worker was killed: the watchdog kills the job's
#: process group within milliseconds; this is slack for a loaded machine.
WATCHDOG_GRACE = 2.0
#: Exit codes the CLI documents (README, "Errors and exit codes").
CLI_EXIT_CODES = {0, 1, 2}

RECOVERED = re.compile(r"^queuectl: \[(\S+)\] recovered from lost worker ", re.MULTILINE)


def uptime() -> float:
    """Now on the ledger's clock (CLOCK_BOOTTIME via /proc/uptime, 10 ms steps)."""
    return float(Path("/proc/uptime").read_text().split()[0])


def bad_output(text: str) -> bool:
    """Output that betrays a crash (a traceback) or lock contention shown to a user."""
    return "Traceback" in text or "locked" in text.lower()


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident memory (VmHWM, KiB) of a live process, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Run:
    """One run of a job as its own shell recorded it."""

    job_id: str
    attempt: int
    pid: int
    ppid: int
    start: float
    end: float | None
    exit_code: int | None


class Ledger:
    """A ledger file, the job commands that append to it, and its parsed runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._quoted = quote_path(path)

    def command(self, body: str | None = None) -> str:
        """A job command that records its run around `body` (a shell fragment run in a
        subshell, so its `exit` still reaches the end line; without a body the job
        records an empty, successful run). The job exits with the body's status."""
        clock = "read t _ < /proc/uptime"
        env = "$QUEUECTL_JOB_ID $QUEUECTL_ATTEMPT $$"
        start = f'{clock}; echo "start {env} $PPID $t" >> {self._quoted}'
        if body is None:
            return f'{start}; {clock}; echo "end {env} $t 0" >> {self._quoted}'
        end = f'{clock}; echo "end {env} $t $rc" >> {self._quoted}'
        return f"{start}; ( {body} ); rc=$?; {end}; exit $rc"

    def records(self, job: dict[str, Any]) -> bool:
        """Whether this job's command writes to this ledger."""
        return self._quoted in str(job["command"])

    def runs(self) -> list[Run]:
        """Every run in the ledger, in the order they started (file order for ties)."""
        text = self.path.read_text() if self.path.exists() else ""
        open_runs: dict[tuple[str, int], tuple[int, int, float]] = {}
        done: list[Run] = []
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            where = f"ledger line {number}: {line!r}"
            if fields and fields[0] == "start" and len(fields) == 6:
                key = (fields[1], int(fields[3]))
                assert key not in open_runs, f"{where}: a second start of one shell"
                open_runs[key] = (int(fields[2]), int(fields[4]), float(fields[5]))
            elif fields and fields[0] == "end" and len(fields) == 6:
                key = (fields[1], int(fields[3]))
                assert key in open_runs, f"{where}: an end without its start"
                attempt, ppid, start = open_runs.pop(key)
                assert int(fields[2]) == attempt, f"{where}: attempt changed during the run"
                end = float(fields[4])
                assert end >= start, f"{where}: ends before it started"
                done.append(Run(key[0], attempt, key[1], ppid, start, end, int(fields[5])))
            else:
                raise AssertionError(f"{where}: malformed")
        done.extend(
            Run(job_id, attempt, pid, ppid, start, None, None)
            for (job_id, pid), (attempt, ppid, start) in open_runs.items()
        )
        return sorted(done, key=lambda r: r.start)

    def by_job(self) -> dict[str, list[Run]]:
        """Runs grouped by job, each list in start order."""
        grouped: dict[str, list[Run]] = {}
        for run in self.runs():
            grouped.setdefault(run.job_id, []).append(run)
        return grouped


@dataclass
class Kills:
    """Which worker processes died by a kill, and when (on the ledger's clock)."""

    #: worker pid -> kill time: taken just *before* a kill the test sends (so it is
    #: never later than the real kill), or just after the test saw a worker gone that
    #: it did not kill itself (a job that killed its worker): then it is never earlier
    #: than the real death, and the test starts no new worker before taking it.
    at: dict[int, float] = field(default_factory=dict)
    #: Peak memory (VmHWM, KiB) of each killed worker, read just before the kill.
    peak_kib: dict[int, int] = field(default_factory=dict)

    def kill9(self, worker: WorkerProcess) -> float:
        """SIGKILL a worker process; returns (and records) the kill time."""
        hwm = vm_hwm_kib(worker.pid)
        if hwm is not None:
            self.peak_kib[worker.pid] = hwm
        self.at[worker.pid] = when = uptime()
        worker.signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL, worker.stderr()
        return when

    def killing(self, pid: int) -> float:
        """Record a kill the test is about to send some other way (e.g. `killpg`)."""
        self.at[pid] = when = uptime()
        return when

    def died(self, worker: WorkerProcess) -> None:
        """Record a worker the test found dead of a SIGKILL it did not send."""
        assert worker.proc.poll() == -signal.SIGKILL, worker.stderr()
        self.at[worker.pid] = uptime()


@dataclass
class Checked:
    """What `check_invariants` saw, for scenario-specific assertions and figures."""

    jobs: dict[str, dict[str, Any]]
    runs: dict[str, list[Run]]

    @property
    def duplicates(self) -> int:
        """Runs beyond each job's first."""
        return sum(len(r) - 1 for r in self.runs.values() if r)


def effective_end(run: Run, kills: Kills) -> float:
    """When a run stopped, as far as the ledger and the kill record show (see
    `check_invariants`); infinity when nothing shows that it stopped."""
    if run.end is not None:
        return run.end
    if run.ppid in kills.at:
        return max(run.start, kills.at[run.ppid])
    return float("inf")


def check_overlaps(job_id: str, runs: list[Run], kills: Kills) -> None:
    """No two runs of one job overlap (the rule is in `check_invariants`)."""
    latest_end = float("-inf")
    previous: Run | None = None
    for run in runs:
        assert run.start >= latest_end, (
            f"job {job_id} ran concurrently with itself: {run} started before {previous} "
            f"had stopped (stopped at {latest_end})"
        )
        if run.end is not None and run.ppid in kills.at:
            assert run.end <= kills.at[run.ppid] + WATCHDOG_GRACE, (
                f"job {job_id}'s run {run} went on after its worker was killed at "
                f"{kills.at[run.ppid]}"
            )
        end = effective_end(run, kills)
        if end >= latest_end:
            latest_end, previous = end, run


def check_job(job: dict[str, Any], runs: list[Run], ledger_job: bool) -> None:
    """Runs, attempts and recoveries of one job agree with its state and its limits."""
    job_id, state = job["id"], job["state"]
    limit = max(int(job["max_retries"]), 1)
    attempts, recoveries = int(job["attempts"]), int(job["recoveries"])
    assert attempts <= limit and recoveries <= limit, job
    exhausted = attempts >= limit or recoveries >= limit
    if state in ("pending", "failed", "running"):
        assert not exhausted, f"job {job_id} is {state} with its attempts used up: {job}"
    if state == "dead":
        assert exhausted, f"job {job_id} is dead with attempts to spare: {job}"
    if not ledger_job:
        return
    assert len(runs) <= int(job["runs"]), f"job {job_id}: more runs than claims: {runs} {job}"
    allowed = attempts + recoveries + (1 if state == "running" else 0)
    assert len(runs) <= allowed, (
        f"job {job_id} ran {len(runs)} times; only {attempts} attempt(s) and "
        f"{recoveries} recovery(ies) explain runs: {runs}"
    )
    numbers = [r.attempt for r in runs]
    assert numbers == sorted(numbers), f"job {job_id}: attempt numbers went back: {runs}"
    assert all(1 <= n <= limit for n in numbers), f"job {job_id}: attempt out of range: {runs}"
    if state == "completed":
        assert any(r.exit_code == 0 for r in runs), f"job {job_id} completed, never ran: {runs}"


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` over a read-only connection."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("PRAGMA integrity_check").fetchone()
    finally:
        conn.close()
    return str(row[0])


def check_outputs(
    q: Queuectl, kills: Kills, outputs: Iterable[tuple[str, int | None, str]]
) -> None:
    """Every CLI call and worker: a documented exit code, no traceback, no "locked"."""
    calls = [(" ".join(c.args[1:]), c.returncode, c.stderr) for c in q.calls]
    for what, code, stderr in [*calls, *outputs]:
        assert code is None or code in CLI_EXIT_CODES, (
            f"`queuectl {what}` exited {code}: {stderr!r}"
        )
        assert not bad_output(stderr), f"`queuectl {what}` printed: {stderr!r}"
    for worker in q.workers:
        text = worker.stderr() + worker.stdout()
        assert not bad_output(text), f"worker {worker.pid} printed: {text[-2000:]!r}"
        code = worker.proc.poll()
        killed = code == -signal.SIGKILL and worker.pid in kills.at
        assert code is None or code in CLI_EXIT_CODES or killed, (
            f"worker {worker.pid} exited {code}: {worker.stderr()[-2000:]!r}"
        )


def check_invariants(
    q: Queuectl,
    *,
    acked: Iterable[str],
    ledger: Ledger | None = None,
    kills: Kills | None = None,
    outputs: Iterable[tuple[str, int | None, str]] = (),
) -> Checked:
    """The invariants every fault scenario ends with; returns what it saw.

    - No acknowledged enqueue is missing: every id in `acked` (ids the test got back
      from `enqueue`) is in the database.
    - Nothing is `running` with a lease that expired more than one heartbeat (the
      next recovery sweep) plus `RECOVERY_SLACK` ago. A scenario whose workers are
      all dead checks only after a worker is live again, or once no job is running.
    - No job ran concurrently with itself. A run's interval is [start, end] from the
      ledger. A run with no end line was cut short: if its worker (`PPID`) is in
      `kills`, it ended when that worker was killed (the watchdog kills the job's
      process group at once; a run whose *end line* comes more than
      `WATCHDOG_GRACE` after its worker's kill is itself a failure); if the worker
      was never killed, nothing shows that the run stopped, so it is taken to last
      for ever and any later run of that job fails the check (a job that SIGKILLs
      its own shell must therefore have a single attempt). Every run of a job must
      start at or after the end of every earlier-starting run of that job.
    - Runs are bounded: a job's ledger runs are at most its claims (`runs`), and at
      most `attempts + recoveries` (+1 while `running`): every run beyond the first
      is explained by a charged failure or a recorded recovery of a lost worker
      (scenarios here never interrupt a worker gracefully, which releases a run
      uncharged). `attempts` and `recoveries` stay within `max_retries`, a job
      whose attempts or recoveries are used up is `dead` and only then, attempt
      numbers never go back, and a completed job had a run that exited 0.
    - SQLite: `PRAGMA integrity_check` is ok.
    - The CLI never printed a traceback or "locked" and exited only 0, 1 or 2: every
      command `q.run` made, every `(what, exit code, stderr)` in `outputs` (commands
      the test ran itself; exit code None for one the test killed), and every worker
      in `q.workers` (which may also have died of a SIGKILL recorded in `kills`).
    """
    kills = kills or Kills()
    jobs: dict[str, dict[str, Any]] = {j["id"]: j for j in q.json("list")}
    missing = set(acked) - set(jobs)
    assert not missing, f"{len(missing)} acknowledged job(s) missing, e.g. {sorted(missing)[:5]}"

    hb = float(q.run("config", "get", "heartbeat_interval").stdout)
    now = time.time()
    for job in jobs.values():
        if job["state"] == "running":
            lease = job["lease_expires_at"]
            assert lease is not None, f"running without a lease: {job}"
            assert now - epoch(lease) <= hb + RECOVERY_SLACK, f"stuck running: {job}"

    runs = ledger.by_job() if ledger is not None else {}
    unknown = set(runs) - set(jobs)
    assert not unknown, f"the ledger has runs of jobs not in the queue: {sorted(unknown)[:5]}"
    for job_id, job in jobs.items():
        job_runs = runs.get(job_id, [])
        check_overlaps(job_id, job_runs, kills)
        check_job(job, job_runs, ledger is not None and ledger.records(job))

    if q.db_file is not None:
        assert integrity(q.db_file) == "ok"
    check_outputs(q, kills, outputs)
    return Checked(jobs, runs)


def recovered_lines(q: Queuectl) -> Counter[str]:
    """How many "[ID] recovered from lost worker" lines all workers printed, per job
    (workers print them unless started with --quiet)."""
    seen: Counter[str] = Counter()
    for worker in q.workers:
        seen.update(RECOVERED.findall(worker.stderr()))
    return seen


def recovery_times(runs: dict[str, list[Run]], kills: Kills) -> list[float]:
    """For each run cut short by a kill (no end line, its worker killed): seconds from
    the kill until that job's next run started."""
    times = []
    for job_runs in runs.values():
        for index, run in enumerate(job_runs):
            if run.end is None and run.ppid in kills.at:
                later = [r.start for r in job_runs[index + 1 :]]
                if later:
                    times.append(later[0] - kills.at[run.ppid])
    return times
