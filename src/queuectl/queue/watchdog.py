"""The job watchdog: kills job process groups whose worker died or froze.

Jobs run in their own sessions (so Ctrl+C in the worker's terminal does not
reach them), which also means they would outlive a worker killed with SIGKILL,
and keep running while a worker is frozen (SIGSTOP, a stalled VM) and its
leases expire. Each worker therefore starts this tiny process, in a session of
its own, and talks to it over a pipe, one command per line:

- `+PGID` / `-PGID`: a job's process group started / ended;
- `lease SECONDS`: the worker just renewed its leases; if no renewal follows
  within SECONDS, kill every listed group (the worker is frozen or cut off from
  the database, and another worker is about to take those jobs over);
- `exit`: clean shutdown, kill nothing.

At end-of-file without `exit` the worker has died: every listed group is
SIGKILLed at once, so its jobs have no side effects after the crash.

Run as `python -m queuectl.queue.watchdog`.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from queuectl.queue.sessions import signal_sessions

# Seconds to pause after reading, so that a busy worker's lines arrive in batches:
# a write that wakes a sleeping reader costs the worker a context switch per line
# (two lines per job); a reader that is pausing costs it a plain copy. It delays
# noticing the worker's death by as much, which is nothing next to a lease.
COALESCE = 0.02


def _kill(groups: set[int]) -> None:
    # Each group is a job shell's, which leads its session: the whole session goes
    # (a `timeout` in the job has a group of its own there).
    signal_sessions(groups, signal.SIGKILL)
    groups.clear()


def watch(fd: int) -> int:
    """Serve the protocol above on file descriptor `fd` until EOF or `exit`. Returns 0."""
    groups: set[int] = set()
    deadline: float | None = None  # monotonic
    buffer = b""
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([fd], [], [], timeout)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                _kill(groups)
                return 0
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.strip()
                if line == b"exit":
                    return 0
                if line.startswith(b"lease "):
                    try:
                        deadline = time.monotonic() + float(line[6:])
                    except ValueError:
                        continue
                elif line[:1] in (b"+", b"-") and line[1:].isdigit():
                    if line[:1] == b"+":
                        groups.add(int(line[1:]))
                    else:
                        groups.discard(int(line[1:]))
        # The lease ran out without a renewal (whether or not other lines kept coming).
        if deadline is not None and time.monotonic() >= deadline:
            _kill(groups)
            deadline = None
        if readable:
            time.sleep(COALESCE)


if __name__ == "__main__":
    # We are in our own session, away from the worker's terminal; ignore its
    # signals anyway in case someone signals the watchdog's group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Descriptors the worker itself inherited (not close-on-exec) came along too:
    # hold none of them, or a pipe the worker's parent reads would stay open.
    os.closerange(3, 1 << 20)
    sys.exit(watch(sys.stdin.fileno()))
