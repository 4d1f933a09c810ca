"""The context every command shares: which database, and the store opened on demand.

Its own module, without argparse, so that `queuectl enqueue JSON` can run
without building a parser at all (see `queuectl.cli.main`).
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from queuectl.queue.service import QueueService
    from queuectl.storage.base import Store


class AppContext:
    """Opens the database on first use, so `--help` and usage errors never touch it."""

    def __init__(self, db_option: str | None) -> None:
        from queuectl.paths import resolve_db

        self.db = resolve_db(db_option)
        self._service: QueueService | None = None

    def open_store(
        self, *, durable: bool = True, worker: bool = False, require_schema: bool = True
    ) -> Store:
        from queuectl.storage import open_store

        return open_store(self.db, durable=durable, worker=worker, require_schema=require_schema)

    @property
    def logs_dir(self) -> str:
        from queuectl.paths import logs_dir_for

        return logs_dir_for(self.db)

    def service(self, *, require_schema: bool = True) -> QueueService:
        if self._service is None:
            from queuectl.queue.service import QueueService

            store = self.open_store(require_schema=require_schema)
            self._service = QueueService(store, self.logs_dir)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.store.close()
            self._service = None
