"""The root `queuectl` command group and the context every command shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from queuectl import __version__

if TYPE_CHECKING:
    from queuectl.queue.service import QueueService
    from queuectl.storage.base import Store

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else."
)


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
    def logs_dir(self) -> Any:
        from queuectl.paths import logs_dir_for

        return logs_dir_for(self.db)

    def service(self, *, durable: bool = True) -> QueueService:
        if self._service is None:
            from queuectl.queue.service import QueueService

            self._service = QueueService(self.open_store(durable=durable), self.logs_dir)
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.store.close()
            self._service = None


pass_app = click.make_pass_decorator(AppContext)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="PATH|URL",
    help="SQLite file or postgresql:// URL (default: $QUEUECTL_DB, else "
    "$XDG_DATA_HOME/queuectl/queuectl.db).",
)
@click.version_option(__version__, prog_name="queuectl")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """A background job queue you drive from the shell.

    A job is a shell command. Enqueue it, start workers, and queuectl runs it,
    retrying failures with exponential backoff; jobs that keep failing land in
    the dead-letter queue (`queuectl dlq`).
    """
    app = AppContext(db)
    ctx.obj = app
    ctx.call_on_close(app.close)
