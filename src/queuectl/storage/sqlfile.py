"""Load SQL kept in `.sql` files as named blocks (Procrastinate's layout).

A block starts with a line `-- name: some_query` and runs to the next such
line. Keeping SQL in SQL files lets it be read and reviewed as SQL.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def load_queries(filename: str) -> dict[str, str]:
    """Return `{name: sql}` for `storage/sql/<filename>`, read once per process."""
    text = resources.files("queuectl.storage").joinpath("sql", filename).read_text("utf-8")
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migration_scripts(dialect: str) -> list[tuple[int, str, str]]:
    """Numbered migrations for a dialect as `(version, name, sql)`, in order.

    Files are named `NNNN_description.sql`; both dialects use the same numbers.
    """
    folder = resources.files("queuectl.storage").joinpath("migrations", dialect)
    scripts = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            scripts.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(scripts)
