"""Settings kept in the database and shared by every worker (`queuectl config`).

Values are validated here, before anything is written: an unknown key or an
invalid value is `InvalidInput` (exit code 2) and changes nothing.
"""

from __future__ import annotations

from queuectl.errors import InvalidInput
from queuectl.record import Record
from queuectl.timeutil import parse_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

#: Defaults. The lease/heartbeat pair bounds crash recovery: a killed worker's job is
#: taken over at most `lease_timeout + heartbeat_interval` seconds after its last
#: heartbeat (about 18 s), well under SPEC's 60 s.
DEFAULT_MAX_RETRIES = 3
MAX_RETRIES_LIMIT = 1_000_000  # for a job's own value and the default alike
DEFAULT_BACKOFF_BASE = 2.0
DEFAULT_BACKOFF_MAX = 3600.0  # seconds
DEFAULT_LEASE_TIMEOUT = 15.0  # seconds
DEFAULT_HEARTBEAT_INTERVAL = 3.0  # seconds


class Settings(Record):
    """Effective settings: stored values over defaults."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    job_timeout: float | None = None
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL

    @classmethod
    def from_stored(cls, stored: Mapping[str, str]) -> Settings:
        """Build from the raw strings kept in the database; unknown keys are ignored."""
        values = {k: parse_value(k, v) for k, v in stored.items() if k in KEYS}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return self.fields()


def _retry_count(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise ValueError(f"must be between 0 and {MAX_RETRIES_LIMIT}")
    return value


def _float_at_least(minimum: float, exclusive: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError("expected a number") from None
        if value != value or value == float("inf"):
            raise ValueError("expected a finite number")
        if value < minimum or (exclusive and value == minimum):
            raise ValueError(f"must be {'more than' if exclusive else 'at least'} {minimum:g}")
        return value

    return parse


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = parse_duration(text, "value")
        except InvalidInput:
            raise ValueError("expected seconds (e.g. 30, 2.5, 5m)") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum:g} seconds")
        return value

    return parse


def _optional_seconds(text: str) -> float | None:
    if text.strip().lower() in ("none", "null", "0", ""):
        return None
    return _seconds(0.001)(text)


#: Every key `config set` accepts, with its parser.
KEYS: dict[str, Callable[[str], Any]] = {
    "max_retries": _retry_count,
    "backoff_base": _float_at_least(1.0),
    "backoff_max": _seconds(0.001),
    "job_timeout": _optional_seconds,
    "lease_timeout": _seconds(2.0),
    "heartbeat_interval": _seconds(0.1),
}


def normalize_key(key: str) -> str:
    """Canonical key name: `max-retries` and `max_retries` are the same key."""
    name = key.strip().lower().replace("-", "_")
    if name not in KEYS:
        raise InvalidInput(f"unknown config key {key!r} (known: {', '.join(KEYS)})")
    return name


def parse_value(key: str, text: str) -> Any:
    """Parse a value for a canonical key, raising InvalidInput with the reason."""
    try:
        return KEYS[key](text)
    except ValueError as exc:
        raise InvalidInput(f"invalid value {text!r} for {key}: {exc}") from None


def validate_change(current: Settings, key: str, text: str) -> tuple[str, str]:
    """Check `config set KEY VALUE` against the current settings.

    Returns the canonical key and the normalized text to store. The lease must
    outlast at least two missed heartbeats, or a busy but healthy worker would
    lose its jobs to recovery.
    """
    name = normalize_key(key)
    value = parse_value(name, text)
    proposed = Settings(**{**current.to_dict(), name: value})
    if proposed.heartbeat_interval * 2 > proposed.lease_timeout:
        raise InvalidInput(
            f"invalid value {text!r} for {name}: heartbeat_interval "
            f"({proposed.heartbeat_interval:g}s) must be at most half of lease_timeout "
            f"({proposed.lease_timeout:g}s)"
        )
    stored = (
        "none" if value is None else (str(value) if not isinstance(value, float) else repr(value))
    )
    return name, stored
