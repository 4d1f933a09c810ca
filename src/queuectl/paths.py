"""Where the queue lives: the data directory and the database it holds by default.

Plain `os.path` strings rather than `pathlib`: this module is on the path of
every CLI call, and start-up time is the cost of a single `queuectl enqueue`.
"""

from __future__ import annotations

import os
import re

DB_ENV = "QUEUECTL_DB"
DB_FILENAME = "queuectl.db"


def data_dir() -> str:
    """`$XDG_DATA_HOME/queuectl`, usually `~/.local/share/queuectl`.

    A relative `XDG_DATA_HOME` is ignored, as the XDG spec asks: it would give each
    working directory a queue of its own.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "queuectl")


def resolve_db(option: str | None) -> str:
    """The database to use: `--db`, else `$QUEUECTL_DB`, else the default SQLite file.

    An empty `QUEUECTL_DB` counts as unset; an empty `--db` is a mistake.
    """
    if option is not None:
        if not option.strip():
            from queuectl.errors import InvalidInput

            raise InvalidInput("--db: give a SQLite file path or a postgresql:// URL")
        return option
    return os.environ.get(DB_ENV) or os.path.join(data_dir(), DB_FILENAME)


def is_postgres_url(target: str) -> bool:
    """True when `target` names a PostgreSQL database rather than a SQLite path."""
    return target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for messages, `status` and file names."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def logs_dir_for(db_target: str) -> str:
    """Where this host keeps job logs for a queue.

    Beside a SQLite database (`queuectl.db` -> `queuectl.logs/`); for a PostgreSQL
    queue, in the data directory under a name derived from the URL (without its
    password), since each host keeps the logs of the jobs it ran.
    """
    if is_postgres_url(db_target):
        import hashlib

        digest = hashlib.sha256(redact_url(db_target).encode()).hexdigest()[:12]
        return os.path.join(data_dir(), "logs", f"postgresql-{digest}")
    stem, suffix = os.path.splitext(os.path.expanduser(db_target))
    return f"{stem}.logs" if suffix else f"{stem}{suffix}.logs"


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """Create `path` and any missing parents with mode 0700 (existing ones are left as
    they are): everything queuectl creates is private to the user."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.exists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:  # noqa: SIM105 - contextlib.suppress would cost start-up time here
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass  # created meanwhile by another process
