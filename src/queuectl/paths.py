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

    An empty `QUEUECTL_DB` counts as unset; an empty `--db` is a mistake, and so is
    a URL of any scheme but PostgreSQL's (`mysql://`, `sqlite:///x.db`, a typo):
    taken as a SQLite path, it would quietly make a new queue in a file of that name.
    """
    from queuectl.errors import InvalidInput

    if option is not None and not option.strip():
        raise InvalidInput("--db: give a SQLite file path or a postgresql:// URL")
    from_env = os.environ.get(DB_ENV)
    if from_env and not from_env.strip():  # spaces only: a mistake, like an empty --db
        raise InvalidInput(f"${DB_ENV}: give a SQLite file path or a postgresql:// URL")
    target = option or from_env or os.path.join(data_dir(), DB_FILENAME)
    scheme = _URL_SCHEME.match(target)
    if scheme is None:
        return target
    if scheme.group(1).lower() in POSTGRES_SCHEMES:  # libpq reads only lower case
        return scheme.group(1).lower() + target[len(scheme.group(1)) :]
    raise InvalidInput(
        f"{redact_url(target)}: not a database queuectl can use: give a SQLite file "
        "path or a postgresql:// URL"
    )


POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def is_postgres_url(target: str) -> bool:
    """True when `target` (as `resolve_db` returns it) names a PostgreSQL database."""
    return target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password (`user:password@` or `?password=`), for messages,
    `status` and file names."""
    url = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def queue_identity(url: str) -> str:
    """What names one PostgreSQL queue whatever the URL's spelling: host and port
    (5432 when not given), database and options (where `search_path` picks the
    schema). Not the user, the password, nor the scheme's spelling."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    hosts = hosts.lower()
    if hosts and ":" not in hosts.replace("[", "").split("]")[-1] and "," not in hosts:
        hosts += ":5432"
    dbname = parts.path.lstrip("/") or userinfo.partition(":")[0]  # libpq's default
    options = parse_qs(parts.query).get("options", [])
    return f"{hosts}/{dbname}?options={'&'.join(options)}"


def logs_dir_for(db_target: str) -> str:
    """Where this host keeps job logs for a queue.

    Beside a SQLite database (`queuectl.db` -> `queuectl.logs/`); for a PostgreSQL
    queue, in the data directory under a name derived from the queue's identity
    (see `queue_identity`), since each host keeps the logs of the jobs it ran and
    `logs` must find them whichever spelling of the URL it is given.
    """
    if is_postgres_url(db_target):
        import hashlib

        digest = hashlib.sha256(queue_identity(db_target).encode()).hexdigest()[:12]
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
