"""`queuectl db` (schema migrations) and `queuectl export` / `import` (JSON lines)."""

from __future__ import annotations

import argparse
import sys

from queuectl.cli.app import add_command, add_group, add_json, write
from queuectl.cli.context import AppContext

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    group = add_group(commands, "db", "database schema: status and explicit migrations")
    add_json(add_command(group, "status", db_status, "which migrations are applied"))
    add_json(
        add_command(
            group,
            "migrate",
            db_migrate,
            "apply pending migrations (safe from several hosts at once)",
        )
    )
    parser = add_command(
        commands,
        "export",
        export_queue,
        "write the whole queue (settings, every job with its history) as JSON lines",
    )
    parser.add_argument("--file", "-f", default="-", help="where to write ('-' for stdout)")
    parser = add_command(
        commands,
        "import",
        import_queue,
        "load a queue written by `queuectl export`, all or nothing",
        "Load a queue written by `queuectl export`, all or nothing. Jobs keep their ids, "
        "states, attempts and history; a job that was running comes back pending. Ids "
        "already present are refused (nothing is imported).",
    )
    parser.add_argument(
        "--file", "-f", default="-", help="output of `queuectl export` ('-' for stdin)"
    )
    add_json(parser)


def db_status(app: AppContext, args: argparse.Namespace) -> None:
    service = app.service(require_schema=False)
    applied, latest = service.schema_version()
    location, backend = service.store.location, service.store.backend
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json(
            {
                "database": {"backend": backend, "location": location},
                "applied": applied,
                "latest": latest,
                "pending": latest - applied,
            }
        )
    elif applied < latest:
        write(
            f"{location} ({backend}): {applied} of {latest} migrations applied; "
            "run `queuectl db migrate`"
        )
    else:
        write(f"{location} ({backend}): schema up to date ({applied} of {latest} migrations)")


def db_migrate(app: AppContext, args: argparse.Namespace) -> None:
    service = app.service(require_schema=False, create=True)
    applied = service.migrate()
    current, latest = service.schema_version()
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json({"applied_now": applied, "applied": current, "latest": latest})
    elif applied:
        write(f"Applied migration(s) {', '.join(map(str, applied))}; schema at {current}.")
    else:
        write(f"Schema already up to date ({current} of {latest}).")


def export_queue(app: AppContext, args: argparse.Namespace) -> None:
    service = app.service()
    if args.file == "-":
        for line in service.export_lines():
            sys.stdout.write(line + "\n")
        return
    import os

    from queuectl.errors import InvalidInput

    try:  # private like every file queuectl creates: it holds every command
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot write {args.file}: {exc.strerror}") from None
    with open(fd, "w", encoding="utf-8") as handle:
        for line in service.export_lines():
            handle.write(line + "\n")


def import_queue(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.enqueue import read_input_lines

    lines = read_input_lines(args.file)
    if app.makes_new_queue():  # refused input must not create the file
        from queuectl.queue.service import read_export

        export = read_export(lines)
        jobs, settings = app.service(create=True).import_export(export)
    else:
        jobs, settings = app.service(create=True).import_lines(lines)
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json({"jobs": jobs, "settings": settings})
    else:
        write(f"Imported {jobs} job(s) and {settings} setting(s).")
