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
        group,
        "retry",
        dlq_retry,
        "put dead jobs back to pending with attempts reset to 0",
        "Put dead jobs back to pending with attempts reset to 0: all the jobs given, or "
        "none (one that is not dead, or unknown, changes nothing). With --json, one job "
        "prints as an object, several as an array.",
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
    jobs = app.service().retry_dead(args.job_ids)
    if args.as_json:
        from queuectl.cli.render import emit_jobs_given

        emit_jobs_given(jobs, args.job_ids)
    else:
        for job in jobs:
            write(f"Retrying {job.id}: pending, attempts reset to 0.")
