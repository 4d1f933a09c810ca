"""The command line: parse, validate, call the service, render.

`main()` is the single error boundary: a `QueuectlError` becomes one line on
stderr and its exit code (1 runtime, 2 bad input, including usage errors);
nothing prints a traceback unless QUEUECTL_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

from queuectl.errors import QueuectlError

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["main"]


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"queuectl: error: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its documented exit code."""
    from queuectl.cli.context import AppContext

    if sys.stdin is None or sys.stdout is None or sys.stderr is None:
        _reopen_closed_standard_streams()
    try:
        args = _plain_enqueue(sys.argv[1:] if argv is None else argv) or _parse(argv)
        app = AppContext(args.db)
        try:
            result = args.handler(app, args)
        finally:
            app.close()
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except QueuectlError as exc:
        _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`queuectl list | head`): not an error worth a word.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        # The machine's trouble (no descriptors left, a file where a directory
        # should be), not a bug of ours: said as the system says it, not "internal".
        if os.environ.get("QUEUECTL_DEBUG"):
            raise
        where = f"{exc.filename}: " if exc.filename is not None else ""
        _fail(f"{where}{exc.strerror or exc}", 1)
    except Exception as exc:
        if os.environ.get("QUEUECTL_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (QUEUECTL_DEBUG=1 shows details)", 1)
    sys.exit(result if isinstance(result, int) else 0)


def _reopen_closed_standard_streams() -> None:
    """Point standard descriptors that were closed at start (`queuectl status >&-`)
    at /dev/null. Python leaves their `sys` streams None, so any output failed as an
    internal error; and the next file opened would take the free descriptor: the
    database itself as "standard output", for the worker's jobs to inherit."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is None:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            stream = open(fd, mode, encoding="utf-8", closefd=False)  # noqa: SIM115 (for good)
            setattr(sys, name, stream)


def _parse(argv: list[str] | None) -> Any:
    from queuectl.cli.app import build_parser

    return build_parser(argv).parse_args(argv)


def _plain_enqueue(words: list[str]) -> Any:
    """`queuectl enqueue JSON` alone, the call scripts make in loops, parsed without
    argparse: importing it and building the parsers is a sixth of such a call
    (its message lookups import `locale`). Anything else, None: the parser's."""
    if len(words) != 2 or words[0] != "enqueue" or words[1].startswith("-"):
        return None
    from queuectl.cli.enqueue import plain_arguments

    return plain_arguments(words[1])
