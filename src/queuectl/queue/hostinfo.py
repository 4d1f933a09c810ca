"""Facts about this host that decide whether a worker is still alive."""

from __future__ import annotations

import os
import socket
from functools import cache


@cache
def hostname() -> str:
    return socket.gethostname()


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
