"""The job watchdog: kills a dead worker's job process groups.

Jobs run in their own sessions (so Ctrl+C in the worker's terminal does not
reach them), which also means they would outlive a worker killed with SIGKILL.
Each worker therefore starts this tiny process, in a session of its own, and
tells it over a pipe which process groups it runs (`+PGID` / `-PGID` lines).
When the pipe reaches end-of-file without a clean `exit` line the worker has
died: the watchdog SIGKILLs every group still listed, so the dead worker's
jobs stop at once and their runs have no side effects after the crash.

Run as `python -m queuectl.queue.watchdog`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterable


def watch(source: Iterable[bytes]) -> int:
    """Read commands until EOF; kill listed groups unless told `exit`. Returns 0."""
    groups: set[int] = set()
    for raw in source:
        line = raw.strip()
        if line == b"exit":
            return 0
        if len(line) < 2 or not line[1:].isdigit():
            continue
        pgid = int(line[1:])
        if line[:1] == b"+":
            groups.add(pgid)
        elif line[:1] == b"-":
            groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    # The worker's terminal signals must not reach us; we are in our own session,
    # but ignore them anyway in case someone signals the watchdog's group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sys.exit(watch(sys.stdin.buffer))
