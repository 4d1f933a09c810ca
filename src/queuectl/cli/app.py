"""The root `queuectl` parser; the helpers commands register their parsers with.

The CLI is built on argparse, not click: `queuectl enqueue` is run from scripts
and loops, and its start-up is most of its cost. Measured here (bench/, a):
importing click alone takes about 3.7x a bare `python -c pass`, more than the
whole budget for one enqueue call (3x); argparse costs about a tenth of that.
Each command group still lives in its own module and registers its parsers.
"""

from __future__ import annotations

import argparse
import os
import sys

from queuectl import __version__
from queuectl.errors import InvalidInput

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from queuectl.cli.context import AppContext

    #: A command's handler: gets the context and the parsed arguments; may return a code.
    Handler = Callable[["AppContext", argparse.Namespace], "int | None"]


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized with `os.get_terminal_size`: the stock one imports
    `shutil` (and with it bz2, lzma, ...) for every parser built, even without --help."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            try:
                width = os.get_terminal_size().columns - 2
            except OSError:
                width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line (exit code 2) through queuectl's error boundary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{message} (see '{self.prog} --help')")


def add_command(
    group: Any, name: str, handler: Handler, help_text: str, description: str | None = None
) -> Parser:
    """Add a subcommand parser to `group` (a subparsers action) that runs `handler`."""
    parser: Parser = group.add_parser(name, help=help_text, description=description or help_text)
    parser.set_defaults(handler=handler)
    # The global option is also taken after the command (`queuectl status --db q.db`),
    # where users put it. SUPPRESS: not given here, it leaves the global one's value.
    parser.add_argument(
        "--db", metavar="PATH|URL", default=argparse.SUPPRESS, help="as `queuectl --db`"
    )
    return parser


def add_group(parent: Any, name: str, help_text: str) -> Any:
    """Add a command group (`worker`, `dlq`, ...) and return its subparsers action."""
    parser: Parser = parent.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        dest="as_json",
        action="store_true",
        help="print one JSON document on stdout and nothing else",
    )


#: The module that registers each command, so that one call builds only its own
#: parsers (building all of them costs as much as the rest of an enqueue).
COMMAND_MODULES = {
    "enqueue": "enqueue",
    "worker": "worker",
    "status": "jobs",
    "list": "jobs",
    "show": "jobs",
    "logs": "jobs",
    "cancel": "jobs",
    "dlq": "dlq",
    "config": "config",
    "db": "db",
    "export": "db",
    "import": "db",
}


def command_word(argv: list[str]) -> str | None:
    """The command named in `argv` (after the global options), if any."""
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--db":
            skip_value = True
        elif not arg.startswith("-"):
            return arg
        elif arg in ("-h", "--help", "--version"):
            return None
    return None


def build_parser(argv: list[str] | None = None) -> Parser:
    """The command line; with `argv`, only the parsers its command needs are built."""
    import importlib

    parser = Parser(
        prog="queuectl",
        description="A background job queue you drive from the shell. A job is a shell "
        "command: enqueue it, start workers, and queuectl runs it, retrying failures "
        "with exponential backoff; jobs that keep failing land in the dead-letter "
        "queue (queuectl dlq).",
    )
    parser.add_argument(
        "--db",
        metavar="PATH|URL",
        help="SQLite file or postgresql:// URL (default: $QUEUECTL_DB, else "
        "$XDG_DATA_HOME/queuectl/queuectl.db)",
    )
    parser.add_argument("--version", action="version", version=f"queuectl {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    wanted = command_word(sys.argv[1:] if argv is None else argv)
    modules = list(dict.fromkeys(COMMAND_MODULES.values()))
    if wanted in COMMAND_MODULES:
        modules = [COMMAND_MODULES[wanted]]
    for name in modules:
        importlib.import_module(f"queuectl.cli.{name}").register(commands)
    return parser


def write(text: str) -> None:
    """One line (or block) of human output on stdout."""
    sys.stdout.write(text + "\n")
