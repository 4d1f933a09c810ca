"""`queuectl worker`: start workers in the foreground, stop them, list them."""

from __future__ import annotations

import sys
import time

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.cli.render import emit_json, table, when


@cli.group()
def worker() -> None:
    """Run and manage workers."""


@worker.command(name="start")
@click.option(
    "--count",
    "-c",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1024),
    help="How many jobs to run at a time.",
)
@click.option(
    "--queue", "queues", multiple=True, help="Only take jobs from this queue (repeatable)."
)
@click.option("--quiet", "-q", is_flag=True, help="Do not echo job output and per-job events.")
@pass_app
def worker_start(app: AppContext, count: int, queues: tuple[str, ...], quiet: bool) -> None:
    """Run jobs in the foreground until Ctrl+C, SIGTERM or `queuectl worker stop`.

    The first Ctrl+C stops taking jobs and lets running ones finish; a second
    one stops them now and puts them back to pending.
    """
    from queuectl.queue.worker import Worker

    # Worker bookkeeping trades a synchronous commit for speed: a write lost to a
    # power cut can at worst make a job run again (see docs/DECISIONS.md).
    store = app.open_store(durable=False, worker=True)
    try:
        runner = Worker(
            store,
            open_store=lambda: app.open_store(durable=False, worker=True),
            logs_dir=app.logs_dir,
            concurrency=count,
            queues=queues,
            quiet=quiet,
        )
        runner.run()
    finally:
        store.close()


@worker.command(name="stop")
@click.option("--no-wait", is_flag=True, help="Ask workers to stop and return at once.")
@click.option("--timeout", type=float, help="Give up waiting after this many seconds.")
@pass_app
def worker_stop(app: AppContext, no_wait: bool, timeout: float | None) -> None:
    """Stop all workers gracefully (they finish their running jobs)."""

    def progress(remaining: int) -> None:
        sys.stderr.write(f"queuectl: waiting for {remaining} worker(s) to finish running jobs...\n")

    asked, remaining = app.service().stop_workers(
        wait=not no_wait, timeout=timeout, progress=progress
    )
    if asked == 0:
        click.echo("No workers running.")
    elif no_wait:
        click.echo(f"Asked {asked} worker(s) to stop.")
    elif remaining:
        click.echo(
            f"Stopped {asked - remaining} of {asked} worker(s); {remaining} still finishing."
        )
        sys.exit(1)
    else:
        click.echo(f"Stopped {asked} worker(s).")


@worker.command(name="list")
@json_option
@pass_app
def worker_list(app: AppContext, as_json: bool) -> None:
    """Workers with host, pid, start time, last heartbeat and current jobs."""
    workers = app.service().live_workers()
    if as_json:
        emit_json([w.to_dict() for w in workers])
        return
    if not workers:
        click.echo("No workers running.")
        return
    now = time.time()
    rows = [
        [
            w.id,
            w.host,
            str(w.pid),
            when(w.started_at, now),
            when(w.last_heartbeat, now),
            f"{len(w.current_jobs)}/{w.concurrency}",
            ", ".join(w.current_jobs) or "-",
        ]
        for w in workers
    ]
    click.echo(table(["ID", "HOST", "PID", "STARTED", "HEARTBEAT", "BUSY", "CURRENT JOBS"], rows))
