"""`queuectl enqueue`: add one job (JSON argument) or many (JSON lines)."""

from __future__ import annotations

import sys

from queuectl.errors import InvalidInput

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from queuectl.cli.context import AppContext

#: Flags that set a job field, as (flag, field, help).
FIELD_FLAGS = (
    ("--id", "id", "job id (default: a new UUID)"),
    (
        "--max-retries",
        "max_retries",
        "failed runs allowed before the job is dead (default: `config get max_retries`)",
    ),
    ("--priority", "priority", "higher runs first (default 0)"),
    ("--queue", "queue", "queue name (default 'default')"),
    ("--run-at", "run_at", "do not run before this ISO-8601 time (no offset = local time)"),
    ("--delay", "delay", "do not run before this many seconds from now (e.g. 30, 5m, 2h)"),
    (
        "--timeout",
        "timeout",
        "kill the job (all its processes) after this long, e.g. 90, 10m, or none for no "
        "limit (default: `config get job_timeout`)",
    ),
)


def register(commands: Any) -> None:
    from queuectl.cli.app import add_command, add_json  # argparse: not for plain_arguments()

    parser = add_command(
        commands,
        "enqueue",
        run,
        'add a job: queuectl enqueue \'{"command":"sleep 2"}\'',
        "Add a job. JSON fields: command (required), id, max_retries, priority, queue, "
        "run_at, delay, timeout. Flags set the same fields and win over the JSON. Prints "
        "the new job's id (one per line with --file).",
    )
    parser.add_argument("job_json", metavar="JSON", nargs="?", help="the job as a JSON object")
    parser.add_argument(
        "--file",
        "-f",
        help="read many jobs, one JSON object per line ('-' for stdin); all or nothing",
    )
    for flag, field, help_text in FIELD_FLAGS:
        parser.add_argument(flag, dest=f"field_{field}", metavar="VALUE", help=help_text)
    add_json(parser)


def plain_arguments(job_json: str) -> argparse.Namespace:
    """What the parser makes of `queuectl enqueue JOB_JSON`, built without argparse
    (see `queuectl.cli._plain_enqueue`; a test pins the two equal)."""
    from types import SimpleNamespace

    fields = {f"field_{field}": None for _, field, _ in FIELD_FLAGS}
    # A SimpleNamespace reads the same; argparse.Namespace would import argparse.
    namespace: argparse.Namespace = SimpleNamespace(  # type: ignore[assignment]
        db=None, handler=run, job_json=job_json, file=None, as_json=False, **fields
    )
    return namespace


def run(app: AppContext, args: argparse.Namespace) -> None:
    """Validate everything, store all or nothing, print the ids."""
    import gc

    # A --file batch allocates a few objects per line and keeps them all until they
    # are stored; none form cycles. The cyclic collector would only re-scan that
    # growing heap, a tenth of the time of a 100,000-line file. The command then
    # ends, so nothing is left for it to collect later.
    collecting = gc.isenabled()
    gc.disable()
    try:
        _enqueue(app, args)
    finally:
        if collecting:
            gc.enable()


def _enqueue(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.queue.jobspec import parse_json_object

    overrides = {
        field: getattr(args, f"field_{field}")
        for _, field, _ in FIELD_FLAGS
        if getattr(args, f"field_{field}") is not None
    }
    if (args.job_json is None) == (args.file is None):
        raise InvalidInput("give one JSON job, or --file FILE (or --file - for stdin)")
    if args.job_json is not None:
        specs = [("job", _with_flags(parse_json_object(args.job_json), overrides))]
    elif overrides:
        specs = [
            (where, _with_flags(parse_json_object(line, where), overrides))
            for where, line in read_input_lines(args.file)
        ]
    else:  # no flags to merge: the parsed dicts as they are, not a copy of each
        specs = [
            (where, parse_json_object(line, where)) for where, line in read_input_lines(args.file)
        ]
    if not specs:
        raise InvalidInput(f"{args.file}: no jobs found")
    if app.makes_new_queue():
        from queuectl.queue.service import jobs_for_new_queue

        checked = jobs_for_new_queue(specs)  # refused input must not create the file
        enqueued = app.service(create=True).enqueue_jobs(checked)
    else:
        enqueued = app.service(create=True).enqueue(specs)
    if args.as_json:
        from queuectl.cli.render import emit_json

        jobs = enqueued.jobs()
        emit_json(jobs[0].to_dict() if args.job_json is not None else [j.to_dict() for j in jobs])
    else:
        sys.stdout.write("".join(f"{job_id}\n" for job_id in enqueued.ids()))


#: The fields that say when a job may run: a flag for either replaces both in the JSON.
WHEN_FIELDS = frozenset({"run_at", "delay"})


def _with_flags(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The JSON's fields with the flags' over them (flags win)."""
    if not WHEN_FIELDS.isdisjoint(overrides):
        spec = {k: v for k, v in spec.items() if k not in WHEN_FIELDS}
    return {**spec, **overrides}


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
        text = raw.decode("utf-8-sig")  # a BOM, as some editors write, is not JSON
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{label}: not UTF-8 text (byte {exc.start})") from None
    return [
        (f"{label} line {number}", line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
