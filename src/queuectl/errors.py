"""One exception hierarchy for queuectl.

Each class's docstring is its default message. The CLI has a single error
boundary (`queuectl.cli.main`) that turns any `QueuectlError` into one line on
stderr and the exit code the class carries; drivers' exceptions are translated
into these at the storage boundary (`raise ... from exc`).
"""

from __future__ import annotations


class QueuectlError(Exception):
    """queuectl failed."""

    #: Process exit code the CLI uses for this error (SPEC: 1 runtime, 2 bad input).
    exit_code: int = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(QueuectlError):
    """Invalid input."""

    exit_code = 2


class InvalidStoredSetting(QueuectlError):
    """A setting kept in the database is invalid."""


class JobNotFound(QueuectlError):
    """No such job."""


class WrongState(QueuectlError):
    """The job is not in a state that allows this."""


class DuplicateJob(QueuectlError):
    """A job with this id already exists."""


class StorageError(QueuectlError):
    """The database failed."""


class StorageUnavailable(StorageError):
    """The database cannot be opened or reached."""


class QueueNotFound(StorageUnavailable):
    """There is no queue at this location."""


class StorageBusy(StorageError):
    """The database stayed busy for too long; nothing was changed. Try again."""


class SchemaError(StorageError):
    """The database schema is newer than this version of queuectl, or pending migration."""
