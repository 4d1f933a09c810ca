"""Showing text a user gave (a job's command) in a terminal, safely."""

from __future__ import annotations

import re

#: C0 controls (newlines and tabs included), DEL and the C1 controls: a command
#: holding them would break a table's line, or make the terminal act on them
#: (escape sequences can move the cursor, retitle the window, hide text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def one_line(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`):
    one line that shows what is there and that a terminal only prints."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)
