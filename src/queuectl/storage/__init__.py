"""Storage: one interface (`Store`), implemented by SQLite and PostgreSQL."""

from __future__ import annotations

from queuectl.errors import StorageUnavailable
from queuectl.paths import is_postgres_url

TYPE_CHECKING = False  # importing `typing` costs start-up time

if TYPE_CHECKING:
    from queuectl.storage.base import Store


def open_store(
    target: str,
    *,
    durable: bool = True,
    worker: bool = False,
    require_schema: bool = True,
    create: bool = True,
) -> Store:
    """Open the store named by a `--db` value: a `postgresql://` URL or a SQLite path.

    `durable`: SQLite commits are fsynced (every write that acknowledges to a user).
    `worker`: open for a worker process (PostgreSQL: a shared connection pool).
    `require_schema`: PostgreSQL refuses pending migrations (SQLite applies its own).
    `create`: SQLite makes the file when it does not exist; if False, a missing
    file is an error (PostgreSQL never creates a database).
    """
    if is_postgres_url(target):
        try:
            from queuectl.storage.postgres import PostgresStore
        except ImportError as exc:  # psycopg missing
            raise StorageUnavailable(
                f"PostgreSQL support needs psycopg: pip install 'queuectl[postgres]' ({exc})"
            ) from exc
        return PostgresStore(target, pooled=worker, require_schema=require_schema)
    from queuectl.storage.sqlite import SQLiteStore

    return SQLiteStore(target, durable=durable, create=create)
