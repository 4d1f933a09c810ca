"""`queuectl db` (schema migrations) and `queuectl export` / `import` (JSON lines)."""

from __future__ import annotations

import sys

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.cli.enqueue import read_input_lines
from queuectl.cli.render import emit_json


@cli.group()
def db() -> None:
    """Database schema: status and explicit migrations (needed on PostgreSQL)."""


@db.command(name="status")
@json_option
@pass_app
def db_status(app: AppContext, as_json: bool) -> None:
    """Which migrations are applied."""
    from queuectl.queue.service import QueueService

    service = QueueService(app.open_store(require_schema=False), app.logs_dir)
    try:
        applied, latest = service.schema_version()
        location, backend = service.store.location, service.store.backend
    finally:
        service.store.close()
    if as_json:
        emit_json(
            {
                "database": {"backend": backend, "location": location},
                "applied": applied,
                "latest": latest,
                "pending": latest - applied,
            }
        )
    elif applied < latest:
        click.echo(
            f"{location} ({backend}): {applied} of {latest} migrations applied; "
            "run `queuectl db migrate`"
        )
    else:
        click.echo(f"{location} ({backend}): schema up to date ({applied} of {latest} migrations)")


@db.command(name="migrate")
@pass_app
def db_migrate(app: AppContext) -> None:
    """Apply pending migrations (safe to run from several hosts at once)."""
    from queuectl.queue.service import QueueService

    service = QueueService(app.open_store(require_schema=False), app.logs_dir)
    try:
        applied = service.migrate()
        current, latest = service.schema_version()
    finally:
        service.store.close()
    if applied:
        click.echo(f"Applied migration(s) {', '.join(map(str, applied))}; schema at {current}.")
    else:
        click.echo(f"Schema already up to date ({current} of {latest}).")


@cli.command(name="export")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Where to write ('-' for stdout).",
)
@pass_app
def export_queue(app: AppContext, file: str) -> None:
    """Write the whole queue (settings and every job with its history) as JSON lines."""
    service = app.service()
    if file == "-":
        for line in service.export_lines():
            sys.stdout.write(line + "\n")
        return
    with open(file, "w", encoding="utf-8") as handle:
        for line in service.export_lines():
            handle.write(line + "\n")


@cli.command(name="import")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    show_default=True,
    help="Output of `queuectl export` ('-' for stdin).",
)
@pass_app
def import_queue(app: AppContext, file: str) -> None:
    """Load a queue written by `queuectl export`, all or nothing.

    Jobs keep their ids, states, attempts and history; a job that was running
    comes back pending. Ids already present are refused (nothing is imported).
    """
    jobs, settings = app.service().import_lines(read_input_lines(file))
    click.echo(f"Imported {jobs} job(s) and {settings} setting(s).")
