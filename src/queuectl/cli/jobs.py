"""Reading the queue: `status`, `list`, `show`, `logs`, and `cancel`."""

from __future__ import annotations

import sys

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.cli.render import emit_json, job_details, jobs_table, table
from queuectl.models import JobState


@cli.command()
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Jobs per state, active workers, and the database in use."""
    report = app.service().status()
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"Database: {report.location} ({report.backend})")
    click.echo("Jobs:")
    for state in JobState:
        click.echo(f"  {state.value:<10} {report.counts.get(state, 0)}")
    click.echo(f"Workers: {len(report.workers)} active")
    for w in report.workers:
        jobs = ", ".join(w.current_jobs) or "idle"
        click.echo(f"  {w.id}  {w.host}  pid {w.pid}  {jobs}")


@cli.command(name="list")
@click.option(
    "--state", help="pending, running (or processing), completed, failed, dead, canceled."
)
@click.option("--queue", help="Only jobs in this queue.")
@click.option("--limit", type=int, help="At most this many jobs (default: all).")
@json_option
@pass_app
def list_jobs(
    app: AppContext, state: str | None, queue: str | None, limit: int | None, as_json: bool
) -> None:
    """List jobs, oldest first."""
    jobs = app.service().list_jobs(state, queue, limit)
    if as_json:
        emit_json([j.to_dict() for j in jobs])
    elif jobs:
        click.echo(jobs_table(jobs))
    else:
        click.echo(f"No {state + ' ' if state else ''}jobs.")


@cli.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_app
def show(app: AppContext, job_id: str, as_json: bool) -> None:
    """Show one job in full."""
    job = app.service().get(job_id)
    if as_json:
        emit_json(job.to_dict())
    else:
        click.echo(job_details(job))


@cli.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_app
def logs(app: AppContext, job_id: str, as_json: bool) -> None:
    """Print a job's captured output (stdout and stderr, every run)."""
    output = app.service().logs(job_id)
    if as_json:
        emit_json({"id": job_id, "output": output.decode("utf-8", "replace")})
    else:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()


@cli.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_app
def cancel(app: AppContext, job_id: str, as_json: bool) -> None:
    """Cancel a pending or failed job so it never runs."""
    job = app.service().cancel(job_id)
    if as_json:
        emit_json(job.to_dict())
    else:
        click.echo(f"Canceled {job.id}.")


__all__ = ["cancel", "list_jobs", "logs", "show", "status", "table"]
