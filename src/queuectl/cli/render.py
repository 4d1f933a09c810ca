"""Rendering for humans (aligned tables) and machines (`--json`: one document on stdout)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from queuectl.models import Job, JobState
from queuectl.textutil import one_line
from queuectl.timeutil import format_seconds, to_iso

COMMAND_WIDTH = 60  # characters of a command shown in tables; ids are never cut


def emit_json(document: Any) -> None:
    """Write exactly one JSON document (and a newline) to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def emit_jobs_given(jobs: Sequence[Job], job_ids: Sequence[str]) -> None:
    """The jobs a command changed, for `--json`: an object when the user named one
    job (as before several could be given), an array when several."""
    one = len(set(job_ids)) == 1
    emit_json(jobs[0].to_dict() if one else [j.to_dict() for j in jobs])


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = []
    for cells in (headers, *rows):
        padded = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    return "\n".join(lines)


def when(ts: float | None, now: float) -> str:
    """Relative time for tables: `in 4.0s`, `12s ago`, `-`."""
    if ts is None:
        return "-"
    delta = ts - now
    return f"in {format_seconds(delta)}" if delta > 0.05 else f"{format_seconds(-delta)} ago"


def short(text: str, width: int = COMMAND_WIDTH) -> str:
    flat = one_line(" ".join(text.split()))
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def jobs_table(jobs: Sequence[Job]) -> str:
    now = time.time()
    rows = []
    for j in jobs:
        if j.state in (JobState.PENDING, JobState.FAILED):
            timing = "runs " + when(j.next_attempt_at, now)
        elif j.state is JobState.RUNNING:
            timing = "started " + when(j.started_at, now)
        else:
            timing = "ended " + when(j.finished_at or j.updated_at, now)
        rows.append(
            [
                j.id,
                j.state.value,
                f"{j.attempts}/{j.runs_allowed}",  # max_retries 0 still runs once
                str(j.priority),
                j.queue,
                timing,
                short(j.command),
            ]
        )
    return table(["ID", "STATE", "ATTEMPTS", "PRIORITY", "QUEUE", "WHEN", "COMMAND"], rows)


def job_details(job: Job) -> str:
    data = job.to_dict()
    width = max(len(k) for k in data)
    lines = []
    for key, value in data.items():
        shown = "-" if value is None else one_line(str(value))
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)


__all__ = ["emit_jobs_given", "emit_json", "job_details", "jobs_table", "table", "to_iso", "when"]
