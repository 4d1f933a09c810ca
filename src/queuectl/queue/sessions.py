"""Signalling a job's whole session, not only its process group.

Each job's shell leads a session of its own, and its process group is the
session's first. A program the job runs may move into a group of its own and
stay in the session: GNU `timeout` does, and so do shells with job control.
Killing only the shell's group would leave such a process running after a
timeout, a forced stop or its worker's death, and a rerun of the job would
then overlap it. So the paths that end a job against its will signal every
process of its session. Linux has no call for that: /proc tells each
process's session, so one pass over it finds them (a millisecond or two).
Only a process that starts a session of its own (`setsid`, a daemon) is
beyond reach; it has left the job on purpose.

The pass is not made when a job's shell exits by itself, which is every short
job: its group is killed then, as before, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal

TYPE_CHECKING = False  # importing `typing` costs the watchdog's start-up time
if TYPE_CHECKING:
    from collections.abc import Collection

#: Passes over /proc for SIGKILL: a process of the session may fork between our
#: reading its entry and its death; a new pass catches what it started.
KILL_PASSES = 5


def signal_sessions(session_ids: Collection[int], sig: int) -> None:
    """Send `sig` to every process in the sessions `session_ids`.

    Each id is a job shell's pid, which is also the id of its session and of its
    first process group (the shell is not reaped yet, or another process of the
    session is alive, so the id is not reused).
    """
    wanted = set(session_ids)
    for sid in wanted:
        with contextlib.suppress(OSError):  # the group is gone, or was never ours
            os.killpg(sid, sig)
    for _ in range(KILL_PASSES if sig == signal.SIGKILL else 1):
        if not wanted or not _signal_other_groups(wanted, sig):
            return


def _signal_other_groups(wanted: set[int], sig: int) -> bool:
    """Signal the process groups, other than the sessions' first, that live in the
    sessions `wanted`. Returns whether any was found."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return False
    groups: set[int] = set()
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                data = stat.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = data.rpartition(b")")[2].split()
        if len(fields) > 3 and int(fields[3]) in wanted and int(fields[2]) not in wanted:
            groups.add(int(fields[2]))
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)
    return bool(groups)
