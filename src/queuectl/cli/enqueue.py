"""`queuectl enqueue`: add one job (JSON argument) or many (JSON lines)."""

from __future__ import annotations

import sys
from typing import Any

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.errors import InvalidInput


@cli.command()
@click.argument("job_json", metavar="JSON", required=False)
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read many jobs, one JSON object per line ('-' for stdin); all or nothing.",
)
@click.option("--id", "job_id", help="Job id (default: a new UUID).")
@click.option("--max-retries", type=int, help="Failed runs allowed before the job is dead.")
@click.option("--priority", type=int, help="Higher runs first (default 0).")
@click.option("--queue", help="Queue name (default 'default').")
@click.option("--run-at", help="Do not run before this ISO-8601 time (no offset = local time).")
@click.option("--delay", help="Do not run before this many seconds from now (e.g. 30, 5m, 2h).")
@click.option("--timeout", help="Kill the job after this many seconds (e.g. 90, 10m).")
@json_option
@pass_app
def enqueue(
    app: AppContext,
    /,
    job_json: str | None,
    file: str | None,
    as_json: bool,
    **flags: Any,
) -> None:
    """Add a job: queuectl enqueue '{"command":"sleep 2"}'.

    JSON fields: command (required), id, max_retries, priority, queue, run_at,
    delay, timeout. Flags set the same fields and win over the JSON. Prints the
    new job's id (one per line with --file).
    """
    overrides = _flag_overrides(flags)
    if (job_json is None) == (file is None):
        raise click.UsageError("give one JSON job, or --file FILE (or --file - for stdin)")
    from queuectl.queue.jobspec import parse_json_object

    if job_json is not None:
        specs = [("job", {**parse_json_object(job_json), **overrides})]
    else:
        assert file is not None
        specs = [(where, {**spec, **overrides}) for where, spec in _read_lines(file)]
    if not specs:
        raise InvalidInput(f"{file}: no jobs found")
    jobs = app.service().enqueue(specs)
    if as_json:
        from queuectl.cli.render import emit_json

        emit_json(jobs[0].to_dict() if job_json is not None else [j.to_dict() for j in jobs])
    else:
        sys.stdout.write("".join(f"{j.id}\n" for j in jobs))


def _flag_overrides(flags: dict[str, Any]) -> dict[str, Any]:
    names = {"job_id": "id"}
    return {names.get(k, k): v for k, v in flags.items() if v is not None}


def read_input_lines(file: str) -> list[tuple[str, str]]:
    """Non-blank lines of a UTF-8 file or stdin (`-`), each with a `where` for errors."""
    label = "stdin" if file == "-" else file
    try:
        if file == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(file, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        raise InvalidInput(f"cannot read {label}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{label}: not UTF-8 text (byte {exc.start})") from None
    return [
        (f"{label} line {number}", line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _read_lines(file: str) -> list[tuple[str, dict[str, Any]]]:
    from queuectl.queue.jobspec import parse_json_object

    return [(where, parse_json_object(line, where)) for where, line in read_input_lines(file)]
