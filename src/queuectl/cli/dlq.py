"""`queuectl dlq`: the dead-letter queue (jobs in state `dead`)."""

from __future__ import annotations

import argparse

from queuectl.cli.app import add_command, add_group, add_json, write
from queuectl.cli.context import AppContext

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    group = add_group(commands, "dlq", "inspect and retry jobs that exhausted their retries")
    parser = add_command(group, "list", dlq_list, "list dead jobs, oldest first")
    parser.add_argument("--limit", type=int, help="at most this many jobs (default: all)")
    add_json(parser)
    parser = add_command(
        group, "retry", dlq_retry, "put dead jobs back to pending with attempts reset to 0"
    )
    parser.add_argument("job_ids", metavar="ID", nargs="+")
    add_json(parser)


def dlq_list(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.render import emit_json, jobs_table

    jobs = app.service().list_jobs("dead", None, args.limit)
    if args.as_json:
        emit_json([j.to_dict() for j in jobs])
    elif jobs:
        write(jobs_table(jobs))
        for job in jobs:
            if job.last_error:
                write(f"  {job.id}: {job.last_error}")
    else:
        write("The dead-letter queue is empty.")


def dlq_retry(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.models import JobState

    service = app.service()
    for job_id in args.job_ids:  # check all first: an unknown or live id changes nothing
        if service.get(job_id).state is not JobState.DEAD:
            service.retry_dead(job_id)  # raises the WrongState error with its message
    jobs = [service.retry_dead(job_id) for job_id in args.job_ids]
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json([j.to_dict() for j in jobs])
    else:
        for job in jobs:
            write(f"Retrying {job.id}: pending, attempts reset to 0.")
