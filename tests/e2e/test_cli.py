"""End-to-end: the command line as a user types it (the real `queuectl`, in subprocesses)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from queuectl.storage import open_store
from tests.conftest import Queuectl
from tests.e2e.conftest import assert_error, epoch, parse_iso, popen_queuectl

UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def snapshot(qctl: Queuectl) -> tuple[Any, Any]:
    """Everything bad input must leave alone: the jobs and the settings, read straight
    from the database (through the CLI it cost two commands per check: 20 s of the
    bad-input test on PostgreSQL, whose driver alone takes 0.2 s to import)."""
    store = open_store(qctl.db_target)
    try:
        return [job.fields() for job in store.list_jobs()], store.get_config()
    finally:
        store.close()


def ids_of(jobs: list[dict[str, Any]]) -> list[str]:
    return [str(j["id"]) for j in jobs]


# -- the seed README, command by command ---------------------------------------------------


def test_seed_readme_enqueue_status_list_config(qctl: Queuectl) -> None:
    sleeper = qctl.run("enqueue", '{"command":"sleep 2"}').stdout
    hello = qctl.run("enqueue", '{"command":"echo Hello World"}').stdout
    assert UUID_LINE.match(sleeper.strip()) and sleeper.endswith("\n")
    assert UUID_LINE.match(hello.strip())
    sleeper, hello = sleeper.strip(), hello.strip()
    assert qctl.job(sleeper)["command"] == "sleep 2"
    assert qctl.job(hello)["command"] == "echo Hello World"

    status = qctl.run("status").stdout
    assert re.search(r"\bpending\s+2\b", status), status
    assert re.search(r"\bcompleted\s+0\b", status), status
    assert re.search(r"\bdead\s+0\b", status), status
    assert qctl.db_target in status  # which database is in use

    pending = qctl.run("list", "--state", "pending").stdout
    assert sleeper in pending and hello in pending  # full ids, never truncated
    for state in ("completed", "failed"):
        listed = qctl.run("list", "--state", state).stdout
        assert sleeper not in listed and hello not in listed

    assert sleeper not in qctl.run("dlq", "list").stdout

    shown = qctl.run("config", "show").stdout
    for key in ("max_retries", "backoff_base"):
        assert key in shown
    qctl.run("config", "set", "max_retries", "5")
    qctl.run("config", "set", "backoff_base", "2")
    assert qctl.run("config", "get", "max_retries").stdout.strip() == "5"
    assert qctl.run("config", "get", "max-retries").stdout.strip() == "5"
    settings = qctl.json("config", "show")
    assert settings["max_retries"] == 5
    assert settings["backoff_base"] == 2
    assert re.search(r"^max_retries\s+5$", qctl.run("config", "show").stdout, re.M)

    # The spelling with a dash sets the same key, and the default reaches new jobs.
    qctl.run("config", "set", "max-retries", "4")
    assert qctl.json("config", "show")["max_retries"] == 4
    assert qctl.json("config", "get", "max_retries") == 4
    later = qctl.enqueue({"command": "true"})
    assert qctl.job(later)["max_retries"] == 4
    assert qctl.job(hello)["max_retries"] == 3  # stored jobs keep their own


def test_seed_readme_dlq_list_and_retry(qctl: Queuectl) -> None:
    job_id = qctl.enqueue({"command": "exit 1", "max_retries": 1})
    keeper = qctl.enqueue({"command": "true", "max_retries": 1, "delay": 3600})
    worker = qctl.start_worker()
    dead = qctl.wait_state(job_id, "dead")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert dead["attempts"] == 1

    listed = qctl.run("dlq", "list").stdout
    assert job_id in listed and keeper not in listed
    assert ids_of(qctl.json("dlq", "list")) == [job_id]

    # A job that is not dead cannot be retried from the DLQ: exit 1, nothing changes.
    before = snapshot(qctl)
    assert_error(qctl.run("dlq", "retry", keeper, check=False), 1)
    assert snapshot(qctl) == before

    result = qctl.run("dlq", "retry", job_id)
    assert job_id in result.stdout
    job = qctl.job(job_id)
    assert job["state"] == "pending"
    assert job["attempts"] == 0
    assert qctl.json("dlq", "list") == []
    assert "empty" in qctl.run("dlq", "list").stdout.lower()

    # Retrying it again: it is pending now, not dead.
    before = snapshot(qctl)
    assert_error(qctl.run("dlq", "retry", job_id, check=False), 1)
    assert snapshot(qctl) == before


# -- --json: exactly one document ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (["status"], dict),
        (["list"], list),
        (["list", "--state", "pending"], list),
        (["list", "--state", "completed"], list),
        (["show", "{id}"], dict),
        (["logs", "{id}"], dict),
        (["dlq", "list"], list),
        (["worker", "list"], list),
        (["config", "show"], dict),
        (["config", "get", "max_retries"], int),
        (["enqueue", '{"command":"echo json"}'], dict),
        (["enqueue", "--file", "{file}"], list),
        (["cancel", "{id}"], dict),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v.__name__,
)
def test_json_prints_exactly_one_document(
    qctl: Queuectl, tmp_path: Path, args: list[str], kind: type[Any]
) -> None:
    job_id = qctl.enqueue({"command": "echo one"})
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"command":"echo a"}\n{"command":"echo b"}\n')
    argv = [a.replace("{id}", job_id).replace("{file}", str(batch)) for a in args]
    result = qctl.run(*argv, "--json")
    document: Any = json.loads(result.stdout)  # the whole of stdout, or this raises
    assert isinstance(document, kind), document
    assert result.stderr == ""
    if args[0] in ("show", "cancel"):
        assert document["id"] == job_id
    if args == ["enqueue", "--file", "{file}"]:
        assert [qctl.job(j["id"])["command"] for j in document] == ["echo a", "echo b"]


def test_json_lists_are_empty_arrays_on_an_empty_queue(qctl: Queuectl) -> None:
    for args in (
        ["list"],
        ["list", "--state", "pending"],
        ["list", "--state", "running"],
        ["dlq", "list"],
        ["worker", "list"],
    ):
        result = qctl.run(*args, "--json")
        assert json.loads(result.stdout) == [], args
        assert result.stdout.strip() == "[]", args
    assert set(qctl.counts().values()) == {0}
    assert qctl.json("status")["workers"]["active"] == 0


def test_timestamps_are_iso_8601_utc_with_z(qctl: Queuectl) -> None:
    before = time.time()
    job_id = qctl.enqueue({"command": "true"})
    after = time.time()
    job = qctl.job(job_id)
    assert qctl.json("show", job_id) == job  # the helper reads what `show --json` prints
    for key in ("created_at", "updated_at", "next_attempt_at"):
        assert before - 1 <= epoch(job[key]) <= after + 1, (key, job[key])
    for key in ("started_at", "finished_at"):
        assert job[key] is None
    listed = qctl.json("list")[0]
    assert listed["created_at"] == job["created_at"]
    parse_iso(listed["updated_at"])


# -- exit codes and errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["show", "no-such-job"], ["logs", "no-such-job"], ["dlq", "retry", "no-such-job"]],
    ids=lambda v: " ".join(v),
)
def test_unknown_job_is_exit_1(qctl: Queuectl, args: list[str]) -> None:
    qctl.enqueue({"command": "true"})
    before = snapshot(qctl)
    message = assert_error(qctl.run(*args, check=False), 1)
    assert "no-such-job" in message
    assert_error(qctl.run(*args, "--json", check=False), 1)
    assert snapshot(qctl) == before


BAD_USAGE = [
    ["enqueue", '{"command": "echo hi"'],
    ["enqueue", "echo hi"],
    ["enqueue", '["echo hi"]'],
    ["enqueue", '{"priority": 1}'],
    ["enqueue", '{"command": ""}'],
    ["enqueue", '{"command": 42}'],
    ["enqueue", '{"command": "echo", "max_retries": "lots"}'],
    ["enqueue", '{"command": "echo", "delay": "soon"}'],
    ["enqueue", '{"command": "echo", "run_at": "yesterday"}'],
    ["enqueue", '{"command": "echo", "colour": "red"}'],
    ["enqueue", "--priority", "high", '{"command": "echo"}'],
    ["enqueue", "--run-at", "tomorrow-ish", '{"command": "echo"}'],
    ["enqueue", "--json"],
    ["enqueue", "--file", "{missing}"],
    ["list", "--state", "bogus"],
    ["list", "--state", "bogus", "--json"],
    ["list", "--bogus-flag"],
    ["list", "--limit", "many"],
    ["status", "--verbose-please"],
    ["dlq", "list", "--bogus-flag"],
    ["config", "set", "no_such_key", "1"],
    ["config", "get", "no_such_key"],
    ["config", "set", "max_retries", "abc"],
    ["config", "set", "max_retries", "-1"],
    ["config", "set", "backoff_base", "fast"],
    ["config", "set", "backoff_base", "0.5"],
    ["config", "set", "lease_timeout", "0.1"],
    ["config", "set", "job_timeout", "10000000000000000"],
    ["config", "set", "backoff_max", "10000000000000000"],
    ["enqueue", '{"command": "echo", "timeout": 1e300}'],
    ["enqueue", "--delay", "1h", "--run-at", "2030-01-01T00:00:00Z", '{"command": "echo"}'],
    ["list", "--limit", "99999999999999999999"],
    ["dlq", "list", "--limit", "99999999999999999999"],
    ["list", "--queue", "no/such/queue"],
    ["worker", "start", "--count", "0"],
    ["worker", "start", "--count", "two"],
    ["worker", "stop", "--timeout", "-1"],
    ["worker", "stop", "--timeout", "nan"],
    ["export", "--file", "{missing}/export.jsonl"],
    ["import", "--file", "{empty}"],
    ["--db", "", "status"],
    ["frobnicate"],
]


def test_bad_input_is_exit_2_and_changes_nothing(qctl: Queuectl, tmp_path: Path) -> None:
    # One queue for every case (a fresh one each would cost seconds): each case must
    # leave the jobs and settings exactly as they were before the first.
    qctl.enqueue({"command": "echo existing", "id": "existing"})
    before = snapshot(qctl)
    problems = []
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args in BAD_USAGE:
        argv = [
            a.replace("{missing}", str(tmp_path / "missing.jsonl")).replace("{empty}", str(empty))
            for a in args
        ]
        result = qctl.run(*argv, check=False, timeout=20)
        try:
            message = assert_error(result, 2)
            assert message.startswith("queuectl"), message
            assert snapshot(qctl) == before, "the queue or the settings changed"
        except AssertionError as exc:
            problems.append(f"queuectl {' '.join(argv)}: {exc}")
    assert not problems, "\n".join(problems)
    assert qctl.json("worker", "list") == []


@pytest.mark.parametrize(
    "bad_line",
    ['{"command": "echo broken"', '{"priority": 3}', '"just a string"', '{"command": ""}'],
    ids=["malformed", "no-command", "not-an-object", "empty-command"],
)
def test_batch_enqueue_with_one_bad_line_stores_none(
    qctl: Queuectl, tmp_path: Path, bad_line: str
) -> None:
    good = [json.dumps({"command": f"echo {n}"}) for n in range(4)]
    text = "\n".join([*good[:2], bad_line, *good[2:]]) + "\n"
    batch = tmp_path / "batch.jsonl"
    batch.write_text(text)
    before = snapshot(qctl)

    message = assert_error(qctl.run("enqueue", "--file", str(batch), check=False), 2)
    assert "line 3" in message
    assert_error(qctl.run("enqueue", "--file", "-", input=text, check=False), 2)
    assert snapshot(qctl) == before
    assert qctl.json("list") == []


def test_batch_enqueue_with_duplicate_id_stores_none(qctl: Queuectl) -> None:
    qctl.enqueue({"command": "true", "id": "taken"})
    before = snapshot(qctl)
    text = '{"command":"echo 1","id":"fresh"}\n{"command":"echo 2","id":"taken"}\n'
    result = qctl.run("enqueue", "--file", "-", input=text, check=False)
    assert_error(result, result.returncode)
    assert result.returncode in (1, 2)
    assert snapshot(qctl) == before


# -- enqueue ---------------------------------------------------------------------------------


def test_enqueue_file_prints_one_id_per_line(qctl: Queuectl, tmp_path: Path) -> None:
    commands = ["echo one", "echo two", "sleep 0", "printf 'x y'"]
    batch = tmp_path / "jobs.jsonl"
    batch.write_text(
        json.dumps({"command": commands[0]})
        + "\n\n"
        + "\n".join(json.dumps({"command": c}) for c in commands[1:3])
        + "\n"
        + json.dumps({"command": commands[3], "id": "named-one"})  # no final newline
    )
    out = qctl.run("enqueue", "--file", str(batch)).stdout
    ids = out.splitlines()
    assert out.endswith("\n") and len(ids) == 4 and len(set(ids)) == 4
    assert all(UUID_LINE.match(i) for i in ids[:3]) and ids[3] == "named-one"
    assert [qctl.job(i)["command"] for i in ids] == commands
    assert ids_of(qctl.json("list")) == ids  # stored in input order

    stdin_jobs = "".join(json.dumps({"command": f"echo stdin {n}"}) + "\n" for n in range(3))
    out = qctl.run("enqueue", "--file", "-", input=stdin_jobs).stdout
    more = out.splitlines()
    assert len(more) == 3 and len(set(more)) == 3
    assert [qctl.job(i)["command"] for i in more] == [f"echo stdin {n}" for n in range(3)]
    assert qctl.counts()["pending"] == 7


def test_enqueue_json_prints_each_job_as_show_does(qctl: Queuectl) -> None:
    # The printed jobs are built from what was validated and the store's time, not
    # read back from the database: they must still be what `show --json` prints.
    text = '{"command":"echo a","priority":2}\n{"command":"echo b","id":"bee","delay":60}\n'
    result = qctl.run("enqueue", "--file", "-", "--queue", "mail", "--json", input=text)
    document = json.loads(result.stdout)
    assert [job["command"] for job in document] == ["echo a", "echo b"]
    assert [qctl.json("show", job["id"]) for job in document] == document
    single = qctl.json("enqueue", '{"command":"echo c"}', "--timeout", "9")
    assert qctl.json("show", single["id"]) == single


def test_enqueue_flags_are_honoured(qctl: Queuectl) -> None:
    out = qctl.run(
        "enqueue",
        "--id",
        "report-2026.v1",
        "--priority",
        "7",
        "--queue",
        "emails",
        "--timeout",
        "90",
        "--max-retries",
        "9",
        '{"command":"echo flags"}',
    ).stdout
    assert out == "report-2026.v1\n"
    job = qctl.job("report-2026.v1")
    assert job["command"] == "echo flags"
    assert job["priority"] == 7
    assert job["queue"] == "emails"
    assert job["timeout"] == 90
    assert job["max_retries"] == 9
    assert job["state"] == "pending"
    assert job["attempts"] == 0

    now = time.time()
    delayed = qctl.run("enqueue", "--delay", "120", '{"command":"echo later"}').stdout.strip()
    due = epoch(qctl.job(delayed)["next_attempt_at"])
    assert now + 115 <= due <= time.time() + 125

    scheduled = qctl.run(
        "enqueue", "--run-at", "2031-01-02T03:04:05Z", '{"command":"echo then"}'
    ).stdout.strip()
    assert parse_iso(qctl.job(scheduled)["next_attempt_at"]) == parse_iso("2031-01-02T03:04:05Z")

    minutes = qctl.run("enqueue", "--timeout", "10m", '{"command":"echo t"}').stdout.strip()
    assert qctl.job(minutes)["timeout"] == 600

    # The queue filter sees only the job in that queue.
    assert ids_of(qctl.json("list", "--queue", "emails")) == ["report-2026.v1"]


def test_enqueue_json_fields_are_honoured(qctl: Queuectl) -> None:
    spec = {
        "id": "from-json",
        "command": "echo fields",
        "priority": -3,
        "queue": "batch",
        "timeout": 5,
        "max_retries": 0,
        "run_at": "2030-06-01T12:00:00Z",
    }
    assert qctl.enqueue(spec) == "from-json"
    job = qctl.job("from-json")
    for key in ("command", "priority", "queue", "timeout", "max_retries"):
        assert job[key] == spec[key], key
    assert parse_iso(job["next_attempt_at"]) == parse_iso("2030-06-01T12:00:00Z")

    now = time.time()
    delayed = qctl.enqueue({"command": "echo d", "delay": 30})
    assert now + 25 <= epoch(qctl.job(delayed)["next_attempt_at"]) <= time.time() + 35


def test_configured_defaults_apply_and_a_job_overrides_them(qctl: Queuectl) -> None:
    qctl.run("config", "set", "job_timeout", "45")
    qctl.run("config", "set", "max_retries", "6")
    default = qctl.job(qctl.enqueue({"command": "true"}))
    assert default["timeout"] == 45 and default["max_retries"] == 6
    own = qctl.job(qctl.enqueue({"command": "true", "timeout": 5, "max_retries": 1}))
    assert own["timeout"] == 5 and own["max_retries"] == 1
    unlimited = qctl.job(qctl.enqueue({"command": "true", "timeout": None}))
    assert unlimited["timeout"] is None
    qctl.run("config", "set", "job_timeout", "none")
    assert qctl.json("config", "show")["job_timeout"] is None
    assert qctl.job(qctl.enqueue({"command": "true"}))["timeout"] is None


def test_enqueue_json_output_is_the_stored_job(qctl: Queuectl) -> None:
    document = qctl.json("enqueue", '{"command":"echo doc","priority":2}')
    assert document == qctl.job(document["id"])
    assert document["state"] == "pending"
    uuid.UUID(document["id"])


# -- list ----------------------------------------------------------------------------------


def test_processing_is_accepted_for_running(qctl: Queuectl) -> None:
    qctl.enqueue({"command": "true"})
    for name in ("processing", "running"):
        assert qctl.json("list", "--state", name) == []
        human = qctl.run("list", "--state", name)
        assert human.returncode == 0 and human.stderr == ""
        assert human.stdout == "No running jobs.\n"  # the canonical name, never the alias


def test_list_limit(qctl: Queuectl) -> None:
    text = "".join(json.dumps({"command": f"echo {n}"}) + "\n" for n in range(5))
    ids = qctl.run("enqueue", "--file", "-", input=text).stdout.split()
    assert ids_of(qctl.json("list", "--limit", "2")) == ids[:2]
    assert ids_of(qctl.json("list", "--state", "pending", "--limit", "3")) == ids[:3]
    assert ids_of(qctl.json("list", "--limit", "50")) == ids
    human = qctl.run("list", "--limit", "1").stdout
    assert ids[0] in human and not any(i in human for i in ids[1:])


def test_human_tables_show_whole_ids(qctl: Queuectl) -> None:
    long_id = "a-very-long-job-identifier-" + "x" * 90
    qctl.enqueue({"command": "true", "id": long_id})
    assert long_id in qctl.run("list").stdout
    assert long_id in qctl.run("list", "--state", "pending").stdout
    assert long_id in qctl.run("show", long_id).stdout


def test_unicode_command_round_trips_exactly(qctl: Queuectl) -> None:
    command = "echo 'héllo wörld — 日本語 ✓ 🚀' \"$HOME\" `true` \\ tab\there"
    job_id = qctl.enqueue({"command": command})
    assert qctl.job(job_id)["command"] == command
    assert qctl.json("list")[0]["command"] == command
    from_stdin = qctl.run("enqueue", "--file", "-", input=json.dumps({"command": command}))
    assert qctl.job(from_stdin.stdout.strip())["command"] == command
    raw = qctl.run("show", job_id, "--json").stdout
    assert "日本語" in raw  # real UTF-8 text, valid JSON either way


def test_unreachable_database_is_exit_1(qctl: Queuectl, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.db"
    damaged.write_text("this is not a database\n" * 100)
    for target in (str(damaged), str(tmp_path)):
        for args in (["status"], ["list", "--json"], ["enqueue", '{"command":"true"}']):
            assert_error(qctl.run("--db", target, *args, check=False), 1)
    assert damaged.read_text() == "this is not a database\n" * 100
    assert qctl.json("list") == []


def test_reader_that_goes_away_is_not_an_error(qctl: Queuectl) -> None:
    # `queuectl list | head -1`: more output than a pipe holds, and the reader leaves.
    batch = "".join(json.dumps({"command": f"echo {n}"}) + "\n" for n in range(1500))
    qctl.run("enqueue", "--file", "-", input=batch)
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'{shlex.quote(qctl.exe)} list | head -n 1; echo "rc=${{PIPESTATUS[0]}}" >&2',
        ],
        capture_output=True,
        text=True,
        env=qctl.env,
        timeout=60,
        check=True,
    )
    assert result.stdout.startswith("ID")
    assert result.stderr == "rc=0\n"  # queuectl exited 0 and said nothing


# -- found by a user's audit -------------------------------------------------------------------


def test_a_time_flag_replaces_the_json_time(qctl: Queuectl) -> None:
    # Flags win over the JSON, the time fields included: `--delay` replaces a
    # `run_at` in the JSON (and `--run-at` a `delay`) instead of clashing with it.
    later = qctl.json("enqueue", "--delay", "1h", '{"command":"x","run_at":"2030-01-01T00:00:00Z"}')
    assert abs(epoch(later["next_attempt_at"]) - (time.time() + 3600)) < 60
    fixed = qctl.json("enqueue", "--run-at", "2030-01-01T00:00:00Z", '{"command":"x","delay":60}')
    assert fixed["next_attempt_at"] == "2030-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "args",
    [["show"], ["logs"], ["cancel"], ["dlq", "retry"]],
    ids=lambda v: " ".join(v),
)
def test_an_id_that_is_not_text_is_no_job(qctl: Queuectl, args: list[str]) -> None:
    # Bytes that are not UTF-8 reach Python as lone surrogates, which no database
    # takes: no stored id can be such text.
    message = assert_error(qctl.run(*args, "job-\udcff", check=False), 1)
    assert "no job with id" in message


def test_logs_of_a_job_without_output_says_so_on_stderr(qctl: Queuectl) -> None:
    job_id = qctl.enqueue({"command": "true"})
    result = qctl.run("logs", job_id)
    assert result.stdout == ""  # stdout is the output, exactly: none
    assert result.stderr == f"queuectl: job {job_id} has no output (yet)\n"
    assert qctl.json("logs", job_id) == {"id": job_id, "output": "", "truncated": False}
    # An ended job will print no more: no "(yet)" (an audit found it on dead jobs).
    qctl.run("cancel", job_id)
    result = qctl.run("logs", job_id)
    assert result.stderr == f"queuectl: job {job_id} has no output\n"


def test_config_set_is_checked_against_the_settings_it_is_stored_with(
    qctl: Queuectl,
) -> None:
    """Two `config set`s at once each passed the lease/heartbeat check against the old
    pair and stored one that neither allows (lease 2 s, heartbeat 7 s): long jobs
    then lost their leases for ever. While another change is being stored, a
    `config set` waits for it and is checked against its result."""
    from queuectl.storage import open_store

    store = open_store(qctl.db_target)
    racer: list[subprocess.Popen[str]] = []

    def shorten_the_lease(stored: dict[str, str]) -> dict[str, str]:
        racer.append(popen_queuectl(qctl, "config", "set", "heartbeat_interval", "7"))
        with contextlib.suppress(subprocess.TimeoutExpired):  # the window for a racer
            racer[0].wait(timeout=1.0)
        return {"lease_timeout": "2"}

    try:
        store.update_config(shorten_the_lease)
    finally:
        store.close()
    _, err = racer[0].communicate(timeout=30)
    assert racer[0].returncode == 2, err
    assert "heartbeat_interval" in err and "half of lease_timeout" in err, err
    assert qctl.json("config", "show")["heartbeat_interval"] == 0.5  # unchanged


def test_a_system_error_is_one_plain_line_not_an_internal_error(sq: Queuectl) -> None:
    job_id = sq.enqueue({"command": "true"})
    sq.db.with_name(sq.db.stem + ".logs").write_text("a file where the logs should be\n")
    result = sq.run("logs", job_id, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("queuectl: error: ") and result.stderr.count("\n") == 1
    assert "Not a directory" in result.stderr and "internal" not in result.stderr


def test_control_characters_in_a_command_are_shown_escaped(qctl: Queuectl) -> None:
    command = "printf '\x1b[2J'\necho done"
    job_id = qctl.enqueue({"command": command})
    assert qctl.job(job_id)["command"] == command  # stored and printed as JSON exactly
    for args in (["list"], ["show", job_id]):
        shown = qctl.run(*args).stdout
        assert "\x1b" not in shown and "\\x1b[2J" in shown, shown
    assert "printf '\\x1b[2J'\\necho done" in qctl.run("show", job_id).stdout


def test_a_bad_stored_setting_is_named_and_can_be_set_again(qctl: Queuectl) -> None:
    # What an earlier version stored for `config set job_timeout 10000000000000000`
    # (its repr, which no reader parses) made every command fail with an error about
    # input the user had not given, and `config set` could not repair it.
    store = open_store(qctl.db_target)
    try:
        store.set_config("job_timeout", "1e+16")
    finally:
        store.close()
    for args in (["status"], ["config", "show"], ["enqueue", '{"command":"true"}']):
        message = assert_error(qctl.run(*args, check=False), 1)
        assert "queuectl config set job_timeout" in message, message
    assert qctl.run("config", "set", "job_timeout", "90").stdout == "job_timeout = 90\n"
    assert qctl.json("config", "show")["job_timeout"] == 90


def test_config_values_are_shown_as_given(qctl: Queuectl) -> None:
    assert qctl.run("config", "set", "backoff_base", "1.2345678").stdout == (
        "backoff_base = 1.2345678\n"
    )
    assert qctl.run("config", "get", "backoff_base").stdout == "1.2345678\n"


def test_db_is_taken_after_the_command_too(sq: Queuectl, tmp_path: Path) -> None:
    # Found by an audit: `queuectl status --db q.db` was a usage error (exit 2).
    other = tmp_path / "other.db"
    job_id = sq.run("enqueue", '{"command":"true"}', "--db", str(other)).stdout.strip()
    assert [j["id"] for j in sq.json("list", "--db", str(other))] == [job_id]
    assert sq.json("worker", "list", f"--db={other}") == []
    # After the command it wins over the one before it; the default queue is untouched.
    assert sq.json("--db", "elsewhere.db", "show", job_id, "--db", str(other))["id"] == job_id
    assert sq.counts()["pending"] == 0
    # `status` names the file in full, wherever it is run from (SPEC.md: it says
    # which database is in use); it showed a relative --db as given.
    result = subprocess.run(
        [sq.exe, "status", "--db", "other.db"],
        env=sq.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"Database: {other} (sqlite)" in result.stdout


def test_small_things_an_audit_found_in_job_input_and_tables(sq: Queuectl, tmp_path: Path) -> None:
    # A file saved with a byte order mark (some Windows editors) is read as UTF-8.
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b'\xef\xbb\xbf{"command":"true","id":"with-bom"}\n')
    assert sq.run("enqueue", "--file", str(jobs)).stdout == "with-bom\n"
    # A key given twice is refused (json kept the last one without a word).
    message = assert_error(sq.run("enqueue", '{"command":"a","command":"b"}', check=False), 2)
    assert "the key 'command' appears twice" in message
    # `--timeout none` says what `"timeout": null` says: no limit, whatever job_timeout is.
    sq.run("config", "set", "job_timeout", "300")
    sq.run("enqueue", "--id", "unlimited", "--timeout", "none", '{"command":"true"}')
    assert sq.json("show", "unlimited")["timeout"] is None
    # max_retries 0 still runs once: the table says 0/1, as the worker does, not 0/0.
    sq.run("enqueue", "--id", "once", "--max-retries", "0", '{"command":"true"}')
    row = next(line for line in sq.run("list").stdout.splitlines() if line.startswith("once "))
    assert row.split()[2] == "0/1", row
    assert sq.counts()["pending"] == 3  # the refused job added nothing


def test_config_set_import_and_migrate_print_json(qctl: Queuectl, tmp_path: Path) -> None:
    # SPEC.md: --json on every command that prints data (an audit found these three
    # printing only text).
    assert qctl.json("config", "set", "max-retries", "4") == {"key": "max_retries", "value": 4}
    assert qctl.json("config", "set", "job_timeout", "0") == {"key": "job_timeout", "value": None}
    assert qctl.json("db", "migrate") == {"applied_now": [], "applied": 1, "latest": 1}
    exported = tmp_path / "queue.jsonl"
    exported.write_text(qctl.run("export").stdout)  # the settings, no jobs
    stored = json.loads(exported.read_text().splitlines()[0])["settings"]
    qctl.run("config", "set", "max_retries", "9")
    assert qctl.json("import", "--file", str(exported)) == {"jobs": 0, "settings": len(stored)}
    assert qctl.run("config", "get", "max_retries").stdout == "4\n"


def test_where_the_queue_lives_is_never_a_surprise(sq: Queuectl, tmp_path: Path) -> None:
    qctl = sq  # paths only: no need to run it against PostgreSQL as well
    env = {**qctl.env, "QUEUECTL_DB": ""}  # empty: the same as unset
    env["XDG_DATA_HOME"] = "relative/data"  # relative: ignored (the XDG spec)
    env["HOME"] = str(tmp_path / "home")
    result = subprocess.run(
        [qctl.exe, "status"], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    default = tmp_path / "home" / ".local" / "share" / "queuectl" / "queuectl.db"
    assert f"Database: {default} (sqlite)" in result.stdout
    assert not (tmp_path / "relative").exists()
    for target in ("/dev/null", str(tmp_path)):
        message = assert_error(qctl.run("--db", target, "status", check=False), 1)
        assert "not a regular file" in message
    assert not Path("/dev/null-journal").exists()


#: Commands that only read a queue, or change jobs already in it.
READERS = (
    ["status"],
    ["list", "--json"],
    ["show", "some-id"],
    ["logs", "some-id"],
    ["cancel", "some-id"],
    ["dlq", "list"],
    ["dlq", "retry", "some-id"],
    ["worker", "list"],
    ["worker", "stop"],
    ["config", "show"],
    ["config", "get", "max_retries"],
    ["db", "status"],
    ["export"],
)


def test_a_reader_never_makes_a_queue_at_a_mistyped_path(sq: Queuectl, tmp_path: Path) -> None:
    # A typo in --db used to leave an empty queue there (and the directories to it),
    # shown as if the user's jobs had vanished.
    sq.enqueue({"command": "true"})
    typo = tmp_path / "elsewhere" / "queuectl.db"
    for args in READERS:
        result = sq.run("--db", str(typo), *args, check=False)
        message = assert_error(result, 1)
        assert f"no queue at {typo}" in message and "--db" in message, message
        result = sq.run(*args, check=False, env={"QUEUECTL_DB": str(typo)})
        assert "$QUEUECTL_DB" in assert_error(result, 1)
    assert not typo.parent.exists()
    # The commands that put something in a queue make it, as before.
    for args in (
        ["enqueue", '{"command":"true"}'],
        ["config", "set", "max_retries", "5"],
        ["db", "migrate"],
    ):
        made = tmp_path / f"made-by-{args[0]}.db"
        sq.run("--db", str(made), *args)
        assert sq.run("--db", str(made), "status").returncode == 0
    assert sq.counts()["pending"] == 1  # the default queue is untouched


def test_refused_input_makes_no_queue_at_a_new_path(sq: Queuectl, tmp_path: Path) -> None:
    # The writing commands checked their input only once the queue was open, so a
    # refused job or setting left an empty queue at a mistyped --db path.
    bad_import = tmp_path / "bad-import.jsonl"
    bad_import.write_text('{"type":"config","settings":{"lease_timeout":"1"}}\n')
    typo = tmp_path / "elsewhere" / "queuectl.db"
    for args in (
        ["enqueue", '{"command":"true","priority":"high"}'],
        ["enqueue", '{"command":"true","max_retries":-1}'],
        ["enqueue", "--file", "-"],  # stdin (/dev/null): no jobs
        ["config", "set", "bogus", "1"],
        ["config", "set", "max_retries", "many"],
        ["config", "set", "lease_timeout", "4"],  # under twice the default heartbeat
        ["import", "--file", str(bad_import)],
    ):
        assert_error(sq.run("--db", str(typo), *args, check=False), 2)
        assert not typo.parent.exists(), args
    # The same on the default queue, on a machine that has none yet.
    fresh = {"QUEUECTL_DB": "", "XDG_DATA_HOME": str(tmp_path / "fresh")}
    for args in (["enqueue", '{"command":"true","zz":1}'], ["config", "set", "bogus", "1"]):
        assert_error(sq.run(*args, check=False, env=fresh), 2)
        assert not (tmp_path / "fresh").exists(), args
    # Valid input still makes the queue, with what it was given.
    sq.run("--db", str(typo), "config", "set", "max-retries", "5")
    job_id = sq.run("--db", str(typo), "enqueue", '{"command":"true","delay":"1h"}').stdout
    job = json.loads(sq.run("--db", str(typo), "show", job_id.strip(), "--json").stdout)
    assert job["max_retries"] == 5 and job["state"] == "pending"
    exported = sq.run("--db", str(typo), "export").stdout
    (tmp_path / "export.jsonl").write_text(exported)
    copy = tmp_path / "copy" / "queuectl.db"
    sq.run("--db", str(copy), "import", "--file", str(tmp_path / "export.jsonl"))
    assert sq.run("--db", str(copy), "export").stdout.splitlines()[1:] == exported.splitlines()[1:]
    assert sq.run("--db", str(copy), "config", "get", "max_retries").stdout == "5\n"


def test_the_default_queue_is_made_by_any_command(sq: Queuectl, tmp_path: Path) -> None:
    env = {"QUEUECTL_DB": "", "XDG_DATA_HOME": str(tmp_path / "fresh")}
    assert "pending    0" in sq.run("status", env=env).stdout
    assert (tmp_path / "fresh" / "queuectl" / "queuectl.db").is_file()


def test_cancel_takes_several_jobs_all_or_none(qctl: Queuectl) -> None:
    a, b, c = (qctl.enqueue({"command": "true"}) for _ in range(3))
    message = assert_error(qctl.run("cancel", a, "no-such-job", b, check=False), 1)
    assert message == "queuectl: error: no job with id 'no-such-job'; nothing was canceled"
    assert [qctl.state(j) for j in (a, b, c)] == ["pending"] * 3
    assert qctl.run("cancel", a, b).stdout == f"Canceled {a}.\nCanceled {b}.\n"
    message = assert_error(qctl.run("cancel", c, a, check=False), 1)
    assert f"job {a} is canceled" in message and message.endswith("nothing was canceled")
    assert qctl.state(c) == "pending"
    # --json: one job is an object (as before several could be given), several an array.
    d = qctl.enqueue({"command": "true"})
    assert [j["id"] for j in qctl.json("cancel", c, d, c)] == [c, d]  # a repeat counts once
    e = qctl.enqueue({"command": "true"})
    assert qctl.json("cancel", e, e)["state"] == "canceled"  # one job: an object
    f = qctl.enqueue({"command": "true"})
    message = assert_error(qctl.run("cancel", f, "\udcff", check=False), 1)  # bytes 0xff
    assert message.endswith("nothing was canceled") and qctl.state(f) == "pending", message


def test_closed_standard_streams_are_no_internal_error(sq: Queuectl) -> None:
    # Found by an audit: `queuectl status >&-` failed as "internal error:
    # AttributeError" (Python leaves sys.stdout None when descriptor 1 is closed).
    job_id = sq.enqueue({"command": "echo printed into nowhere"})

    def close_stdout() -> None:
        os.close(1)

    def without_stdout(*args: str) -> int:
        return subprocess.run(
            [sq.exe, *args], env=sq.env, preexec_fn=close_stdout, check=False, timeout=60
        ).returncode

    for args in (["status"], ["list", "--json"], ["show", job_id]):
        assert without_stdout(*args) == 0, args
    assert without_stdout("show", "no-such-job") == 1
    # A worker whose stdout is closed runs its jobs; their output goes only to the logs.
    worker = subprocess.Popen(
        [sq.exe, "worker", "start", "--count", "1"],
        env=sq.env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=close_stdout,
    )
    try:
        sq.wait_state(job_id, "completed")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert sq.run("logs", job_id).stdout.endswith("printed into nowhere\n")
    assert sq.run("status").returncode == 0  # the database is intact


def test_a_queuectl_db_of_spaces_is_refused(sq: Queuectl) -> None:
    result = sq.run("status", check=False, env={"QUEUECTL_DB": "  "})
    assert "$QUEUECTL_DB" in assert_error(result, 2)
