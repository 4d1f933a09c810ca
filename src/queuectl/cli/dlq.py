"""`queuectl dlq`: the dead-letter queue (jobs in state `dead`)."""

from __future__ import annotations

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.cli.render import emit_json, jobs_table


@cli.group()
def dlq() -> None:
    """Inspect and retry jobs that exhausted their retries."""


@dlq.command(name="list")
@click.option("--limit", type=int, help="At most this many jobs (default: all).")
@json_option
@pass_app
def dlq_list(app: AppContext, limit: int | None, as_json: bool) -> None:
    """List dead jobs, oldest first."""
    jobs = app.service().list_jobs("dead", None, limit)
    if as_json:
        emit_json([j.to_dict() for j in jobs])
    elif jobs:
        click.echo(jobs_table(jobs))
        for job in jobs:
            if job.last_error:
                click.echo(f"  {job.id}: {job.last_error}")
    else:
        click.echo("The dead-letter queue is empty.")


@dlq.command(name="retry")
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@json_option
@pass_app
def dlq_retry(app: AppContext, job_ids: tuple[str, ...], as_json: bool) -> None:
    """Put dead jobs back to pending with attempts reset to 0."""
    service = app.service()
    for job_id in job_ids:  # validate all first: an unknown or live id changes nothing
        job = service.get(job_id)
        if job.state.value != "dead":
            service.retry_dead(job_id)  # raises the WrongState error with its message
    jobs = [service.retry_dead(job_id) for job_id in job_ids]
    if as_json:
        emit_json([j.to_dict() for j in jobs])
    else:
        for job in jobs:
            click.echo(f"Retrying {job.id}: pending, attempts reset to 0.")
