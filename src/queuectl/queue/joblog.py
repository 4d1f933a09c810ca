"""Per-job output logs: bounded files under the queue's log directory.

Each job has `<logs>/<job id>.log`; every run appends to it after a header
line. A log is bounded: when it passes `LOG_MAX_BYTES` it is renamed to
`.log.1` (replacing an older one) and a new file starts, so a job keeps between
one and two `LOG_MAX_BYTES` of its latest output, however much it prints. The
first time an older `.log.1` is replaced, an empty `.log.cut` records that the
start of the output is gone, so that `logs` can say so.
"""

from __future__ import annotations

import os

from queuectl.paths import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike

LOG_MAX_BYTES = 1024 * 1024  # per file; at most twice this is kept per job


def log_path(logs_dir: str | PathLike[str], job_id: str) -> str:
    """Where a job's current log lives. Job ids are validated to be file-name safe.

    A string, not a Path: a worker computes one per job, and a Path costs more.
    """
    return f"{os.fspath(logs_dir)}/{job_id}.log"  # os.path.join: twice the cost


class JobLog:
    """Appends one run's output to a job's log, rotating at the size bound.

    The file is opened when the run first prints (with `header` before the
    output): creating a file costs more than starting a short command on some
    disks, and a silent job needs no log. A callable `header` is formatted only
    then, too. An error opening or writing is kept in
    `error` and further output is dropped, so a full disk fails the job with a
    clear reason instead of stopping the worker.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        header: str | Callable[[], str],
        max_bytes: int = LOG_MAX_BYTES,
    ) -> None:
        self.path = os.fspath(path)
        self.max_bytes = max_bytes
        self.error: str | None = None
        self._header: str | Callable[[], str] | None = header
        self._fd = -1
        self._size = 0

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the directory is missing: create it (0700) once
            make_private_dir(os.path.dirname(self.path))
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        if self.error is not None or not data:
            return
        try:
            if self._header is not None:
                header = self._header if isinstance(self._header, str) else self._header()
                data, self._header = header.encode() + data, None
                self._open()
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self._size += written
        except OSError as exc:
            self.error = f"cannot write the job's log {self.path}: {exc.strerror}"
            self.close()

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if os.path.exists(self.path + ".1"):  # about to be replaced: output is dropped
            os.close(os.open(self.path + ".cut", os.O_WRONLY | os.O_CREAT, 0o600))
        os.replace(self.path, self.path + ".1")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_log(path: str | PathLike[str]) -> bytes:
    """The job's kept output, oldest first (the rotated part, then the current file)."""
    current = os.fspath(path)
    parts = []
    for candidate in (current + ".1", current):
        try:
            with open(candidate, "rb") as handle:
                parts.append(handle.read())
        except FileNotFoundError:
            continue
    return b"".join(parts)


def output_was_cut(path: str | PathLike[str]) -> bool:
    """Whether the start of the job's output was dropped to keep its log bounded."""
    return os.path.exists(os.fspath(path) + ".cut")


class LogFollower:
    """Reads a job's log as it grows, across rotations (`logs --follow`).

    The first `read_new()` returns all the output kept (the rotated part, then the
    current file); each later one what was appended since. The follower holds the
    file it reads open. When the path names another file, the log has rotated
    once or more since the last read: the held file is read to its end, then
    `.log.1` unless it is the held file (one rotation) or the new one (a rotation
    while looking), then the new file from its start. Files are told apart only
    while they are open, so a reused inode number cannot confuse them. A log that
    rotates three times between two reads (3 MiB or more) has replaced a file the
    follower never saw: that output is skipped, as the log itself dropped it.
    Two rotations cannot be told from three, so `may_have_skipped` is set when
    the held file was replaced at all (no name left: at least two rotations).
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = -1
        self.may_have_skipped = False

    def read_new(self) -> bytes:
        parts = [self._read_held()]
        for _ in range(3):  # the log may rotate again while this looks: look again
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                break
            held = os.fstat(self._fd) if self._fd >= 0 else None
            if held is not None and _same_file(held, current):
                break
            parts.append(self._read_held())  # what was written to it before the rename
            if held is not None and held.st_nlink == 0:
                self.may_have_skipped = True
            # The new file first: should the log rotate between the two opens, `.1`
            # is then that same file, read once through the new descriptor.
            new_fd = _open_or_none(self.path)
            older = _open_or_none(self.path + ".1")
            if older >= 0:
                rotated = os.fstat(older)
                seen = held is not None and _same_file(rotated, held)
                if not seen and not (new_fd >= 0 and _same_file(rotated, os.fstat(new_fd))):
                    parts.append(_read_to_end(older))
                os.close(older)
            self.close()
            self._fd = new_fd
            parts.append(self._read_held())
        return b"".join(parts)

    def _read_held(self) -> bytes:
        return _read_to_end(self._fd) if self._fd >= 0 else b""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _open_or_none(path: str) -> int:
    """A descriptor to read `path`, or -1 when it does not exist (yet)."""
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return -1


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)
