"""The worker's terminal: job output on stdout, events on stderr, never in the way.

A terminal that stops reading (a pager at a page break, Ctrl+S, a stalled ssh
session) makes a write block; one that went away (`| head`, a closed window)
makes it fail. Neither may reach the worker's loop: jobs, deadlines, Ctrl+C and
lease renewals do not wait for a terminal, and a worker whose reader left must
still give its jobs back when it stops. So lines are queued, and a thread of
their own writes them, in order, with plain `write(2)` calls (no Python-level
buffer whose lock a blocked thread would hold at exit).

The queue is bounded: past `budget` bytes waiting, lines are dropped and counted,
and the count is shown when the terminal reads again (every job's log keeps its
whole output). A stream whose write fails is given up: nobody is there to read
an error about it, and /dev/null takes its place, so that nothing else in the
process trips over it either.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import stat
import threading
import time

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import TextIO

BUDGET = 1 << 20  # bytes of lines waiting for a terminal that does not read


class TerminalOutput:
    """Writes lines to two streams (0: stdout, 1: stderr) without ever blocking.

    Each stream has its own queue and thread: a stdout nobody reads must not hold
    back the events on stderr.
    """

    def __init__(self, out: TextIO, err: TextIO, budget: int = BUDGET) -> None:
        self._streams = (_Stream(out, budget), _Stream(err, budget))

    def write(self, stream: int, text: str) -> None:
        """Queue `text` for `stream`; returns at once."""
        self._streams[stream].write(text)

    def close(self, timeout: float) -> None:
        """Write what is queued, waiting at most `timeout` seconds for the terminal."""
        deadline = time.monotonic() + timeout
        for stream in self._streams:
            stream.close(max(0.0, deadline - time.monotonic()))


class _Stream:
    """One stream's queue of lines and the thread that writes them."""

    def __init__(self, stream: TextIO, budget: int) -> None:
        self._stream = stream
        self._fd = _fd_of(stream)
        # A regular file (output redirected to a log) takes a write at once; only a
        # terminal or a pipe can keep one waiting. Handing each line to a thread
        # costs a short job's worker a tenth of its throughput: spared where it can.
        self._direct = self._fd is not None and _is_regular_file(self._fd)
        self._budget = budget
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0  # bytes in the queue
        self._dropped = 0  # lines dropped since the last notice
        self._gone = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, text: str) -> None:
        if self._fd is None:  # in memory (tests): it cannot block
            self._stream.write(text)
            return
        data = text.encode("utf-8", "replace")
        if self._direct:  # a failure (a full disk) loses this line, not the stream
            with contextlib.suppress(OSError):
                _write_all(self._fd, data)
            return
        with self._cond:
            if self._gone:
                return
            if self._queued + len(data) > self._budget:
                self._dropped += 1
                return
            was_empty = not self._queue
            if self._dropped:
                self._append(
                    f"queuectl: {self._dropped} line(s) not shown: the terminal was not "
                    "reading (each job's log has its output)\n".encode()
                )
                self._dropped = 0
            self._append(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="terminal", daemon=True)
                self._thread.start()
            elif was_empty:  # the thread may be waiting for it
                self._cond.notify()

    def _append(self, data: bytes) -> None:
        self._queue.append(data)
        self._queued += len(data)

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                # Everything waiting, in one write: fewer wake-ups of this thread,
                # each of which takes the interpreter from the worker's loop.
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
            self._write_or_give_up(data)

    def _write_or_give_up(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError:  # EPIPE, EIO (a closed terminal), EBADF: the reader is gone
            with self._cond:
                self._gone = True
                self._queue.clear()
                self._queued = 0
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _fd_of(stream: TextIO) -> int | None:
    """The stream's file descriptor after flushing what it buffered, or None."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    with contextlib.suppress(OSError):  # a reader already gone: the writes say so
        stream.flush()
    return fd
