"""The fault suite's own checks (tests/e2e/ledger.py) catch what they claim to: the
ledger records real runs, and overlapping or unexplained runs fail the check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ledger import Kills, Ledger, Run, check_job, check_overlaps


def run_job(ledger: Ledger, body: str | None, job_id: str, attempt: int) -> int:
    env = {**os.environ, "QUEUECTL_JOB_ID": job_id, "QUEUECTL_ATTEMPT": str(attempt)}
    return subprocess.run(["/bin/sh", "-c", ledger.command(body)], env=env, check=False).returncode


def test_ledger_records_each_run_with_its_exit_status(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "it's a ledger")  # quoting survives the shell
    assert run_job(ledger, None, "a", 1) == 0
    assert run_job(ledger, "exit 3", "b", 1) == 3
    assert run_job(ledger, "exit 0", "b", 2) == 0
    runs = ledger.by_job()
    assert [(r.attempt, r.exit_code, r.ppid) for r in runs["a"]] == [(1, 0, os.getpid())]
    assert [(r.attempt, r.exit_code) for r in runs["b"]] == [(1, 3), (2, 0)]
    assert all(r.end is not None and r.start <= r.end for r in runs["b"])
    assert runs["b"][0].end <= runs["b"][1].start  # type: ignore[operator]
    assert ledger.records({"command": ledger.command()})
    assert not ledger.records({"command": "true"})


def run(start: float, end: float | None, ppid: int = 100, attempt: int = 1) -> Run:
    return Run("j", attempt, int(start * 1000), ppid, start, end, None if end is None else 0)


def test_sequential_runs_pass_and_overlapping_runs_fail() -> None:
    check_overlaps("j", [run(1.0, 2.0), run(2.0, 3.0), run(5.0, 6.0)], Kills())
    with pytest.raises(AssertionError, match="concurrently"):
        check_overlaps("j", [run(1.0, 2.0), run(1.5, 3.0)], Kills())
    # A long first run overlaps a third run even when the second one does not.
    with pytest.raises(AssertionError, match="concurrently"):
        check_overlaps("j", [run(1.0, 9.0), run(2.0, 3.0), run(4.0, 5.0)], Kills())


def test_a_run_cut_short_ends_when_its_worker_was_killed() -> None:
    kills = Kills(at={100: 4.0})
    check_overlaps("j", [run(1.0, None), run(4.0, 5.0, ppid=200)], kills)
    with pytest.raises(AssertionError, match="concurrently"):
        check_overlaps("j", [run(1.0, None), run(3.9, 5.0, ppid=200)], kills)
    # Without a recorded kill, nothing shows that the first run stopped.
    with pytest.raises(AssertionError, match="concurrently"):
        check_overlaps("j", [run(1.0, None, ppid=300), run(9.0, 10.0, ppid=200)], kills)
    # A run that wrote its end line long after its worker was killed outlived it.
    with pytest.raises(AssertionError, match="after its worker was killed"):
        check_overlaps("j", [run(1.0, 9.0)], kills)


def job(**fields: Any) -> dict[str, Any]:
    base = {"id": "j", "state": "completed", "max_retries": 3, "attempts": 1}
    return {**base, "recoveries": 0, "runs": 1, "command": "x", **fields}


def test_every_extra_run_needs_an_attempt_or_a_recovery() -> None:
    check_job(job(runs=2, recoveries=1), [run(1, None), run(2, 3)], ledger_job=True)
    with pytest.raises(AssertionError, match="explain"):
        check_job(job(runs=2), [run(1, 2), run(2, 3)], ledger_job=True)
    with pytest.raises(AssertionError, match="more runs than claims"):
        check_job(job(runs=1, recoveries=1), [run(1, None), run(2, 3)], ledger_job=True)
    with pytest.raises(AssertionError, match="dead with attempts to spare"):
        check_job(job(state="dead", attempts=1), [], ledger_job=True)
    with pytest.raises(AssertionError, match="used up"):
        check_job(job(state="failed", attempts=3), [], ledger_job=True)
    with pytest.raises(AssertionError, match="never ran"):
        check_job(job(), [run(1, None)], ledger_job=True)
