"""End-to-end, PostgreSQL only: several hosts sharing one queue, simulated on one machine.

Each worker process records the host name `$QUEUECTL_HOSTNAME` gives it, so workers
started here with different names behave as if they ran on different machines: a
worker may recover the jobs of a dead worker *on its own host* as soon as the pid is
gone, but those of a worker on another host only once its lease has expired.

Queue state is read through the real `queuectl` command; job side effects are
counted in marker files or in the run ledger (tests/e2e/ledger.py) the jobs append
to, and the crash scenarios end with `check_invariants`; PostgreSQL itself is only
touched to end the workers' database sessions (pg_terminate_backend).
"""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import WorkerProcess
from tests.e2e.conftest import (
    HEARTBEAT_INTERVAL,
    LEASE_TIMEOUT,
    Hosts,
    assert_error,
    epoch,
    lines,
    with_url_params,
)
from tests.e2e.conftest import quote_path as q
from tests.e2e.ledger import Kills, Ledger, check_invariants
from tests.helpers import wait_for
from tests.pg import PG_URL

FOUR_HOSTS = ("host-a", "host-b", "host-c", "host-d")


def gate_command(gate: Path, then: str) -> str:
    """A job that waits until the test creates `gate` (bounded), then runs `then`."""
    return (
        f"i=0; while [ ! -e {q(gate)} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; {then}"
    )


def worker_id_of(worker: WorkerProcess) -> str:
    found = re.search(r"worker (\S+) started", worker.stderr())
    assert found, worker.stderr()
    return found.group(1)


def terminate_backends(application_name: str) -> int:
    """End every PostgreSQL session opened under `application_name`; how many were ended."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


def backends_of(application_name: str) -> int:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def stop_all(hosts: Hosts, workers: list[WorkerProcess]) -> None:
    """`worker stop` from yet another host; every worker exits 0."""
    with hosts.on_host("host-z"):
        hosts.run("worker", "stop", timeout=60)
    for worker in workers:
        assert worker.wait(timeout=30) == 0, worker.stderr()


# -- many hosts, one queue ------------------------------------------------------------------


def test_four_hosts_run_5000_jobs_each_exactly_once(hosts: Hosts, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    workers = {h: hosts.start_on(h, "--count", "2", "--quiet") for h in FOUR_HOSTS}
    ids = hosts.enqueue_many([ledger.command()] * 5000)

    # While they run: four distinct workers, each with its own host and pid.
    def busy_listing() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = hosts.json("worker", "list")
        return listed if len(listed) == 4 and any(w["current_jobs"] for w in listed) else []

    listed = wait_for(busy_listing, timeout=20, interval=0.1, message="4 busy workers listed")
    assert {w["id"]: (w["host"], w["pid"]) for w in listed} == {
        worker_id_of(w): (h, w.pid) for h, w in workers.items()
    }
    assert len({w["id"] for w in listed}) == 4

    wait_for(
        lambda: hosts.counts()["completed"] == 5000,
        timeout=60,
        interval=0.5,
        message="5000 jobs completed",
    )
    counts = hosts.counts()
    assert counts["completed"] == 5000 and sum(counts.values()) == 5000
    ran = Counter(r.job_id for r in ledger.runs())
    assert set(ran) == set(ids)
    assert [i for i, n in ran.items() if n != 1] == [], "jobs that ran more than once"
    assert sum(ran.values()) == 5000

    jobs = hosts.jobs_by_id()
    assert all(j["runs"] == 1 and j["attempts"] == 1 for j in jobs.values())
    assert all(j["recoveries"] == 0 for j in jobs.values())
    # Every host took part.
    assert {j["worker_id"] for j in jobs.values()} == {worker_id_of(w) for w in workers.values()}
    stop_all(hosts, list(workers.values()))
    check_invariants(hosts, acked=ids, ledger=ledger)


def test_killed_workers_jobs_are_recovered_by_other_hosts(hosts: Hosts, tmp_path: Path) -> None:
    ledger, kills = Ledger(tmp_path / "ledger"), Kills()
    workers = {h: hosts.start_on(h, "--count", "3") for h in FOUR_HOSTS}
    ids_of = {h: worker_id_of(w) for h, w in workers.items()}
    victims, survivors = ("host-a", "host-b"), ("host-c", "host-d")
    ids = hosts.enqueue_many([ledger.command("sleep 0.2")] * 300)

    def victims_busy() -> bool:
        current = {w["id"]: w["current_jobs"] for w in hosts.json("worker", "list")}
        return all(current.get(ids_of[h]) for h in victims)

    wait_for(victims_busy, timeout=20, interval=0.05, message="both victims running jobs")
    killed_at = time.monotonic()
    for h in victims:
        kills.kill9(workers[h])

    # What the dead workers held stays `running` until their leases run out.
    victim_ids = {ids_of[h] for h in victims}
    orphaned = {
        j["id"] for j in hosts.json("list", "--state", "running") if j["worker_id"] in victim_ids
    }
    assert orphaned, "the killed workers held no jobs"
    assert time.monotonic() - killed_at < LEASE_TIMEOUT - HEARTBEAT_INTERVAL  # no lease ran out

    wait_for(
        lambda: hosts.counts()["completed"] == 300,
        timeout=60,
        interval=0.5,
        message="300 jobs completed",
    )
    jobs = hosts.jobs_by_id()
    assert {j["state"] for j in jobs.values()} == {"completed"}
    recovered = {i for i, j in jobs.items() if j["recoveries"] >= 1}
    assert recovered == orphaned  # exactly the jobs the dead workers held
    survivor_ids = {ids_of[h] for h in survivors}
    for job_id in recovered:
        job = jobs[job_id]
        assert job["recoveries"] == 1 and job["attempts"] == 1 and job["runs"] == 2, job
        assert job["worker_id"] in survivor_ids, job  # finished on another host
    survivors_said = workers["host-c"].stderr() + workers["host-d"].stderr()
    for job_id in recovered:
        assert re.search(rf"\[{re.escape(job_id)}\] recovered from lost worker w-", survivors_said)

    ran = Counter(r.job_id for r in ledger.runs() if r.exit_code == 0)
    assert set(ran) == set(ids)  # every job ran to the end at least once
    started = Counter(r.job_id for r in ledger.runs())
    duplicates = {i for i, n in started.items() if n > 1}
    assert duplicates <= recovered, "a job ran twice without being recovered"
    assert all(n <= 2 for n in started.values())

    # The dead workers are no longer listed; the others still are.
    assert {w["id"] for w in hosts.json("worker", "list")} == survivor_ids
    stop_all(hosts, [workers[h] for h in survivors])
    runs = check_invariants(hosts, acked=ids, ledger=ledger, kills=kills).runs
    # Every run cut short was a victim's, and its job was recovered.
    cut = {i for i, rs in runs.items() for r in rs if r.end is None}
    assert cut <= recovered
    assert {r.ppid for rs in runs.values() for r in rs if r.end is None} <= {
        workers[h].pid for h in victims
    }


@pytest.mark.parametrize(
    "rescuer_host",
    [
        pytest.param("host-b", id="other-host-waits-for-the-lease"),
        pytest.param("host-a", id="same-host-sees-the-pid-gone"),
    ],
)
def test_killed_worker_job_is_taken_over_within_the_lease_bound(
    hosts: Hosts, tmp_path: Path, rescuer_host: str
) -> None:
    ledger, kills = Ledger(tmp_path / "ledger"), Kills()
    doomed = hosts.start_on("host-a", name="doomed")
    job_id = hosts.enqueue({"command": ledger.command("sleep 2")})
    wait_for(ledger.runs, message="the first run to start")
    assert hosts.job(job_id)["worker_id"] == worker_id_of(doomed)
    rescuer = hosts.start_on(rescuer_host, name="rescuer")
    rescuer_id = worker_id_of(rescuer)

    kills.kill9(doomed)  # the host vanishes, as far as host-b can tell
    killed_at = time.time()

    def taken_over() -> dict[str, Any] | None:
        job = hosts.job(job_id)
        return job if job["runs"] >= 2 and job["worker_id"] == rescuer_id else None

    # When the rescuer claimed it, by the database clock (this machine's): polling
    # `show` from a loaded machine can see it late, or only once it is completed.
    claimed = wait_for(taken_over, timeout=15, interval=0.05, message=f"{rescuer_host} to take it")
    assert claimed is not None
    took = epoch(claimed["started_at"]) - killed_at
    # The lease was renewed at most one heartbeat before the kill, so no lease ran
    # out before this:
    earliest_expiry = LEASE_TIMEOUT - HEARTBEAT_INTERVAL - 0.5
    if rescuer_host == "host-a":
        # On the same host the pid is seen gone: taken over at the next heartbeat.
        assert took < earliest_expiry, f"taken over only after {took:.2f} s"
    else:
        # Another host cannot see host-a's pids: it must wait for the lease to expire,
        # and then it acts within a heartbeat.
        assert took >= earliest_expiry, f"taken over after {took:.2f} s"
        assert took < 10, f"taken over only after {took:.2f} s"

    job = hosts.wait_state(job_id, "completed", timeout=15)
    assert job["recoveries"] == 1 and job["runs"] == 2 and job["attempts"] == 1
    assert job["worker_id"] == rescuer_id
    stop_all(hosts, [rescuer])
    runs = check_invariants(hosts, acked=[job_id], ledger=ledger, kills=kills).runs
    # The killed run never finished; the new one did, once.
    assert [(r.ppid, r.exit_code) for r in runs[job_id]] == [(doomed.pid, None), (rescuer.pid, 0)]


def test_worker_stop_from_another_host_stops_every_host(hosts: Hosts, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    marker = tmp_path / "done"
    on_a = hosts.start_on("host-a", "--count", "1")
    job_id = hosts.enqueue({"command": gate_command(gate, f"echo done >> {q(marker)}")})
    hosts.wait_state(job_id, "running")
    assert hosts.job(job_id)["worker_id"] == worker_id_of(on_a)
    on_b = hosts.start_on("host-b", "--count", "1")
    assert {w["host"] for w in hosts.json("worker", "list")} == {"host-a", "host-b"}

    stopper = hosts.popen_on("host-z", "worker", "stop")
    assert on_b.wait(timeout=20) == 0, on_b.stderr()  # idle: leaves at once
    assert on_a.proc.poll() is None and stopper.poll() is None  # busy: finishes its job first
    assert hosts.state(job_id) == "running"

    gate.touch()
    out, err = stopper.communicate(timeout=30)
    assert stopper.returncode == 0, err
    assert re.search(r"\b2\b", out) and "stop" in out.lower(), out
    assert on_a.wait(timeout=10) == 0, on_a.stderr()
    assert hosts.state(job_id) == "completed"
    assert lines(marker) == ["done"]
    assert hosts.json("worker", "list") == []


def test_worker_stop_does_not_count_a_dead_worker_as_stopped(hosts: Hosts) -> None:
    # A worker killed on another host looks alive until its lease runs out: `worker
    # stop` waits for it, then must say it died rather than that it stopped.
    dead = hosts.start_on("host-a", "--count", "1")
    wait_for(lambda: hosts.json("worker", "list"), message="the worker to register")
    dead.proc.kill()
    dead.proc.wait()
    alive = hosts.start_on("host-b", "--count", "1")
    wait_for(lambda: len(hosts.json("worker", "list")) == 2, message="both workers listed")
    with hosts.on_host("host-z"):
        result = hosts.run("worker", "stop", timeout=60)
    assert result.stdout == (
        "Stopped 1 of 2 worker(s); 1 stopped heartbeating without stopping (died; their "
        "jobs are recovered as their leases expire).\n"
    )
    assert alive.wait(timeout=30) == 0, alive.stderr()


# -- the database connection ----------------------------------------------------------------


def sessions_terminated_under_a_running_job(hosts: Hosts, tmp_path: Path) -> WorkerProcess:
    """A worker whose database sessions are all ended (pg_terminate_backend) while it
    runs a job: it stays up, says so, reconnects and goes on. Returns it, stopped."""
    gate = tmp_path / "gate"
    marker = tmp_path / "ran"
    app = f"qtest-{uuid.uuid4().hex[:12]}"  # names the worker's sessions, and only those
    assert hosts.db_target is not None
    worker = hosts.start_on(
        "host-a", "--count", "2", db=with_url_params(hosts.db_target, application_name=app)
    )
    during = hosts.enqueue(
        {"command": gate_command(gate, f'echo "$QUEUECTL_JOB_ID" >> {q(marker)}')}
    )
    hosts.wait_state(during, "running")
    wait_for(lambda: backends_of(app) >= 2, message="the worker's sessions (pool and LISTEN)")

    assert terminate_backends(app) >= 2
    wait_for(
        lambda: re.search(r"(?m)^queuectl: .*lost the connection to PostgreSQL", worker.stderr()),
        timeout=10,
        message="the worker to report the lost connection",
    )
    assert worker.proc.poll() is None, worker.stderr()

    after = hosts.enqueue({"command": f'echo "$QUEUECTL_JOB_ID" >> {q(marker)}'})
    hosts.wait_state(after, "completed", timeout=10)
    assert backends_of(app) >= 1  # it reconnected

    gate.touch()
    job = hosts.wait_state(during, "completed", timeout=20)
    # Never lost its lease, never stopped by the watchdog, never run again.
    assert job["runs"] == 1 and job["attempts"] == 1 and job["recoveries"] == 0, job
    assert sorted(lines(marker)) == sorted([during, after])  # each exactly once
    assert worker.proc.poll() is None, worker.stderr()

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0, worker.stderr()
    assert "Traceback" not in worker.stderr(), worker.stderr()
    return worker


def test_worker_survives_its_database_sessions_being_terminated(
    hosts: Hosts, tmp_path: Path
) -> None:
    sessions_terminated_under_a_running_job(hosts, tmp_path)


def test_lost_sessions_are_reported_only_in_queuectl_lines(hosts: Hosts, tmp_path: Path) -> None:
    worker = sessions_terminated_under_a_running_job(hosts, tmp_path)
    noise = [line for line in worker.stderr().splitlines() if not line.startswith("queuectl: ")]
    assert noise == [], f"stderr lines that are not queuectl's own messages: {noise}"


def test_worker_refuses_to_start_until_migrations_are_applied(unmigrated: Hosts) -> None:
    started = unmigrated.run("worker", "start", check=False, timeout=30)
    message = assert_error(started, 1)
    assert "queuectl db migrate" in message, message

    status = unmigrated.json("db", "status")
    assert status["applied"] == 0 and status["pending"] == status["latest"] >= 1
    assert status["database"]["backend"] == "postgresql"
    human = unmigrated.run("db", "status").stdout
    assert "queuectl db migrate" in human and f"0 of {status['latest']}" in human, human

    unmigrated.run("db", "migrate")
    status = unmigrated.json("db", "status")
    assert status["pending"] == 0 and status["applied"] == status["latest"]
    assert unmigrated.json("worker", "list") == []  # the refused worker left nothing behind
    worker = unmigrated.start_on("host-a")
    job_id = unmigrated.enqueue({"command": "true"})
    unmigrated.wait_state(job_id, "completed")
    stop_all(unmigrated, [worker])


# -- the database clock ---------------------------------------------------------------------


def test_delay_is_measured_on_the_database_clock(hosts: Hosts) -> None:
    job_id = hosts.run("enqueue", "--delay", "2", json.dumps({"command": "true"})).stdout.strip()
    job = hosts.job(job_id)
    created, due = epoch(job["created_at"]), epoch(job["next_attempt_at"])
    assert due - created == pytest.approx(2.0, abs=0.05)
    assert abs(created - time.time()) < 60  # this server's clock is the real one

    worker = hosts.start_on("host-a")
    done = hosts.wait_state(job_id, "completed", timeout=15)
    assert epoch(done["started_at"]) >= due - 0.001, "the delayed job ran before it was due"
    assert epoch(done["started_at"]) <= due + 3
    stop_all(hosts, [worker])


def test_a_database_clock_far_from_the_local_one_decides_schedules(hosts: Hosts) -> None:
    # A session setting that queuectl_now() reads: this connection's database clock
    # stands at 2001-09-09T01:46:40Z, whatever the local clock says.
    assert hosts.db_target is not None
    skewed = with_url_params(hosts.db_target, options="-cqueuectl.fake_now=1000000000")
    with hosts.on_host("host-a", db=skewed):
        job_id = hosts.run(
            "enqueue", "--delay", "2", json.dumps({"command": "true"})
        ).stdout.strip()
        job = hosts.job(job_id)
    assert job["created_at"] == "2001-09-09T01:46:40.000Z"
    assert epoch(job["next_attempt_at"]) - epoch(job["created_at"]) == pytest.approx(2.0, abs=0.05)
