"""`queuectl config`: settings kept in the database, shared by every worker."""

from __future__ import annotations

import json
from typing import Any

import click

from queuectl.cli.app import AppContext, cli, json_option, pass_app
from queuectl.cli.render import emit_json, table


@cli.group()
def config() -> None:
    """Show and change settings (max_retries, backoff_base, backoff_max, ...)."""


def _text(value: Any) -> str:
    return "none" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


@config.command(name="show")
@json_option
@pass_app
def config_show(app: AppContext, as_json: bool) -> None:
    """Every setting with its current value."""
    values = app.service().config_show()
    if as_json:
        emit_json(values)
    else:
        click.echo(table(["KEY", "VALUE"], [[k, _text(v)] for k, v in values.items()]))


@config.command(name="get")
@click.argument("key")
@json_option
@pass_app
def config_get(app: AppContext, key: str, as_json: bool) -> None:
    """Print one setting's value."""
    value = app.service().config_get(key)
    click.echo(json.dumps(value) if as_json else _text(value))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@pass_app
def config_set(app: AppContext, key: str, value: str) -> None:
    """Change a setting for every worker (times are in seconds)."""
    name, stored = app.service().config_set(key, value)
    click.echo(f"{name} = {_text(stored)}")
