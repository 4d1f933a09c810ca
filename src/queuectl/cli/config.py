"""`queuectl config`: settings kept in the database, shared by every worker."""

from __future__ import annotations

import argparse
import json

from queuectl.cli.app import add_command, add_group, add_json, write
from queuectl.cli.context import AppContext

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    group = add_group(
        commands, "config", "show and change settings (max_retries, backoff_base, ...)"
    )
    add_json(add_command(group, "show", config_show, "every setting with its current value"))
    parser = add_command(group, "get", config_get, "print one setting's value")
    parser.add_argument("key")
    add_json(parser)
    parser = add_command(
        group, "set", config_set, "change a setting for every worker (times in seconds)"
    )
    parser.add_argument("key")
    parser.add_argument("value")
    add_json(parser)


def _text(value: Any) -> str:
    if value is None:
        return "none"
    # 15 significant digits: every value exactly as given (":g" would round to 6).
    return f"{value:.15g}" if isinstance(value, float) else str(value)


def config_show(app: AppContext, args: argparse.Namespace) -> None:
    values = app.service().config_show()
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json(values)
    else:
        from queuectl.cli.render import table

        write(table(["KEY", "VALUE"], [[k, _text(v)] for k, v in values.items()]))


def config_get(app: AppContext, args: argparse.Namespace) -> None:
    value = app.service().config_get(args.key)
    write(json.dumps(value) if args.as_json else _text(value))


def config_set(app: AppContext, args: argparse.Namespace) -> None:
    if app.makes_new_queue():  # refused input must not create the file
        from queuectl.queue.service import check_new_queue_setting

        check_new_queue_setting(args.key, args.value)
    name, stored = app.service(create=True).config_set(args.key, args.value)
    if args.as_json:
        from queuectl.cli.render import emit_json

        emit_json({"key": name, "value": stored})  # the value as `config get --json` has it
    else:
        write(f"{name} = {_text(stored)}")
