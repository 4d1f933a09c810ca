"""Load SQL kept in `.sql` files as named blocks (Procrastinate's layout).

A block starts with a line `-- name: some_query` and runs to the next such
line. Keeping SQL in SQL files lets it be read and reviewed as SQL.
"""

from __future__ import annotations

import os
import re
from functools import cache

#: The storage package's folder (`importlib.resources` would cost start-up time).
_HERE = os.path.dirname(os.path.abspath(__file__))

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def load_queries(filename: str) -> dict[str, str]:
    """Return `{name: sql}` for `storage/sql/<filename>`, read once per process."""
    with open(os.path.join(_HERE, "sql", filename), encoding="utf-8") as handle:
        text = handle.read()
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@cache
def migration_scripts(dialect: str) -> list[tuple[int, str, str]]:
    """Numbered migrations for a dialect as `(version, name, sql)`, in order.

    Files are named `NNNN_description.sql`; both dialects use the same numbers.
    """
    folder = os.path.join(_HERE, "migrations", dialect)
    scripts = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", name)
        if match:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                scripts.append((int(match.group(1)), match.group(2), handle.read()))
    return sorted(scripts)
