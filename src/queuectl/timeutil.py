"""Time formats: epoch seconds inside, ISO-8601 UTC with a `Z` outside."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from queuectl.errors import InvalidInput

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: Instants queuectl stores must be showable as ISO-8601: 1970-01-01 up to year 9999.
LATEST_INSTANT = 253_402_300_799.0  # 9999-12-31T23:59:59Z
#: The longest duration anything takes (timeouts, delays, settings): about 31 years.
#: Longer ones are mistakes, and their sums with the present could leave the range
#: of times queuectl can show (see LATEST_INSTANT).
MAX_DURATION = 1_000_000_000.0


def check_instant(ts: float, field: str) -> float:
    """Refuse an instant that could not be shown back as an ISO-8601 UTC time."""
    if not 0 <= ts <= LATEST_INSTANT:
        raise InvalidInput(f"{field}: the time must be between 1970 and the year 9999")
    return ts


def to_iso(ts: float | None) -> str | None:
    """Render epoch seconds as ISO-8601 UTC with millisecond precision and a `Z`."""
    if ts is None:
        return None
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def from_iso(text: object) -> float | None:
    """Inverse of `to_iso` (None stays None); raises ValueError on anything else."""
    if text is None:
        return None
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"expected an ISO-8601 UTC time ending in Z, got {text!r}")
    return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()


def parse_instant(text: str) -> float:
    """Parse an ISO-8601 date-time into epoch seconds.

    `Z` or an explicit offset is honoured; a time without one is local time,
    as a person typing at a terminal means it (documented in DECISIONS.md).
    """
    raw = text.strip()
    if not raw:
        raise InvalidInput("run_at: empty date-time")
    try:
        dt = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise InvalidInput(
            f"run_at: {text!r} is not an ISO-8601 date-time (e.g. 2026-11-29T10:30:00Z)"
        ) from None
    try:
        if dt.tzinfo is None:
            dt = dt.astimezone()  # local time
        ts = dt.timestamp()
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(f"run_at: {text!r} is out of range") from None
    return check_instant(ts, "run_at")


def parse_duration(value: object, field: str) -> float:
    """Parse seconds given as a number or as text like `90`, `1.5`, `30s`, `5m`, `2h`, `1d`."""
    try:
        return duration_seconds(value)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}") from None


def duration_seconds(value: object) -> float:
    """`parse_duration` without a field name: a ValueError says what is wrong."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{value!r} is too large") from None
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 30s, 5m, 2h, 1d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a number of seconds, got {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("must be a non-negative number of seconds")
    if seconds > MAX_DURATION:
        raise ValueError(f"at most {MAX_DURATION:.0f} seconds (about 31 years)")
    return seconds


def format_seconds(seconds: float) -> str:
    """Short human form of a duration: `0.4s`, `12s`, `3m20s`, `2h05m`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
