"""Storage: one interface (`Store`), implemented by SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from queuectl.errors import InvalidInput

if TYPE_CHECKING:
    from queuectl.storage.base import Store


def is_postgres_url(target: str) -> bool:
    """True when `target` names a PostgreSQL database rather than a SQLite path."""
    return target.startswith(("postgresql://", "postgres://"))


def open_store(target: str, *, durable: bool = True) -> Store:
    """Open the store named by a `--db` value: a `postgresql://` URL or a SQLite path."""
    if is_postgres_url(target):
        raise InvalidInput("PostgreSQL support is not available in this version yet")
    from queuectl.storage.sqlite import SQLiteStore

    return SQLiteStore(Path(target), durable=durable)
