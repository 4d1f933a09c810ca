"""Reading the queue: `status`, `list`, `show`, `logs`, and `cancel`."""

from __future__ import annotations

import argparse
import sys

from queuectl.cli.app import add_command, add_json, write
from queuectl.cli.context import AppContext

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    add_json(add_command(commands, "status", status, "jobs per state, active workers, database"))
    parser = add_command(commands, "list", list_jobs, "list jobs, oldest first")
    parser.add_argument(
        "--state", help="pending, running (or processing), completed, failed, dead, canceled"
    )
    parser.add_argument("--queue", help="only jobs in this queue")
    parser.add_argument("--limit", type=int, help="at most this many jobs (default: all)")
    add_json(parser)
    for name, handler, help_text in (
        ("show", show, "show one job in full"),
        ("logs", logs, "print a job's captured output (stdout and stderr, every run)"),
    ):
        parser = add_command(commands, name, handler, help_text)
        parser.add_argument("job_id", metavar="ID")
        add_json(parser)
        if name == "logs":
            parser.add_argument(
                "--follow",
                "-f",
                action="store_true",
                help="keep printing output as the job writes it, until it has completed, "
                "is dead or canceled (retries included); Ctrl+C stops following, not the job",
            )
    parser = add_command(
        commands,
        "cancel",
        cancel,
        "cancel pending or failed jobs so they never run",
        "Cancel pending or failed jobs so they never run: all the jobs given, or none "
        "(a running, finished or unknown one changes nothing). With --json, one job "
        "prints as an object, several as an array.",
    )
    parser.add_argument("job_ids", metavar="ID", nargs="+")
    add_json(parser)


def status(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.render import emit_json
    from queuectl.models import JobState

    report = app.service().status()
    if args.as_json:
        emit_json(report.to_dict())
        return
    write(f"Database: {report.location} ({report.backend})")
    write("Jobs:")
    for state in JobState:
        write(f"  {state.value:<10} {report.counts.get(state, 0)}")
    write(f"Workers: {len(report.workers)} active")
    for w in report.workers:
        stopping = "  (stopping)" if w.stop_requested else ""
        jobs = ", ".join(w.current_jobs) or "idle"
        write(f"  {w.id}  {w.host}  pid {w.pid}  {jobs}{stopping}")


def list_jobs(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.render import emit_json, jobs_table

    jobs = app.service().list_jobs(args.state, args.queue, args.limit)
    if args.as_json:
        emit_json([j.to_dict() for j in jobs])
    elif jobs:
        write(jobs_table(jobs))
    elif args.state:
        from queuectl.queue.service import parse_state

        write(f"No {parse_state(args.state).value} jobs.")  # `running`, also for `processing`
    else:
        write("No jobs.")


def show(app: AppContext, args: argparse.Namespace) -> None:
    from queuectl.cli.render import emit_json, job_details

    job = app.service().get(args.job_id)
    if args.as_json:
        emit_json(job.to_dict())
    else:
        write(job_details(job))


def logs(app: AppContext, args: argparse.Namespace) -> None:
    if args.follow:
        if args.as_json:
            from queuectl.errors import InvalidInput

            raise InvalidInput("logs --follow prints output as it comes, so it takes no --json")
        follow_logs(app, args.job_id)
        return
    output = app.service().logs(args.job_id)
    if args.as_json:
        from queuectl.cli.render import emit_json

        text = output.data.decode("utf-8", "replace")
        emit_json({"id": args.job_id, "output": text, "truncated": output.cut})
        return
    # Notes go to stderr: stdout stays exactly the kept output, for pipes.
    if output.cut:
        _say_output_was_cut(args.job_id)
    if output.data:
        sys.stdout.buffer.write(output.data)
        sys.stdout.flush()
    else:
        yet = "" if output.ended else " (yet)"
        sys.stderr.write(f"queuectl: job {args.job_id} has no output{yet}\n")


def _log_keeps() -> str:
    """How much output a job's log keeps, for messages."""
    from queuectl.queue.joblog import LOG_MAX_BYTES

    return f"{LOG_MAX_BYTES // 1024 // 1024} to {2 * LOG_MAX_BYTES // 1024 // 1024} MiB"


def _say_output_was_cut(job_id: str) -> None:
    sys.stderr.write(
        f"queuectl: the start of job {job_id}'s output was dropped "
        f"(a job's log keeps its last {_log_keeps()})\n"
    )


def follow_logs(app: AppContext, job_id: str) -> None:
    """`logs --follow`: the output as it comes, then how the job ended (on stderr)."""
    from queuectl.models import JobState

    service = app.service()
    stdout = sys.stdout.buffer
    said_cut = False

    def write(data: bytes) -> None:
        nonlocal said_cut
        if not said_cut:  # before the first output: the log may have been cut since
            said_cut = True
            if service.logs_cut(job_id):
                _say_output_was_cut(job_id)
        stdout.write(data)
        stdout.flush()

    def gap() -> None:
        sys.stderr.write(
            f"queuectl: job {job_id} printed faster than it could be followed: some of "
            f"its output may be missing here, as from its log (which keeps {_log_keeps()})\n"
        )

    try:
        job = service.follow_logs(job_id, write, gap)
    except KeyboardInterrupt:  # the way to stop following: not an error, and the job goes on
        sys.stderr.write("\n")
        return
    if job.state is JobState.COMPLETED:
        sys.stderr.write(f"queuectl: job {job.id} completed\n")
    elif job.state is JobState.DEAD:
        sys.stderr.write(f"queuectl: job {job.id} is dead (in the DLQ): {job.last_error}\n")
    else:
        sys.stderr.write(f"queuectl: job {job.id} was canceled\n")


def cancel(app: AppContext, args: argparse.Namespace) -> None:
    jobs = app.service().cancel(args.job_ids)
    if args.as_json:
        from queuectl.cli.render import emit_jobs_given

        emit_jobs_given(jobs, args.job_ids)
    else:
        for job in jobs:
            write(f"Canceled {job.id}.")
