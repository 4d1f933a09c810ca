"""`queuectl worker`: start workers in the foreground, stop them, list them."""

from __future__ import annotations

import argparse
import sys
import time

from queuectl.cli.app import add_command, add_group, add_json, write
from queuectl.cli.context import AppContext

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    group = add_group(commands, "worker", "run and manage workers")
    parser = add_command(
        group,
        "start",
        worker_start,
        "run jobs in the foreground until Ctrl+C, SIGTERM or `queuectl worker stop`",
        "Run jobs in the foreground until Ctrl+C, SIGTERM or `queuectl worker stop`. The "
        "first Ctrl+C stops taking jobs and lets running ones finish; a second one stops "
        "them now and puts them back to pending.",
    )
    parser.add_argument(
        "--count", "-c", type=int, default=1, help="how many jobs to run at a time (default 1)"
    )
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=[],
        help="only take jobs from this queue (repeatable)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="do not echo job output and per-job events"
    )
    parser = add_command(
        group, "stop", worker_stop, "stop all workers gracefully (they finish running jobs)"
    )
    parser.add_argument("--no-wait", action="store_true", help="ask them to stop and return")
    parser.add_argument(
        "--timeout",
        type=float,
        help="give up waiting after this many seconds, with exit 1 if some are still "
        "finishing jobs (default: wait as long as their jobs run)",
    )
    add_json(parser)
    add_json(
        add_command(
            group, "list", worker_list, "workers with host, pid, start, heartbeat, current jobs"
        )
    )


def worker_start(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.errors import InvalidInput
    from queuectl.queue.jobspec import QUEUE_PATTERN
    from queuectl.queue.worker import Worker

    if not 1 <= args.count <= 1024:
        raise InvalidInput("--count must be between 1 and 1024")
    for queue in args.queues:
        if not QUEUE_PATTERN.fullmatch(queue):
            raise InvalidInput(f"--queue: {queue!r} is not a valid queue name")
    # Worker bookkeeping trades a synchronous commit for speed: a write lost to a
    # power cut can at worst make a job run again (see docs/DECISIONS.md).
    store = app.open_store(durable=False, worker=True, create=True)
    try:
        Worker(
            store,
            open_store=lambda: app.open_store(durable=False, worker=True, create=True),
            logs_dir=app.logs_dir,
            concurrency=args.count,
            queues=args.queues,
            quiet=args.quiet,
        ).run(exiting=True)
    finally:
        store.close()


def worker_stop(app: AppContext, args: argparse.Namespace) -> int:
    def progress(remaining: int) -> None:
        # A busy worker finishes its running jobs first; an idle one stops at once.
        sys.stderr.write(f"queuectl: waiting for {remaining} worker(s) to stop...\n")

    if args.timeout is not None and not 0 <= args.timeout < float("inf"):
        from queuectl.errors import InvalidInput

        raise InvalidInput(f"--timeout must be 0 or more seconds; got {args.timeout:g}")
    report = app.service().stop_workers(
        wait=not args.no_wait, timeout=args.timeout, progress=progress
    )
    # Exit 1 only when it waited and gave up while some were still finishing.
    code = 1 if report.running and not args.no_wait else 0
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json({"waited": not args.no_wait, **report.fields()})
        return code
    if report.asked == 0:
        write("No workers running.")
        return code
    if args.no_wait:
        write(f"Asked {report.asked} worker(s) to stop.")
        return code
    if report.stopped == report.asked:
        write(f"Stopped {report.asked} worker(s).")
        return code
    parts = [f"Stopped {report.stopped} of {report.asked} worker(s)"]
    if report.lost:
        parts.append(
            f"{report.lost} stopped heartbeating without stopping (died; their jobs are "
            "recovered as their leases expire)"
        )
    if report.running:
        parts.append(f"{report.running} still finishing")
    write("; ".join(parts) + ".")
    return code


def worker_list(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.render import emit_json, table, when

    workers = app.service().live_workers()
    if args.as_json:
        emit_json([w.to_dict() for w in workers])
        return
    if not workers:
        write("No workers running.")
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
            # Asked to stop (`worker stop`), it takes no more jobs and ends with these.
            "stopping" if w.stop_requested else "working",
            ", ".join(w.current_jobs) or "-",
        ]
        for w in workers
    ]
    headers = ["ID", "HOST", "PID", "STARTED", "HEARTBEAT", "BUSY", "STATE", "CURRENT JOBS"]
    write(table(headers, rows))
