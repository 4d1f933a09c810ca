"""End-to-end: `queuectl export` and `import`, moving a queue between databases."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Queuectl
from tests.e2e.conftest import assert_error, stop_worker
from tests.pg import fresh_schema


@contextlib.contextmanager
def other_backend(qctl: Queuectl, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of the backend `qctl` does not use: its --db."""
    if qctl.backend == "sqlite":
        with fresh_schema() as url:
            qctl.run("--db", url, "db", "migrate")
            yield url
    else:
        yield str(tmp_path / "elsewhere" / "queue.db")


def exported(qctl: Queuectl, *db: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in qctl.run(*db, "export").stdout.splitlines()]


def test_a_queue_moves_between_backends_with_its_history(qctl: Queuectl, tmp_path: Path) -> None:
    qctl.run("config", "set", "max_retries", "2")
    done = qctl.enqueue({"command": "echo done", "id": "done"})
    dead = qctl.enqueue({"command": "exit 3", "id": "dead", "max_retries": 1})
    worker = qctl.start_worker("--count", "2")
    qctl.wait_state(done, "completed")
    qctl.wait_state(dead, "dead")
    stop_worker(worker)
    qctl.enqueue({"command": "echo later", "id": "later", "delay": 3600, "priority": 5})
    qctl.enqueue({"command": "echo 'ünïcode ✓'", "id": "mail-1", "queue": "mail"})
    qctl.run("cancel", qctl.enqueue({"command": "true", "id": "canceled"}))
    source = exported(qctl)

    with other_backend(qctl, tmp_path) as target:
        out = qctl.run("--db", target, "import", "--file", "-", input=qctl.run("export").stdout)
        # The settings: max_retries, and the fixture's lease and heartbeat (a pair
        # that is valid only together: each is checked against the other's new value).
        assert out.stdout == "Imported 5 job(s) and 3 setting(s).\n"
        # Everything came across: states, attempts, runs, times, errors and settings.
        assert exported(qctl, "--db", target) == source
        assert qctl.run("--db", target, "config", "get", "max_retries").stdout == "2\n"
        assert qctl.json("--db", target, "show", "dead")["last_error"] == "exit code 3"


def test_export_to_a_file_is_private(qctl: Queuectl, tmp_path: Path) -> None:
    qctl.enqueue({"command": "echo secret-token-123"})
    target = tmp_path / "queue.jsonl"
    previous = os.umask(0o022)  # what most shells have: files readable by everyone
    try:
        qctl.run("export", "--file", str(target))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # it holds every command
    assert [json.loads(line)["type"] for line in target.read_text().splitlines()] == [
        "config",
        "job",
    ]


def test_import_names_an_id_already_present_and_changes_nothing(qctl: Queuectl) -> None:
    qctl.enqueue({"command": "true", "id": "first"})
    # Enough rows that psycopg's pipelined insert has many queued when the first
    # fails: it used to log a second line ("error ignored terminating ...").
    batch = "".join(json.dumps({"command": "true", "id": f"n{i}"}) + "\n" for i in range(400))
    qctl.run("enqueue", "--file", "-", input=batch)
    dump = qctl.run("export").stdout
    qctl.run("cancel", "first")
    before = qctl.run("export").stdout
    message = assert_error(qctl.run("import", input=dump, check=False), 1)
    assert "'first'" in message and "nothing was imported" in message
    assert qctl.run("export").stdout == before


@pytest.mark.parametrize("state", ["processing", "running"])
def test_a_job_imported_as_running_comes_back_pending(
    qctl: Queuectl, tmp_path: Path, state: str
) -> None:
    qctl.enqueue({"command": "true", "id": "moved"})
    config, job = exported(qctl)
    job["state"] = state  # `processing` is accepted for `running` on every input
    lines = f"{json.dumps(config)}\n{json.dumps(job)}\n"
    with other_backend(qctl, tmp_path) as target:
        qctl.run("--db", target, "import", input=lines)
        imported = qctl.json("--db", target, "show", "moved")
    assert imported["state"] == "pending"
    assert imported["attempts"] == 0
    assert "imported while running" in imported["last_error"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type":"job","id":"x"}', "no 'attempts' field"),
        ('{"type":"job"', "malformed JSON"),
        ('{"command":"true"}', "expected a line written by `queuectl export`"),
    ],
    ids=["missing-field", "malformed", "not-exported"],
)
def test_import_of_bad_lines_is_exit_2_and_changes_nothing(
    qctl: Queuectl, line: str, expected: str
) -> None:
    qctl.enqueue({"command": "true", "id": "kept"})
    before = qctl.run("export").stdout
    config = before.splitlines()[0]
    message = assert_error(qctl.run("import", input=f"{config}\n{line}\n", check=False), 2)
    assert "line 2" in message and expected in message
    assert qctl.run("export").stdout == before
