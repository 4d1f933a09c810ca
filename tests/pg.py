"""A real PostgreSQL server for the tests: one fresh schema per test.

The server is `$QUEUECTL_TEST_PG` (default: the one this project's machines run,
postgresql://postgres@127.0.0.1:5432/test). Where none answers, PostgreSQL tests
are skipped with the reason, except under CI (`CI=true`), where they fail: CI
must never skip them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("QUEUECTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def pg_problem() -> str | None:
    """Why PostgreSQL cannot be used (None when it can), checked once per session."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} is not reachable ({str(exc).strip().splitlines()[0]})"
    return None


def require_pg() -> None:
    problem = pg_problem()
    if problem is None:
        return
    message = f"{problem}; set QUEUECTL_TEST_PG=postgresql://... to run the PostgreSQL tests"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests: {message}", pytrace=False)
    pytest.skip(message)


def url_for_schema(schema: str) -> str:
    """The test server's URL with `search_path` set to `schema`."""
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """Create an empty schema, yield a URL that uses it, drop it afterwards."""
    import psycopg

    require_pg()
    schema = f"qtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url_for_schema(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            # Workers killed mid-test may still hold connections; end them first.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{schema}%",),
            )
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
