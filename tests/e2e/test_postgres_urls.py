"""End-to-end, PostgreSQL only: what a user may write in `--db` / `QUEUECTL_DB`.

Found by an audit: passwords given as a query parameter were printed, malformed
URLs took ten seconds of retries to fail with exit 1, a scheme typo made a SQLite
file named after the URL, and `logs` found a job's output only under the exact
spelling of the URL its worker was started with.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import Hosts, assert_error, with_url_params
from tests.pg import fresh_schema

SECRET = "s3cret-in-the-url"


def test_a_password_in_the_query_string_is_never_printed(hosts: Hosts) -> None:
    assert hosts.db_target is not None
    url = with_url_params(hosts.db_target, password=SECRET)  # trust auth: ignored
    outputs = [
        hosts.run("--db", url, "status").stdout,
        hosts.run("--db", url, "status", "--json").stdout,
        hosts.run("--db", url, "db", "status", "--json").stdout,
    ]
    worker = hosts.start_on("host-a", "--count", "1", db=url)
    job_id = hosts.enqueue({"command": "true"})
    hosts.wait_state(job_id, "completed")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    outputs.append(worker.stderr())
    malformed = with_url_params("postgresql://postgres@127.0.0.1:99999/test", password=SECRET)
    outputs.append(assert_error(hosts.run("--db", malformed, "status", check=False), 2))
    for text in outputs:
        assert SECRET not in text, text
        assert "password=***" in text, text


@pytest.mark.parametrize(
    "suffix",
    [":99999/test", ":port/test", "/test?sslmode=sometimes", "/test?no_such_option=1"],
)
def test_a_malformed_url_is_bad_input_at_once(hosts: Hosts, suffix: str) -> None:
    url = "postgresql://postgres@127.0.0.1" + suffix
    # Exit 2 (bad input), before any connection attempt: libpq used to report these
    # only when connecting, after ten seconds of retries, as exit 1.
    message = assert_error(hosts.run("--db", url, "status", check=False, timeout=60), 2)
    assert "postgresql://postgres@127.0.0.1" in message


@pytest.mark.parametrize(
    "target", ["mysql://root@localhost/jobs", "sqlite:///{tmp}/q.db", "postgresql+psycopg://h/db"]
)
def test_a_url_of_another_scheme_is_refused_not_made_a_file(
    hosts: Hosts, tmp_path: Path, target: str
) -> None:
    target = target.replace("{tmp}", str(tmp_path))
    message = assert_error(hosts.run("--db", target, "status", check=False), 2)
    assert "postgresql://" in message
    # Taken as a SQLite path (relative to the command's directory), it made a file.
    assert not [p for p in hosts.root.rglob("*") if ":" in p.name or p.name == "q.db"]


def test_the_scheme_may_be_written_in_any_case(hosts: Hosts) -> None:
    assert hosts.db_target is not None
    shouted = "PostgreSQL" + hosts.db_target[len("postgresql") :]
    job_id = hosts.run("--db", shouted, "enqueue", '{"command":"true"}').stdout.strip()
    assert hosts.job(job_id)["command"] == "true"  # the same queue


def test_logs_are_found_whatever_the_spelling_of_the_url(hosts: Hosts) -> None:
    assert hosts.db_target is not None
    job_id = hosts.enqueue({"command": "echo found-it"})
    worker = hosts.start_on("host-a", "--count", "1")
    hosts.wait_state(job_id, "completed")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    base = hosts.db_target.replace("127.0.0.1:5432", "127.0.0.1")
    spellings = [
        hosts.db_target,
        base,
        base.replace("postgresql://", "postgres://"),
        base.replace("postgres@", "postgres:anything@"),
        with_url_params(base, password="x", application_name="other"),
    ]
    for url in spellings:
        assert "found-it" in hosts.run("--db", url, "logs", job_id).stdout, url


def test_a_search_path_naming_no_schema_is_said_so(tmp_path: Path) -> None:
    with fresh_schema() as url:
        missing = url.replace("search_path%3D", "search_path%3Dno_such_")
        hosts = Hosts(tmp_path, missing)
        # Every command says it, not "needs migrations" first (which `db migrate`
        # then contradicts).
        messages = [
            assert_error(hosts.run(*args, check=False), 1)
            for args in (["db", "migrate"], ["db", "status"], ["status"])
        ]
    for message in messages:
        assert "no schema" in message and "CREATE SCHEMA" in message, message


def test_a_worker_that_cannot_connect_says_why(hosts: Hosts) -> None:
    url = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    started = hosts.run("--db", url, "worker", "start", check=False, timeout=60)
    message = assert_error(started, 1)
    assert re.search(r"refused|could not connect", message, re.I), message
    assert json.loads(hosts.run("worker", "list", "--json").stdout) == []


def test_connections_notice_a_dead_peer_and_the_url_can_say_otherwise() -> None:
    """Every connection gets TCP keepalives and a user timeout, so a worker whose
    server vanished (packets dropped, not refused) is told within seconds instead of
    waiting out the kernel's retransmissions. A setting in the URL wins."""
    from queuectl.storage.postgres import LIVENESS, _connect
    from tests.pg import PG_URL

    url = with_url_params(PG_URL, keepalives_idle="30")
    with _connect(url, patience=5.0) as conn:
        dsn = dict(part.split("=", 1) for part in conn.info.dsn.split())
    assert dsn["keepalives_idle"] == "30"
    for name, value in LIVENESS.items():
        if name != "keepalives_idle":
            assert dsn[name] == value, (name, dsn)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/queuectl_no_such_database",
        "postgresql://queuectl_no_such_role@127.0.0.1:5432/test",
    ],
)
def test_a_server_that_refuses_the_url_is_not_retried(hosts: Hosts, url: str) -> None:
    """A misspelt database or role: the server is up and says no, so the command
    fails at once ("cannot connect"), instead of retrying for ten seconds as for a
    server that cannot be reached."""
    message = assert_error(hosts.run("--db", url, "status", check=False), 1)
    assert message.startswith("queuectl: error: cannot connect to PostgreSQL at "), message
    assert "does not exist" in message
