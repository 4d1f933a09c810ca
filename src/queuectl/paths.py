"""Where the queue lives: the data directory and the database it holds by default."""

from __future__ import annotations

import os
import re
from pathlib import Path

DB_ENV = "QUEUECTL_DB"
DB_FILENAME = "queuectl.db"


def data_dir() -> Path:
    """`$XDG_DATA_HOME/queuectl`, usually `~/.local/share/queuectl`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "queuectl"


def resolve_db(option: str | None) -> str:
    """The database to use: `--db`, else `$QUEUECTL_DB`, else the default SQLite file."""
    return option or os.environ.get(DB_ENV) or str(data_dir() / DB_FILENAME)


def is_postgres_url(target: str) -> bool:
    """True when `target` names a PostgreSQL database rather than a SQLite path."""
    return target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for messages, `status` and file names."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def logs_dir_for(db_target: str) -> Path:
    """Where this host keeps job logs for a queue.

    Beside a SQLite database (`queuectl.db` -> `queuectl.logs/`); for a PostgreSQL
    queue, in the data directory under a name derived from the URL (without its
    password), since each host keeps the logs of the jobs it ran.
    """
    if is_postgres_url(db_target):
        import hashlib

        digest = hashlib.sha256(redact_url(db_target).encode()).hexdigest()[:12]
        return data_dir() / "logs" / f"postgresql-{digest}"
    path = Path(db_target).expanduser()
    return (
        path.with_name(path.stem + ".logs") if path.suffix else path.with_name(path.name + ".logs")
    )


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (existing ones are left as
    they are): everything queuectl creates is private to the user."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
