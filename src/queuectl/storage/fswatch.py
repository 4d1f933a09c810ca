"""Wait for writes to files of one directory, through Linux inotify.

An idle SQLite worker must notice a new job quickly without polling the
database many times a second (polling every 10 ms cost 2-3 % of a core on an
idle machine). Every commit writes the database's `-wal` file (or the
database file itself), and inotify reports those writes to a blocked reader
at no cost in between. Called through ctypes, so no dependency is needed;
where inotify is missing (not Linux, no instances left) `open_watch` returns
None and callers fall back to polling.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct

IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK  # inotify_init1's flags are the open(2) ones
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name
_BUFFER = 64 * 1024


class DirectoryWatch:
    """Reports writes to the files `names` inside `directory`."""

    def __init__(self, fd: int, names: frozenset[bytes]) -> None:
        self._fd = fd
        self._names = names

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True once one of the files was written."""
        if self.drain():
            return True
        readable, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        return bool(readable) and self.drain()

    def drain(self) -> bool:
        """Consume the events queued so far; True if one concerns a watched file."""
        hit = False
        while True:
            try:
                data = os.read(self._fd, _BUFFER)
            except BlockingIOError:
                return hit
            except InterruptedError:
                continue
            offset = 0
            while offset + _EVENT.size <= len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                start = offset + _EVENT.size
                name = data[start : start + length].rstrip(b"\0")
                offset = start + length
                # An overflowed queue lost events: one of them may have been ours.
                if mask & IN_Q_OVERFLOW or name in self._names:
                    hit = True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_watch(directory: str, names: frozenset[str]) -> DirectoryWatch | None:
    """A watch on writes to `names` in `directory`, or None where inotify is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init = libc.inotify_init1
        add_watch = libc.inotify_add_watch
    except (OSError, AttributeError):
        return None
    add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    fd = int(init(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        return None  # e.g. EMFILE: the per-user limit of inotify instances is reached
    if add_watch(fd, os.fsencode(directory), IN_MODIFY | IN_CREATE | IN_MOVED_TO) < 0:
        os.close(fd)  # e.g. ENOSPC: the per-user limit of watches is reached
        return None
    return DirectoryWatch(fd, frozenset(os.fsencode(n) for n in names))
