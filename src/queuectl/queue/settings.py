"""Settings kept in the database and shared by every worker (`queuectl config`).

Values are validated here, before anything is written: an unknown key or an
invalid value is `InvalidInput` (exit code 2) and changes nothing.
"""

from __future__ import annotations

import re

from queuectl.errors import InvalidInput, InvalidStoredSetting
from queuectl.record import Record
from queuectl.timeutil import duration_seconds

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
#: Seconds a running worker may take to act on a changed setting: it re-reads them
#: every 2 s, and its heartbeat looks at them every half second. Until then it
#: renews its leases on the old interval, so a shortened lease is judged with this
#: much slack (a busy worker must not look lost because it has not heard yet).
SETTINGS_PICKUP = 3.0


class Settings(Record):
    """Effective settings: stored values over defaults."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    job_timeout: float | None = None
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL

    @classmethod
    def from_stored(cls, stored: Mapping[str, str], replacing: str | None = None) -> Settings:
        """Build from the raw strings kept in the database; unknown keys are ignored,
        and so is the key `replacing` (a `config set` about to overwrite it).

        A value that does not parse (written by hand, or by a version of queuectl
        that stored what it could not read back) is InvalidStoredSetting, whose
        message says how to repair it.
        """
        values = {}
        for key, text in stored.items():
            if key in KEYS and key != replacing:
                try:
                    values[key] = KEYS[key](text)
                except ValueError as exc:
                    raise InvalidStoredSetting(
                        f"the stored setting {key} = {text!r} is invalid ({exc}); "
                        f"set it again: queuectl config set {key} VALUE"
                    ) from None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return self.fields()


#: Numbers as a user types them: ASCII digits only. Python's int() and float() also
#: take `1_000`, full-width and other scripts' digits, which no one means here.
_WHOLE = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+", re.ASCII)


def _retry_count(text: str) -> int:
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError("expected a whole number")
    value = int(text.strip())
    if not 0 <= value <= MAX_RETRIES_LIMIT:
        raise ValueError(f"must be between 0 and {MAX_RETRIES_LIMIT}")
    return value


def _float_at_least(minimum: float, exclusive: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        if not _DECIMAL.fullmatch(text.strip()):
            raise ValueError("expected a number")
        value = float(text.strip())
        if value != value or value == float("inf"):
            raise ValueError("expected a finite number")
        if value < minimum or (exclusive and value == minimum):
            raise ValueError(f"must be {'more than' if exclusive else 'at least'} {minimum:g}")
        return value

    return parse


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = duration_seconds(text)
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

    Returns the canonical key and the normalized text to store.
    """
    ((name, stored),) = validate_changes(current, {key: text}).items()
    return name, stored


def validate_changes(current: Settings, changes: Mapping[str, str]) -> dict[str, str]:
    """Check several changes made together (an `import`), against the current
    settings; returns the normalized text to store by canonical key.

    The lease must outlast at least two missed heartbeats, or a busy but healthy
    worker would lose its jobs to recovery. It is checked on the settings after all
    the changes: changed one at a time, a valid pair could fail in between.
    """
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for key, text in changes.items():
        name = normalize_key(key)
        values[name] = parse_value(name, text)
        texts[name] = text
    proposed = Settings(**{**current.to_dict(), **values})
    if proposed.heartbeat_interval * 2 > proposed.lease_timeout:
        changed = [n for n in ("lease_timeout", "heartbeat_interval") if n in texts]
        culprit = f"invalid value {texts[changed[0]]!r} for {changed[0]}" if changed else "settings"
        raise InvalidInput(
            f"{culprit}: heartbeat_interval ({proposed.heartbeat_interval:g}s) must be at "
            f"most half of lease_timeout ({proposed.lease_timeout:g}s)"
        )
    return {name: _stored_text(name, value, texts[name]) for name, value in values.items()}


def _stored_text(name: str, value: Any, text: str) -> str:
    stored = (
        "none" if value is None else (str(value) if not isinstance(value, float) else repr(value))
    )
    # Only text that parses back to the same value may be stored: every reader of
    # the settings (every worker, every command) would refuse anything else.
    try:
        round_trips = KEYS[name](stored) == value
    except ValueError:
        round_trips = False
    if not round_trips:
        raise InvalidInput(f"invalid value {text!r} for {name}: cannot be stored exactly")
    return stored
