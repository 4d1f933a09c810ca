"""Facts about this host that decide whether a worker is still alive."""

from __future__ import annotations

import os
from functools import cache

HOSTNAME_ENV = "QUEUECTL_HOSTNAME"


@cache
def hostname() -> str:
    """This host's name as workers record it: `$QUEUECTL_HOSTNAME`, else the system's.

    The override exists for hosts whose names are not unique (cloned VMs, containers
    sharing a name) and for simulating several hosts on one machine in tests: a
    worker treats another worker as "on this host" only when the names match.
    """
    return os.environ.get(HOSTNAME_ENV) or os.uname().nodename


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def known_dead(host: str, pid: int) -> bool:
    """True only when certain: the worker ran on this host and its pid is gone.

    A reused pid makes a dead worker look alive, never the reverse, so the worst
    case is waiting for its lease to expire.
    """
    return host == hostname() and not pid_alive(pid)
