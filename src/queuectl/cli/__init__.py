"""The command line: parse, validate, call the service, render.

`main()` is the single error boundary: a `QueuectlError` becomes one line on
stderr and its exit code (1 runtime, 2 bad input); click's usage errors exit 2;
nothing prints a traceback unless QUEUECTL_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import click

from queuectl.cli import config, db, dlq, enqueue, jobs, worker
from queuectl.cli.app import cli
from queuectl.errors import QueuectlError

__all__ = ["cli", "config", "db", "dlq", "enqueue", "jobs", "main", "worker"]


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"queuectl: error: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its documented exit code."""
    try:
        result = cli.main(args=argv, prog_name="queuectl", standalone_mode=False)
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        _fail(f"{exc.format_message()}{hint}", 2)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except QueuectlError as exc:
        _fail(exc.message, exc.exit_code)
    except BrokenPipeError:
        # The reader went away (`queuectl list | head`): not an error worth a word.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("QUEUECTL_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (QUEUECTL_DEBUG=1 shows details)", 1)
    sys.exit(result if isinstance(result, int) else 0)
