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
        import os

        from queuectl.paths import DB_ENV, resolve_db

        self.db = resolve_db(db_option)
        #: Where the user named the queue (None: the default one).
        self.named_by = "--db" if db_option else f"${DB_ENV}" if os.environ.get(DB_ENV) else None
        self._service: QueueService | None = None

    def open_store(
        self,
        *,
        durable: bool = True,
        worker: bool = False,
        require_schema: bool = True,
        create: bool = False,
    ) -> Store:
        """`create`: the command writes to the queue, so a missing SQLite file is made.

        The default queue is made by whichever command comes first, so that
        `queuectl status` on a new machine shows an empty queue. A queue named with
        --db or $QUEUECTL_DB is made only by a command that puts something in it: a
        command that reads, given a mistyped path, says so instead of leaving an
        empty queue there and showing it as if it were the user's.
        """
        from queuectl.errors import QueueNotFound
        from queuectl.storage import open_store

        try:
            return open_store(
                self.db,
                durable=durable,
                worker=worker,
                require_schema=require_schema,
                create=create or self.named_by is None,
            )
        except QueueNotFound as exc:
            raise QueueNotFound(
                f"{exc.message} (check {self.named_by}; `queuectl enqueue` creates a queue)"
            ) from None

    def makes_new_queue(self) -> bool:
        """Whether a writing command would create its queue: a SQLite path where no
        file exists yet (the default one too).

        Such a command checks its input before it opens the queue (see
        `queuectl.queue.service.jobs_for_new_queue`), so that input it refuses
        leaves no empty queue behind, at a mistyped path or anywhere.
        """
        import os

        from queuectl.paths import is_postgres_url

        return not is_postgres_url(self.db) and not os.path.lexists(self.db)

    @property
    def logs_dir(self) -> str:
        from queuectl.paths import logs_dir_for

        return logs_dir_for(self.db)

    def service(self, *, require_schema: bool = True, create: bool = False) -> QueueService:
        """The queue's service; `create` as for `open_store`."""
        if self._service is None:
            from queuectl.queue.service import QueueService

            store = self.open_store(require_schema=require_schema, create=create)
            self._service = QueueService(store, self.logs_dir)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.store.close()
            self._service = None
