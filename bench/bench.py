"""queuectl benchmark: every figure measured next to its limit, in one run.

Run it with the interpreter queuectl is installed in:

    .venv/bin/python bench/bench.py            # full run, a few minutes
    .venv/bin/python bench/bench.py --quick    # smaller sizes, no 60 s idle case, ~1 minute
    .venv/bin/python bench/bench.py --json     # the same figures as one JSON object on stdout

Sections a-f measure the SQLite backend, g-i the PostgreSQL one (at --pg-url or
$QUEUECTL_BENCH_PG; skipped, with a line saying why, when it cannot be reached).

Everything happens in a fresh temporary directory: the subprocesses get
XDG_DATA_HOME and QUEUECTL_DB pointing into it, in-process stores are opened on
explicit paths there, so the user's own queue is never touched. On PostgreSQL
each section works in a fresh schema that it creates and drops. Progress goes to
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
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from queuectl.models import NewJob
from queuectl.paths import redact_url
from queuectl.queue.jobspec import new_job_id
from queuectl.storage.sqlfile import load_queries, migration_scripts
from queuectl.storage.sqlite import SQLiteStore

if TYPE_CHECKING:  # psycopg is optional: imported where the PostgreSQL sections need it
    import psycopg

    from queuectl.storage.postgres import PostgresStore

PYTHON = sys.executable
QUEUECTL = str(Path(sys.executable).parent / "queuectl")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SQLITE_SECTIONS = "abcdef"
PG_SECTIONS = "ghi"
SECTIONS = SQLITE_SECTIONS + PG_SECTIONS
SECTION_TITLES = {
    "g": "PostgreSQL worker throughput",
    "h": "PostgreSQL pickup latency and idle CPU",
    "i": "PostgreSQL claim rate",
}
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
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


def render_table(figures: Sequence[Figure], skipped: dict[str, str] | None = None) -> str:
    rows = [["FIGURE", "VALUE", "UNIT", "LIMIT/TARGET", "RESULT"]]
    for f in figures:
        verdict = {True: "pass", False: "FAIL", None: "-"}[f.passed]
        rows.append([f"{f.key} {f.name}", _fmt(f.value), f.unit, f.limit_text, verdict])
    for letter, reason in (skipped or {}).items():
        title = SECTION_TITLES.get(letter, f"section {letter}")
        short = reason.split(" (")[0]  # the full reason is on stderr and in the JSON
        rows.append([f"{letter}  {title}: {short}", "-", "", "", "skipped"])
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

    def env(self, db: Path | str) -> dict[str, str]:
        env = dict(os.environ)
        # As on a user's machine, Python caches queuectl's bytecode (some shells and
        # tools export PYTHONDONTWRITEBYTECODE=1, which makes every run recompile it).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
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


# -- PostgreSQL: schemas, connections, clocks ----------------------------------------------------


def pg_problem(url: str) -> str | None:
    """Why the PostgreSQL sections cannot run (None when they can)."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {redact_url(url)} is not reachable ({first})"
    return None


def pg_server(url: str) -> dict[str, Any]:
    """What the JSON records about the server (the URL without its password)."""
    with pg_connect(url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('synchronous_commit', 'fsync', 'shared_buffers', 'wal_sync_method')"
            ).fetchall()
        )
        version = scalar(conn, "SHOW server_version")
    return {"url": redact_url(url), "server_version": version, "settings": settings}


def pg_connect(url: str) -> psycopg.Connection[Any]:
    """A plain autocommit connection (tuple rows): every statement is its own transaction."""
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def url_with(url: str, schema: str, application_name: str) -> str:
    """`url` with `search_path` set to `schema` (`?options=-csearch_path%3D...`, as the
    tests do) and an application_name that marks the run's own sessions."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = f"{query.get('options', '')} -csearch_path={schema}".strip()
    query.update(options=options, application_name=application_name)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@dataclass
class PgSchema:
    """A fresh schema in the benchmark's database; `url()` connects into it."""

    base: str
    name: str

    def url(self, role: str) -> str:
        """`role` names the sessions: "cli" for the queuectl processes, "bench" for ours."""
        return url_with(self.base, self.name, f"{self.name}:{role}")

    def backend_pids(self, conn: psycopg.Connection[Any], role: str) -> list[int]:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"{self.name}:{role}",),
        ).fetchall()
        return [int(r[0]) for r in rows]


@contextmanager
def pg_schema(base: str, label: str) -> Iterator[PgSchema]:
    """Create an empty schema, yield it, then end its sessions and drop it."""
    from psycopg import sql

    name = f"queuectl_bench_{label}_{uuid.uuid4().hex[:8]}"
    with pg_connect(base) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield PgSchema(base, name)
    finally:
        with pg_connect(base) as conn:
            # Our workers are stopped by then; this only ends sessions left behind by a crash.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND starts_with(application_name, %s)",
                (f"{name}:",),
            )
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def db_clock_offset(conn: psycopg.Connection[Any], samples: int = 7) -> float:
    """Database clock minus this host's time.time(), from the sample with the shortest
    round trip (a few tens of microseconds on a local server)."""
    best: tuple[float, float] | None = None
    for _ in range(samples):
        before = time.time()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        after = time.time()
        assert row is not None
        trip, offset = after - before, float(row[0]) - (before + after) / 2
        if best is None or trip < best[0]:
            best = (trip, offset)
    assert best is not None
    return best[1]


def scalar(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- (g) worker throughput on PostgreSQL ----------------------------------------------------------


@dataclass
class PgWorkerRound:
    seconds: float  # worker process start -> last finished_at, on the database clock
    cpu: float  # CPU seconds of the worker (all threads) and its watchdog
    enqueue: float  # wall seconds of `enqueue --file`
    server_cpu: float  # CPU seconds of the worker's PostgreSQL backends (-1: not readable)


def pg_worker_run(sb: Sandbox, base: str, jobs_file: Path, count: int, r: int) -> PgWorkerRound:
    with pg_schema(base, f"g{r}") as schema:
        env = sb.env(schema.url("cli"))
        run([QUEUECTL, "db", "migrate"], env)
        enqueue, _ = run([QUEUECTL, "enqueue", "--file", str(jobs_file)], env)
        with pg_connect(schema.url("bench")) as conn:
            offset = db_clock_offset(conn)
            wall0 = time.time()
            proc = start_worker(env, sb.root / "worker-pg-throughput.log")
            try:
                wait_for(
                    lambda: (
                        scalar(conn, "SELECT count(*) FROM jobs WHERE state = 'completed'") >= count
                    ),
                    600.0,
                    0.02,
                    f"{count} completed jobs",
                    proc,
                )
                last = float(scalar(conn, "SELECT max(finished_at) FROM jobs"))
                cpu = sum(cpu_ticks(pid) for pid in (proc.pid, *children(proc.pid))) / CLK_TCK
                try:
                    backends = schema.backend_pids(conn, "cli")
                    server = sum(cpu_ticks(pid) for pid in backends) / CLK_TCK
                except OSError:
                    server = -1.0
            finally:
                stop_worker(proc)
    # started at wall0 on this host's clock = wall0 + offset on the database clock
    return PgWorkerRound(last - (wall0 + offset), cpu, enqueue, server)


def bench_pg_throughput(sb: Sandbox, base: str, count: int, reps: int) -> list[Figure]:
    progress(
        f"(g) PostgreSQL throughput: {reps} x {count:,} `true` jobs, worker --count 2 vs plain loop"
    )
    jobs_file = sb.root / "pg-throughput.jsonl"
    write_jobs_file(jobs_file, count)
    rounds: list[PgWorkerRound] = []
    p_times: list[float] = []
    p_cpu: list[float] = []
    for r in range(reps):
        rounds.append(pg_worker_run(sb, base, jobs_file, count, r))
        took, cpu = plain_run(count)
        p_times.append(took)
        p_cpu.append(cpu)
        progress(f"    round {r + 1}: queuectl {rounds[-1].seconds:.2f} s, plain {took:.2f} s")
    q_times = [x.seconds for x in rounds]
    q_rate = count / median(q_times)
    p_rate = count / median(p_times)
    paired = [100.0 * p / q for q, p in zip(q_times, p_times, strict=True)]
    server = [x.server_cpu for x in rounds]
    return [
        Figure(
            "g1",
            f"PostgreSQL: worker --count 2, {count:,} true jobs",
            q_rate,
            "jobs/s",
            details={
                "samples_s": [round(t, 3) for t in q_times],
                "enqueue_file_s": [round(x.enqueue, 3) for x in rounds],
                "clock": "finished_at (database clock) - worker start (converted to it)",
            },
        ),
        Figure(
            "g2",
            "plain sh -c loop, 2 processes (same run)",
            p_rate,
            "jobs/s",
            details={"samples_s": [round(t, 3) for t in p_times]},
        ),
        Figure(
            "g3",
            "PostgreSQL worker / plain loop",
            100.0 * q_rate / p_rate,
            "%",
            details={"per_round_percent": [round(x, 1) for x in paired]},
        ),
        Figure(
            "g4",
            "PostgreSQL worker CPU per job (worker + watchdog)",
            ms(median([x.cpu for x in rounds])) / count,
            "ms",
            details={
                "cpu_s": [round(x.cpu, 2) for x in rounds],
                "server_backends_cpu_s": [round(t, 2) for t in server],
                "server_backends_ms_per_job": (
                    round(ms(median(server)) / count, 3) if min(server) >= 0 else None
                ),
            },
        ),
        Figure(
            "g5",
            "plain loop CPU per job (the 2 Python processes)",
            ms(median(p_cpu)) / count,
            "ms",
            details={"cpu_s": [round(t, 2) for t in p_cpu]},
        ),
    ]


def compare_backends(figures: Sequence[Figure]) -> list[Figure]:
    """g6: the PostgreSQL worker's rate next to the SQLite one measured in the same run."""
    by_key = {f.key: f for f in figures}
    if "c1" not in by_key or "g1" not in by_key:
        return []
    sqlite_rate, pg_rate = by_key["c1"].value, by_key["g1"].value
    ratios = {}
    if "c3" in by_key and "g3" in by_key:
        ratios = {"sqlite_c3_percent": _round(by_key["c3"].value)}
    return [
        Figure(
            "g6",
            "PostgreSQL worker / SQLite worker (c1)",
            100.0 * pg_rate / sqlite_rate,
            "%",
            details={"sqlite_jobs_per_s": _round(sqlite_rate), **ratios},
        )
    ]


# -- (h) pickup latency with LISTEN/NOTIFY and idle CPU on PostgreSQL -----------------------------


@dataclass
class PgPickup:
    claim: float  # started_at - the database clock read right after the enqueue committed
    since_created: float  # started_at - created_at (the enqueue transaction's start)
    command: float  # the command's own timestamp - time.time() right after the commit


def bench_pg_latency(sb: Sandbox, base: str, reps: int, cpu_window: float) -> list[Figure]:
    from queuectl.storage.postgres import PostgresStore

    progress(f"(h) PostgreSQL pickup latency: {reps} x 2 s idle; idle CPU over {cpu_window:g} s")
    with pg_schema(base, "h") as schema:
        env = sb.env(schema.url("cli"))
        run([QUEUECTL, "db", "migrate"], env)
        store = PostgresStore(schema.url("bench"), require_schema=True)
        conn = pg_connect(schema.url("bench"))
        proc = start_worker(env, sb.root / "worker-pg-latency.log")
        try:
            return _pg_latency(sb, schema, store, conn, proc, reps, cpu_window)
        finally:
            stop_worker(proc)
            conn.close()
            store.close()


def _pg_latency(
    sb: Sandbox,
    schema: PgSchema,
    store: PostgresStore,
    conn: psycopg.Connection[Any],
    proc: subprocess.Popen[bytes],
    reps: int,
    cpu_window: float,
) -> list[Figure]:
    counter = 0

    def one(idle: float) -> PgPickup:
        nonlocal counter
        counter += 1
        job_id = f"pg-latency-{counter}"
        stamp = sb.root / f"{job_id}.ts"
        time.sleep(idle)
        # The real store's enqueue: INSERT + NOTIFY in one transaction, like the CLI's.
        store.enqueue([NewJob(id=job_id, command=f"date +%s.%N > {stamp}", max_retries=0)])
        local_commit = time.time()
        # A new transaction after the commit returned: its now() is on the database clock,
        # at most one round trip after the commit.
        db_commit = float(scalar(conn, "SELECT queuectl_now()"))

        def done() -> bool:
            row = conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()
            return row is not None and row[0] in DONE_STATES

        wait_for(done, 30.0, 0.02, f"job {job_id}", proc)
        row = conn.execute(
            "SELECT state, started_at, created_at FROM jobs WHERE id = %s", (job_id,)
        ).fetchone()
        assert row is not None
        state, started, created = row
        if state != "completed":
            raise RuntimeError(f"latency job {job_id} ended {state}")
        return PgPickup(
            float(started) - db_commit,
            float(started) - float(created),
            float(stamp.read_text()) - local_commit,
        )

    wait_for(
        lambda: scalar(conn, "SELECT count(*) FROM workers") > 0,
        30.0,
        0.02,
        "the worker to register",
        proc,
    )
    one(0.5)  # warm-up: the first job also creates the logs directory
    samples = [one(2.0) for _ in range(reps)]
    claims = [ms(s.claim) for s in samples]
    created = [ms(s.since_created) for s in samples]
    commands = [ms(s.command) for s in samples]
    n = len(samples)
    tail = "p95" if n >= 20 else f"max of {n}" if n < 10 else "p95 (nearest rank)"

    time.sleep(1.0)
    backends = schema.backend_pids(conn, "cli")
    before = CpuSample.take(proc.pid)
    try:
        server_before: dict[int, int] | None = {pid: cpu_ticks(pid) for pid in backends}
    except OSError:
        server_before = None
    time.sleep(cpu_window)
    idle = cpu_percent(before, CpuSample.take(proc.pid))
    server_percent: float | None = None
    if server_before is not None:
        try:
            used = sum(cpu_ticks(pid) - t for pid, t in server_before.items())
            server_percent = round(100.0 * used / CLK_TCK / idle["window_s"], 3)
        except OSError:
            server_percent = None
    idle["server_backends_percent"] = server_percent
    idle["server_backends"] = len(backends)
    return [
        Figure(
            "h1",
            "PostgreSQL pickup to claim, 2 s idle, median",
            median(claims),
            "ms",
            "<",
            20.0,
            {
                "samples_ms": [round(x, 2) for x in claims],
                "clock": "started_at - queuectl_now() read right after the enqueue's commit "
                "(both the database clock)",
            },
        ),
        Figure("h2", f"PostgreSQL pickup to claim, 2 s idle, {tail}", p95(claims), "ms"),
        Figure(
            "h3",
            "PostgreSQL pickup to command running, 2 s idle, median",
            median(commands),
            "ms",
            details={
                "samples_ms": [round(x, 2) for x in commands],
                "p95_ms": round(p95(commands), 2),
                "clock": "the command's date +%s.%N - time.time() after the commit (host clock)",
            },
        ),
        Figure(
            "h4",
            "started_at - created_at (enqueue transaction start), median",
            median(created),
            "ms",
            details={
                "samples_ms": [round(x, 2) for x in created],
                "p95_ms": round(p95(created), 2),
            },
        ),
        Figure(
            "h5",
            f"PostgreSQL idle CPU, worker + watchdog, {cpu_window:g} s",
            idle.pop("percent"),
            "% core",
            "<",
            2.0,
            idle,
        ),
    ]


# -- (i) claim rate on PostgreSQL: PostgresStore.claim vs a raw psycopg loop ----------------------

# The equivalent of the store's claim, written directly: one statement in an autocommit
# transaction (one round trip), tuple rows, nothing around it.
RAW_CLAIM = """\
UPDATE jobs AS j
   SET state = 'running', worker_id = %s, runs = j.runs + 1,
       started_at = queuectl_now(), finished_at = NULL, updated_at = queuectl_now(),
       lease_expires_at = queuectl_now() + %s
  FROM (SELECT seq FROM jobs
         WHERE state IN ('pending', 'failed') AND next_attempt_at <= queuectl_now()
         ORDER BY priority DESC, seq
         LIMIT 1
           FOR UPDATE SKIP LOCKED) AS next
 WHERE j.seq = next.seq
RETURNING j.*"""


@dataclass
class Claimer:
    name: str
    claim: Callable[[], object]
    durations: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # claims/s of each block

    def block(self, count: int) -> None:
        spent = 0.0
        for _ in range(count):
            start = time.perf_counter()
            got = self.claim()
            took = time.perf_counter() - start
            if got is None:
                raise RuntimeError(f"{self.name}: the queue ran dry during the claim benchmark")
            self.durations.append(took)
            spent += took
        self.rounds.append(count / spent)

    @property
    def rate(self) -> float:
        return len(self.durations) / sum(self.durations)

    def info(self) -> dict[str, Any]:
        return {
            "claims_timed": len(self.durations),
            "median_us": round(1e6 * median(self.durations), 1),
            "p95_us": round(1e6 * p95(self.durations), 1),
            "per_block_claims_per_s": [round(x) for x in self.rounds],
        }


def bench_pg_claims(
    sb: Sandbox, base: str, waiting: int, claims: int, block: int, budget: float
) -> list[Figure]:
    from queuectl.storage.postgres import PostgresStore

    progress(
        f"(i) PostgreSQL claim rate: {claims:,} claims each with {waiting:,} waiting, "
        f"PostgresStore.claim vs raw psycopg, alternating blocks of {block}"
    )
    with pg_schema(base, "i") as schema:
        url = schema.url("bench")
        PostgresStore(url, require_schema=False).migrate_and_close()
        filler = PostgresStore(url, require_schema=True)
        single = PostgresStore(url, require_schema=True)  # as the CLI opens it
        pooled = PostgresStore(url, pooled=True, require_schema=True)  # as a worker does
        raw = pg_connect(url)
        try:
            for first in range(0, waiting, 5_000):
                filler.enqueue(new_jobs(min(5_000, waiting - first)))
            raw.execute("VACUUM ANALYZE jobs")
            claimers = [
                Claimer("store", lambda: single.claim("bench-store", (), 30.0)),
                Claimer("raw", lambda: raw.execute(RAW_CLAIM, ("bench-raw", 30.0)).fetchone()),
                Claimer("pooled", lambda: pooled.claim("bench-pooled", (), 30.0)),
            ]
            for c in claimers:  # warm-up (psycopg prepares statements after 5 runs), discarded
                c.block(20)
                c.durations.clear()
                c.rounds.clear()
                filler.enqueue(new_jobs(20))
            deadline = time.monotonic() + budget
            r = 0
            while any(len(c.durations) < claims for c in claimers):
                if time.monotonic() > deadline:
                    progress(f"    time budget of {budget:g} s ran out: fewer claims timed")
                    break
                # Alternate, rotating the order, so noise and table growth hit every loop.
                for c in claimers[r % 3 :] + claimers[: r % 3]:
                    n = min(block, claims - len(c.durations))
                    if n > 0:
                        c.block(n)
                        filler.enqueue(new_jobs(n))  # untimed: keep the queue at its size
                r += 1
            left = int(scalar(raw, "SELECT count(*) FROM jobs WHERE state = 'pending'"))
        finally:
            raw.close()
            pooled.close()
            single.close()
            filler.close()
    store, rawc, pool = claimers
    return [
        Figure(
            "i1",
            f"PostgresStore.claim, {waiting:,} waiting",
            store.rate,
            "claims/s",
            details={**store.info(), "pending_at_end": left},
        ),
        Figure(
            "i2",
            "raw psycopg claim loop (autocommit UPDATE ... SKIP LOCKED)",
            rawc.rate,
            "claims/s",
            details=rawc.info(),
        ),
        Figure(
            "i3",
            "PostgresStore.claim / raw loop",
            100.0 * store.rate / rawc.rate,
            "%",
            ">=",
            60.0,
            {
                "per_block_percent": [
                    round(100.0 * a / b, 1) for a, b in zip(store.rounds, rawc.rounds, strict=False)
                ]
            },
        ),
        Figure(
            "i4",
            "PostgresStore.claim, pooled (as a worker opens it)",
            pool.rate,
            "claims/s",
            details=pool.info(),
        ),
        Figure("i5", "pooled PostgresStore.claim / raw loop", 100.0 * pool.rate / rawc.rate, "%"),
    ]


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure queuectl's figures next to their limits (see bench/README.md)."
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no 60 s idle case")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--only", default=SECTIONS, help=f"sections to run, e.g. 'ace' (default: {SECTIONS})"
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
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("QUEUECTL_BENCH_PG", DEFAULT_PG_URL),
        help="(g-i) PostgreSQL database the run makes its fresh schemas in "
        f"($QUEUECTL_BENCH_PG; default {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--pg-waiting", type=int, default=10_000, help="(i) jobs waiting during the claims"
    )
    parser.add_argument(
        "--pg-claims", type=int, help="(i) claims timed per loop (2000; quick 1000)"
    )
    parser.add_argument("--pg-claim-block", type=int, default=100, help="(i) claims per block")
    parser.add_argument(
        "--pg-claim-budget", type=float, default=60.0, help="(i) max seconds of claiming"
    )
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
        "pg_claims": 1000 if quick else 2000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    unknown = set(args.only) - set(SECTIONS)
    if unknown:
        parser.error(
            f"--only: unknown section(s) {''.join(sorted(unknown))}; use letters of {SECTIONS}"
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
        skipped: dict[str, str] = {}
        pg_info: dict[str, Any] = {}

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
        wanted_pg = [s for s in PG_SECTIONS if s in args.only]
        problem = pg_problem(args.pg_url) if wanted_pg else None
        if problem is not None:
            progress(f"{problem}: skipping section(s) {', '.join(wanted_pg)}")
            skipped.update({s: problem for s in wanted_pg})
        elif wanted_pg:
            try:
                pg_info.update(pg_server(args.pg_url))
            except Exception as exc:  # only informative: the sections say what breaks
                pg_info.update(url=redact_url(args.pg_url), error=f"{exc}")
            progress(f"PostgreSQL {pg_info.get('server_version')} at {pg_info['url']}")
            if "g" in args.only:
                section(
                    "g",
                    lambda: bench_pg_throughput(
                        sb, args.pg_url, args.throughput_jobs, args.throughput_reps
                    ),
                )
                figures.extend(compare_backends(figures))
            if "h" in args.only:
                section(
                    "h",
                    lambda: bench_pg_latency(sb, args.pg_url, args.latency_reps, args.cpu_window),
                )
            if "i" in args.only:
                section(
                    "i",
                    lambda: bench_pg_claims(
                        sb,
                        args.pg_url,
                        args.pg_waiting,
                        args.pg_claims,
                        args.pg_claim_block,
                        args.pg_claim_budget,
                    ),
                )
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
        "postgres": pg_info or None,
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
                "pg_waiting",
                "pg_claims",
                "pg_claim_block",
            )
        },
        "figures": {f.key: f.to_dict() for f in figures},
        "targets_missed": [f.key for f in missed],
        "errors": errors,
        "skipped": skipped,
        "all_passed": not missed and not errors,
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(render_table(figures, skipped) + "\n")
        sys.stdout.write(
            f"\n{len(figures)} figures in {report['duration_s']} s; targets missed: "
            f"{', '.join(f.key for f in missed) or 'none'}; "
            f"sections that failed: {', '.join(errors) or 'none'}; "
            f"skipped: {', '.join(skipped) or 'none'}; load average "
            f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n"
        )
    if errors:
        return 1
    return 1 if missed and args.fail_on_miss else 0


if __name__ == "__main__":
    sys.exit(main())
