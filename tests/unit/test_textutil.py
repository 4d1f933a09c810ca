"""Showing a user's text (a command) in a terminal: one line, nothing it acts on."""

from __future__ import annotations

import pytest

from queuectl.textutil import one_line


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("echo hi", "echo hi"),
        ("echo a\necho b", "echo a\\necho b"),
        ("printf '\x1b[2J'", "printf '\\x1b[2J'"),
        ("a\tb\rc", "a\\tb\\rc"),
        ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
        ("café ünïcode ✓", "café ünïcode ✓"),  # printable text is left as it is
    ],
)
def test_control_characters_are_written_as_escapes(text: str, shown: str) -> None:
    assert one_line(text) == shown
    assert one_line(text).isprintable()
