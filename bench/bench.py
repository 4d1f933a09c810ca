"""queuectl benchmark: every figure measured next to its limit, in one run.

Run it with the interpreter queuectl is installed in:

    .venv/bin/python bench/bench.py            # full run, a few minutes
    .venv/bin/python bench/bench.py --quick    # smaller sizes, no 60 s idle case, ~1 minute
    .venv/bin/python bench/bench.py --json     # the same figures as one JSON object on stdout

Everything happens in a fresh temporary directory: the subprocesses get
XDG_DATA_HOME and QUEUECTL_DB pointing into it, in-process stores are opened on
explicit paths there, so the user's own queue is never touched. Progress goes to
stderr; stdout holds only the table (or, with --json, only the JSON object).
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queuectl.models import NewJob
from queuectl.queue.jobspec import new_job_id
from queuectl.storage.sqlfile import load_queries, migration_scripts
from queuectl.storage.sqlite import SQLiteStore

PYTHON = sys.executable
QUEUECTL = str(Path(sys.executable).parent / "queuectl")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SECTIONS = "abcdef"
DONE_STATES = ("completed", "failed", "dead", "canceled")

# The physical limit for (c): the same commands through `sh -c`, nothing else.
PLAIN_RUNNER = """\
import subprocess, sys
command = sys.argv[2]
for _ in range(int(sys.argv[1])):
    subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)  # this process only, not the shells
print(usage.ru_utime + usage.ru_stime)
"""


# -- figures --------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured value, with its target when it has one (`op` and `limit`)."""

    key: str
    name: str
    value: float
    unit: str
    op: str | None = None
    limit: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.op is None or self.limit is None:
            return None
        checks: dict[str, Callable[[float, float], bool]] = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        return checks[self.op](self.value, self.limit)

    @property
    def limit_text(self) -> str:
        if self.op is None or self.limit is None:
            return "(reference)"
        return f"{self.op} {_fmt(self.limit)} {self.unit}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "op": self.op,
            "limit": self.limit,
            "limit_text": self.limit_text,
            "pass": self.passed,
            "details": self.details,
        }


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    digits = max(0, 4 - math.floor(math.log10(abs(value))))
    return round(value, digits)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(figures: Sequence[Figure]) -> str:
    rows = [["FIGURE", "VALUE", "UNIT", "LIMIT/TARGET", "RESULT"]]
    for f in figures:
        verdict = {True: "pass", False: "FAIL", None: "-"}[f.passed]
        rows.append([f"{f.key} {f.name}", _fmt(f.value), f.unit, f.limit_text, verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1])]
        cells += [c.ljust(w) for c, w in zip(r[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# -- statistics and helpers -----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (with fewer than 20 samples: the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def progress(message: str) -> None:
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


def ms(seconds: float) -> float:
    return seconds * 1000.0


class Sandbox:
    """A private temporary directory; every database and data dir of the run lives in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.xdg = root / "xdg"
        self.xdg.mkdir(mode=0o700)

    def db(self, name: str) -> Path:
        return self.root / f"{name}.db"

    def env(self, db: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_DATA_HOME"] = str(self.xdg)
        env["QUEUECTL_DB"] = str(db)
        return env


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[float, bytes]:
    """Run a command to completion; returns (wall seconds, stdout). Fails loudly."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    return took, done.stdout


def read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [QUEUECTL, "worker", "start", "--count", "2", "--quiet"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        progress(f"worker {proc.pid} did not stop within {timeout:g} s of SIGTERM; killing it")
        proc.kill()
        proc.wait()


def wait_for(
    check: Callable[[], bool], timeout: float, interval: float, what: str, proc: Any = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def new_jobs(count: int, command: str = "true") -> list[NewJob]:
    """Jobs as `enqueue` makes them (its id generator), ready for SQLiteStore.enqueue."""
    return [NewJob(id=new_job_id(), command=command, max_retries=3) for _ in range(count)]


def write_jobs_file(path: Path, count: int, command: str = "true") -> None:
    line = json.dumps({"command": command}) + "\n"
    path.write_text(line * count, encoding="utf-8")


# -- CPU accounting from /proc --------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process: the sum over all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def thread_ticks(pid: int) -> dict[str, int]:
    """utime + stime per thread id, from /proc/PID/task/TID/stat."""
    result: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        result[task.name] = int(fields[11]) + int(fields[12])
    return result


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class CpuSample:
    wall: float
    worker: int
    kids: dict[int, int]
    threads: dict[str, int]

    @classmethod
    def take(cls, pid: int) -> CpuSample:
        kids = {k: cpu_ticks(k) for k in children(pid)}
        return cls(time.monotonic(), cpu_ticks(pid), kids, thread_ticks(pid))


def cpu_percent(before: CpuSample, after: CpuSample) -> dict[str, Any]:
    """Percent of one core used between two samples: worker (all threads) + its children."""
    wall = after.wall - before.wall
    worker = (after.worker - before.worker) / CLK_TCK
    kids = sum(after.kids.get(k, t) - t for k, t in before.kids.items()) / CLK_TCK
    threads = {
        tid: round(100.0 * (after.threads.get(tid, t) - t) / CLK_TCK / wall, 3)
        for tid, t in before.threads.items()
    }
    return {
        "percent": 100.0 * (worker + kids) / wall,
        "worker_percent": 100.0 * worker / wall,
        "children_percent": 100.0 * kids / wall,
        "per_thread_percent": threads,
        "window_s": round(wall, 3),
    }


# -- (a) one enqueue vs interpreter start ---------------------------------------------------------


def bench_startup(sb: Sandbox, reps: int) -> list[Figure]:
    progress(f"(a) startup: {reps} x enqueue / python -c pass / import queuectl.cli, interleaved")
    env = sb.env(sb.db("startup"))
    commands = {
        "python": [PYTHON, "-c", "pass"],
        "enqueue": [QUEUECTL, "enqueue", '{"command":"true"}'],
        "import": [PYTHON, "-c", "import queuectl.cli"],
    }
    for argv in commands.values():  # warm-up: creates the database, fills the page cache
        run(argv, env)
    times: dict[str, list[float]] = {k: [] for k in commands}
    names = list(commands)
    for i in range(reps):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(run(commands[name], env)[0])
    py, enq, imp = (median(times[k]) for k in ("python", "enqueue", "import"))
    samples = {k: [round(ms(t), 2) for t in v] for k, v in times.items()}
    return [
        Figure(
            "a1",
            "python -c pass (same interpreter)",
            ms(py),
            "ms",
            details={"samples_ms": samples["python"]},
        ),
        Figure(
            "a2",
            "queuectl enqueue (one job)",
            ms(enq),
            "ms",
            details={"samples_ms": samples["enqueue"], "p95_ms": ms(p95(times["enqueue"]))},
        ),
        Figure(
            "a3",
            "python -c 'import queuectl.cli'",
            ms(imp),
            "ms",
            details={"samples_ms": samples["import"]},
        ),
        Figure("a4", "enqueue / python startup", enq / py, "x", "<", 3.0),
    ]


# -- (b) batched enqueue vs plain executemany -----------------------------------------------------


def sqlite_executemany(path: Path, ids: Sequence[str]) -> float:
    """Insert the rows `enqueue --file` stores, in an equivalent table: the limit."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for _number, _name, script in migration_scripts("sqlite"):  # the shipped schema
            conn.executescript(script)
        now = time.time()
        rows = [(job_id, "true", 3, 0, "default", None, now, now, now) for job_id in ids]
        insert = load_queries("sqlite.sql")["insert_job"]
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


def bench_batch(sb: Sandbox, count: int, reps: int) -> list[Figure]:
    progress(f"(b) batched enqueue: {reps} x {count:,} jobs via --file, and via executemany")
    jobs_file = sb.root / "batch.jsonl"
    write_jobs_file(jobs_file, count)
    cli_times: list[float] = []
    raw_times: list[float] = []
    for r in range(reps):
        db = sb.db(f"batch-cli-{r}")
        took, out = run([QUEUECTL, "enqueue", "--file", str(jobs_file)], sb.env(db))
        ids = out.decode().split()
        if len(ids) != count:
            raise RuntimeError(f"enqueue --file printed {len(ids)} ids, expected {count}")
        cli_times.append(took)
        raw_times.append(sqlite_executemany(sb.db(f"batch-raw-{r}"), ids))
        for path in sb.root.glob("batch-*.db*"):
            path.unlink()
    cli_rate = count / median(cli_times)
    raw_rate = count / median(raw_times)
    return [
        Figure(
            "b1",
            f"enqueue --file, {count:,} jobs",
            cli_rate,
            "jobs/s",
            ">=",
            30_000.0,
            {"samples_s": [round(t, 3) for t in cli_times]},
        ),
        Figure(
            "b2",
            "sqlite3 executemany, same rows",
            raw_rate,
            "jobs/s",
            details={"samples_s": [round(t, 4) for t in raw_times]},
        ),
        Figure("b3", "enqueue --file / executemany", 100.0 * cli_rate / raw_rate, "%"),
    ]


# -- (c) worker throughput vs plain subprocess loop -----------------------------------------------


def worker_run(sb: Sandbox, db: Path, count: int) -> tuple[float, float]:
    """Seconds from starting `worker start --count 2` until `count` jobs completed,
    and the CPU seconds the worker process (all threads) and its watchdog used."""
    env = sb.env(db)
    ro = read_only(db)
    wall0 = time.time()
    proc = start_worker(env, sb.root / "worker-throughput.log")
    try:

        def finished() -> bool:
            row = ro.execute("SELECT count(*) FROM jobs WHERE state = 'completed'").fetchone()
            return int(row[0]) >= count

        wait_for(finished, 600.0, 0.02, f"{count} completed jobs", proc)
        # The jobs' own finish stamps (worker clock = wall clock), not the polling moment.
        last = float(ro.execute("SELECT max(finished_at) FROM jobs").fetchone()[0])
        cpu = sum(cpu_ticks(pid) for pid in (proc.pid, *children(proc.pid))) / CLK_TCK
    finally:
        stop_worker(proc)
        ro.close()
    return last - wall0, cpu


def plain_run(count: int, procs: int = 2) -> tuple[float, float]:
    """Seconds for `procs` Python processes to run `count` `sh -c true` between them,
    and the CPU seconds those Python processes used (their shells not counted)."""
    shares = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            [PYTHON, "-c", PLAIN_RUNNER, str(n), "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        for n in shares
    ]
    cpu = 0.0
    for proc in running:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError("the plain subprocess loop failed")
        cpu += float(out)
    return time.perf_counter() - start, cpu


def bench_throughput(sb: Sandbox, count: int, reps: int) -> list[Figure]:
    progress(f"(c) throughput: {reps} x {count:,} `true` jobs, worker --count 2 vs plain loop")
    jobs_file = sb.root / "throughput.jsonl"
    write_jobs_file(jobs_file, count)
    q_times: list[float] = []
    p_times: list[float] = []
    q_cpu: list[float] = []
    p_cpu: list[float] = []
    for r in range(reps):
        db = sb.db(f"throughput-{r}")
        run([QUEUECTL, "enqueue", "--file", str(jobs_file)], sb.env(db))
        took, cpu = worker_run(sb, db, count)
        q_times.append(took)
        q_cpu.append(cpu)
        took, cpu = plain_run(count)
        p_times.append(took)
        p_cpu.append(cpu)
        progress(f"    round {r + 1}: queuectl {q_times[-1]:.2f} s, plain {p_times[-1]:.2f} s")
    q_rate = count / median(q_times)
    p_rate = count / median(p_times)
    paired = [100.0 * p / q for q, p in zip(q_times, p_times, strict=True)]
    return [
        Figure(
            "c1",
            f"worker --count 2, {count:,} true jobs",
            q_rate,
            "jobs/s",
            details={"samples_s": [round(t, 3) for t in q_times]},
        ),
        Figure(
            "c2",
            "plain sh -c loop, 2 processes",
            p_rate,
            "jobs/s",
            details={"samples_s": [round(t, 3) for t in p_times]},
        ),
        Figure(
            "c3",
            "worker / plain loop",
            100.0 * q_rate / p_rate,
            "%",
            ">=",
            75.0,
            {"per_round_percent": [round(x, 1) for x in paired]},
        ),
        Figure(
            "c4",
            "worker CPU per job (worker + watchdog)",
            ms(median(q_cpu)) / count,
            "ms",
            details={"cpu_s": [round(t, 2) for t in q_cpu]},
        ),
        Figure(
            "c5",
            "plain loop CPU per job (the 2 Python processes)",
            ms(median(p_cpu)) / count,
            "ms",
            details={"cpu_s": [round(t, 2) for t in p_cpu]},
        ),
    ]


# -- (d) pickup latency and idle CPU --------------------------------------------------------------


@dataclass
class Pickup:
    claim: float  # jobs.started_at (the worker's claim) minus the enqueue's commit
    command: float  # the timestamp the command itself wrote minus the enqueue's commit


def bench_latency(
    sb: Sandbox, reps: int, long_idle: float, long_reps: int, cpu_window: float
) -> list[Figure]:
    plan = f"{reps} x 2 s idle"
    if long_idle > 0 and long_reps > 0:
        plan += f", {long_reps} x {long_idle:g} s idle"
    progress(f"(d) pickup latency: {plan}; idle CPU over {cpu_window:g} s")
    db = sb.db("latency")
    store = SQLiteStore(db)  # durable, like the CLI's enqueue
    proc = start_worker(sb.env(db), sb.root / "worker-latency.log")
    ro = read_only(db)
    counter = 0

    def one(idle: float, cpu: list[dict[str, Any]] | None = None) -> Pickup:
        nonlocal counter
        counter += 1
        job_id = f"latency-{counter}"
        stamp = sb.root / f"{job_id}.ts"
        before = CpuSample.take(proc.pid) if cpu is not None else None
        time.sleep(idle)
        if before is not None and cpu is not None:
            cpu.append(cpu_percent(before, CpuSample.take(proc.pid)))
        store.enqueue([NewJob(id=job_id, command=f"date +%s.%N > {stamp}", max_retries=0)])
        committed = time.time()  # the enqueue's transaction has committed (synchronous=FULL)

        def done() -> bool:
            row = ro.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row is not None and row[0] in DONE_STATES

        wait_for(done, 30.0, 0.02, f"job {job_id}", proc)
        state, started = ro.execute(
            "SELECT state, started_at FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if state != "completed":
            raise RuntimeError(f"latency job {job_id} ended {state}")
        return Pickup(float(started) - committed, float(stamp.read_text()) - committed)

    figures: list[Figure] = []
    try:
        wait_for(
            lambda: ro.execute("SELECT count(*) FROM workers").fetchone()[0] > 0,
            30.0,
            0.02,
            "the worker to register",
            proc,
        )
        one(0.5)  # warm-up: the first job also creates the logs directory
        short = [one(2.0) for _ in range(reps)]
        figures += _latency_figures("2 s idle", short, start=1)

        time.sleep(1.0)
        before = CpuSample.take(proc.pid)
        time.sleep(cpu_window)
        idle = cpu_percent(before, CpuSample.take(proc.pid))
        figures.append(
            Figure(
                "d5",
                f"idle CPU, worker + watchdog, {cpu_window:g} s",
                idle.pop("percent"),
                "% core",
                "<",
                2.0,
                idle,
            )
        )

        if long_idle > 0 and long_reps > 0:
            windows: list[dict[str, Any]] = []
            long = [one(long_idle, windows) for _ in range(long_reps)]
            figures += _latency_figures(f"{long_idle:g} s idle", long, start=6)
            total = sum(w["percent"] * w["window_s"] for w in windows)
            seconds = sum(w["window_s"] for w in windows)
            figures.append(
                Figure(
                    "d10",
                    f"idle CPU over the {long_idle:g} s windows",
                    total / seconds,
                    "% core",
                    "<",
                    2.0,
                    {"windows": windows},
                )
            )
    finally:
        stop_worker(proc)
        ro.close()
        store.close()
    return figures


def _latency_figures(label: str, samples: Sequence[Pickup], start: int) -> list[Figure]:
    claims = [ms(s.claim) for s in samples]
    commands = [ms(s.command) for s in samples]
    n = len(samples)
    tail = "p95" if n >= 20 else f"max of {n}" if n < 10 else "p95 (nearest rank)"
    key = "d"
    return [
        Figure(
            f"{key}{start}",
            f"pickup to claim, {label}, median",
            median(claims),
            "ms",
            "<",
            20.0,
            {"samples_ms": [round(x, 2) for x in claims]},
        ),
        Figure(f"{key}{start + 1}", f"pickup to claim, {label}, {tail}", p95(claims), "ms"),
        Figure(
            f"{key}{start + 2}",
            f"pickup to command running, {label}, median",
            median(commands),
            "ms",
            "<",
            20.0,
            {"samples_ms": [round(x, 2) for x in commands]},
        ),
        Figure(
            f"{key}{start + 3}", f"pickup to command running, {label}, {tail}", p95(commands), "ms"
        ),
    ]


# -- (e) claim rate, small vs big queue -----------------------------------------------------------


def build_queue(path: Path, count: int) -> float:
    start = time.perf_counter()
    store = SQLiteStore(path, durable=False)
    try:
        for first in range(0, count, 50_000):
            store.enqueue(new_jobs(min(50_000, count - first)))
    finally:
        store.close()
    return time.perf_counter() - start


@dataclass
class ClaimRun:
    store: SQLiteStore
    durations: list[float] = field(default_factory=list)

    def claims(self, count: int, budget: float) -> None:
        """Time `count` claims one by one (at most `budget` s), topping the queue up after each."""
        spent = 0.0
        for _ in range(count):
            start = time.perf_counter()
            job = self.store.claim("bench-worker", (), 30.0)
            took = time.perf_counter() - start
            if job is None:
                raise RuntimeError("the queue ran dry during the claim benchmark")
            self.durations.append(took)
            self.store.enqueue(new_jobs(1))  # untimed: keep the queue at its size
            spent += took
            if spent > budget:
                return


def bench_claims(
    sb: Sandbox, small: int, big: int, claims: int, budget: float
) -> tuple[list[Figure], Path]:
    progress(f"(e) claim rate: building queues of {small:,} and {big:,} pending jobs")
    small_db, big_db = sb.db("claims-small"), sb.db("claims-big")
    built = {"small_s": round(build_queue(small_db, small), 2)}
    built["big_s"] = round(build_queue(big_db, big), 2)
    progress(
        f"    built in {built['small_s']} s and {built['big_s']} s; timing {claims:,} claims each"
    )
    runs = [
        ClaimRun(SQLiteStore(small_db, durable=False)),
        ClaimRun(SQLiteStore(big_db, durable=False)),
    ]
    try:
        for r in runs:  # warm-up, discarded
            r.claims(20, budget / 10)
            r.durations.clear()
        block = 100
        deadline = time.monotonic() + budget
        while any(len(r.durations) < claims for r in runs) and time.monotonic() < deadline:
            for r in runs:  # alternate blocks: both sizes see the same machine noise
                if len(r.durations) < claims:
                    r.claims(min(block, claims - len(r.durations)), budget / 10)
    finally:
        for r in runs:
            r.store.close()
    rates = [len(r.durations) / sum(r.durations) for r in runs]
    info = [
        {
            "claims_timed": len(r.durations),
            "median_us": round(1e6 * median(r.durations), 1),
            "p95_us": round(1e6 * p95(r.durations), 1),
        }
        for r in runs
    ]
    if any(len(r.durations) < claims for r in runs):
        progress(f"    time budget of {budget:g} s ran out: fewer claims timed ({info})")
    figures = [
        Figure(
            "e1",
            f"claims/s, {small:,} waiting",
            rates[0],
            "claims/s",
            details={**info[0], "build": built},
        ),
        Figure("e2", f"claims/s, {big:,} waiting", rates[1], "claims/s", details=info[1]),
        Figure(
            "e3", f"claim rate {big:,} / {small:,}", 100.0 * rates[1] / rates[0], "%", ">=", 80.0
        ),
    ]
    return figures, big_db


# -- (f) status at scale --------------------------------------------------------------------------


def bench_status(sb: Sandbox, db: Path, jobs: int, reps: int) -> list[Figure]:
    progress(f"(f) status: {reps} x `queuectl status` and count_by_state() at {jobs:,} jobs")
    env = sb.env(db)
    run([QUEUECTL, "status"], env)  # warm-up
    store = SQLiteStore(db)
    cli: list[float] = []
    inproc: list[float] = []
    try:
        store.count_by_state()
        for _ in range(reps):
            cli.append(run([QUEUECTL, "status"], env)[0])
            start = time.perf_counter()
            counts = store.count_by_state()
            inproc.append(time.perf_counter() - start)
    finally:
        store.close()
    total = sum(counts.values())
    return [
        Figure(
            "f1",
            f"queuectl status, {total:,} jobs",
            ms(median(cli)),
            "ms",
            "<",
            200.0,
            {"samples_ms": [round(ms(t), 1) for t in cli]},
        ),
        Figure(
            "f2",
            "count_by_state() in process",
            ms(median(inproc)),
            "ms",
            details={"samples_ms": [round(ms(t), 2) for t in inproc]},
        ),
    ]


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure queuectl's figures next to their limits (see bench/README.md)."
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no 60 s idle case")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--only", default=SECTIONS, help="sections to run, e.g. 'ace' (default: abcdef)"
    )
    parser.add_argument("--startup-reps", type=int, default=20, help="(a) runs of each command")
    parser.add_argument("--batch-jobs", type=int, help="(b) jobs per batch (100000; quick 20000)")
    parser.add_argument("--batch-reps", type=int, default=3, help="(b) rounds")
    parser.add_argument("--throughput-jobs", type=int, default=2000, help="(c) jobs per round")
    parser.add_argument("--throughput-reps", type=int, default=3, help="(c) rounds")
    parser.add_argument("--latency-reps", type=int, help="(d) jobs after 2 s idle (15; quick 10)")
    parser.add_argument(
        "--long-idle", type=float, help="(d) long idle seconds (60; quick: 0 = skip)"
    )
    parser.add_argument("--long-idle-reps", type=int, default=3, help="(d) jobs after long idle")
    parser.add_argument("--cpu-window", type=float, default=5.0, help="(d) idle CPU window, s")
    parser.add_argument("--small-jobs", type=int, default=1000, help="(e) small queue size")
    parser.add_argument(
        "--big-jobs", type=int, help="(e, f) big queue size (1000000; quick 200000)"
    )
    parser.add_argument("--claims", type=int, default=5000, help="(e) claims timed per queue")
    parser.add_argument(
        "--claim-budget", type=float, help="(e) max seconds of claiming (30; quick 20)"
    )
    parser.add_argument("--status-reps", type=int, default=5, help="(f) runs of queuectl status")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "batch_jobs": 20_000 if quick else 100_000,
        "latency_reps": 10 if quick else 15,
        "long_idle": 0.0 if quick else 60.0,
        "big_jobs": 200_000 if quick else 1_000_000,
        "claim_budget": 20.0 if quick else 30.0,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(
            f"--only: unknown section(s) {''.join(sorted(unknown))}; use letters of abcdef"
        )
    return args


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree had changes (they are measured too)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return {}
    return {"commit": head, "src_modified": bool(dirty)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(QUEUECTL).exists():
        sys.stderr.write(f"bench: {QUEUECTL} not found: run this with the venv's python\n")
        return 2
    started = time.monotonic()
    load_before = os.getloadavg()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="queuectl-bench-", ignore_cleanup_errors=True) as tmp:
        sb = Sandbox(Path(tmp))
        progress(f"working in {tmp} ({'quick' if args.quick else 'full'} run)")
        errors: dict[str, str] = {}

        def section(letters: str, body: Callable[[], list[Figure]]) -> None:
            """Run one section; a failure is reported and the other sections still run."""
            try:
                figures.extend(body())
            except Exception as exc:
                errors[letters] = f"{type(exc).__name__}: {exc}"
                progress(f"({letters}) failed: {errors[letters]}")

        big_db: list[Path] = []

        def claims() -> list[Figure]:
            found, db = bench_claims(
                sb, args.small_jobs, args.big_jobs, args.claims, args.claim_budget
            )
            big_db.append(db)
            return found if "e" in args.only else []

        if "a" in args.only:
            section("a", lambda: bench_startup(sb, args.startup_reps))
        if "b" in args.only:
            section("b", lambda: bench_batch(sb, args.batch_jobs, args.batch_reps))
        if "c" in args.only:
            section("c", lambda: bench_throughput(sb, args.throughput_jobs, args.throughput_reps))
        if "d" in args.only:
            section(
                "d",
                lambda: bench_latency(
                    sb, args.latency_reps, args.long_idle, args.long_idle_reps, args.cpu_window
                ),
            )
        if "e" in args.only or "f" in args.only:
            section("e", claims)
        if "f" in args.only and big_db:
            section("f", lambda: bench_status(sb, big_db[0], args.big_jobs, args.status_reps))
        if args.keep:
            keep = Path(tempfile.mkdtemp(prefix="queuectl-bench-kept-"))
            for item in Path(tmp).iterdir():
                item.rename(keep / item.name)
            progress(f"kept the run's files in {keep}")
    missed = [f for f in figures if f.passed is False]
    report = {
        "mode": "quick" if args.quick else "full",
        "python": PYTHON,
        "python_version": platform.python_version(),
        "sqlite_version": sqlite3.sqlite_version,
        "queuectl": QUEUECTL,
        "git": git_state(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.monotonic() - started, 1),
        "sizes": {
            k: getattr(args, k)
            for k in (
                "startup_reps",
                "batch_jobs",
                "batch_reps",
                "throughput_jobs",
                "throughput_reps",
                "latency_reps",
                "long_idle",
                "long_idle_reps",
                "cpu_window",
                "small_jobs",
                "big_jobs",
                "claims",
                "status_reps",
            )
        },
        "figures": {f.key: f.to_dict() for f in figures},
        "targets_missed": [f.key for f in missed],
        "errors": errors,
        "all_passed": not missed and not errors,
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(figures) + "\n")
        sys.stdout.write(
            f"\n{len(figures)} figures in {report['duration_s']} s; targets missed: "
            f"{', '.join(f.key for f in missed) or 'none'}; "
            f"sections that failed: {', '.join(errors) or 'none'}; load average "
            f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n"
        )
    if errors:
        return 1
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
