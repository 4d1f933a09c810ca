"""Settings kept in the database: key names, value validation, the lease rule."""

from __future__ import annotations

import pytest

from queuectl.errors import InvalidInput, InvalidStoredSetting
from queuectl.queue.settings import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_LEASE_TIMEOUT,
    KEYS,
    Settings,
    normalize_key,
    parse_value,
    validate_change,
)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("max_retries", "max_retries"),
        ("max-retries", "max_retries"),
        ("MAX-RETRIES", "max_retries"),
        (" backoff-base ", "backoff_base"),
        ("backoff_max", "backoff_max"),
        ("job-timeout", "job_timeout"),
        ("lease-timeout", "lease_timeout"),
        ("heartbeat-interval", "heartbeat_interval"),
    ],
)
def test_normalize_key_accepts_dashes_and_case(given: str, canonical: str) -> None:
    assert normalize_key(given) == canonical


def test_dash_and_underscore_spellings_are_the_same_key() -> None:
    assert normalize_key("max-retries") == normalize_key("max_retries")


@pytest.mark.parametrize("key", ["", "retries", "max__retries", "timeout", "max_retries2"])
def test_unknown_keys_are_invalid_input_with_exit_code_2(key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_key(key)
    assert info.value.exit_code == 2
    assert "unknown config key" in info.value.message


def test_every_key_has_a_default_field() -> None:
    assert set(KEYS) == set(Settings().to_dict())


def test_defaults_match_the_spec() -> None:
    s = Settings()
    assert s.max_retries == 3
    assert s.backoff_base == 2.0
    assert s.backoff_max == 3600.0
    assert s.job_timeout is None
    # SPEC: recovery within 60 s in the worst case with default settings.
    assert s.lease_timeout + s.heartbeat_interval < 60.0


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("max_retries", "0", 0),
        ("max_retries", " 7 ", 7),
        ("backoff_base", "1", 1.0),
        ("backoff_base", "2.5", 2.5),
        ("backoff_max", "0.5", 0.5),
        ("job_timeout", "none", None),
        ("job_timeout", "null", None),
        ("job_timeout", "0", None),
        ("job_timeout", "30s", 30.0),
        ("job_timeout", "5m", 300.0),
        ("lease_timeout", "2", 2.0),
        ("lease_timeout", "2h", 7200.0),
        ("heartbeat_interval", "0.1", 0.1),
    ],
)
def test_valid_values_parse(key: str, text: str, expected: object) -> None:
    assert parse_value(key, text) == expected


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("max_retries", "-1"),
        ("max_retries", "1.5"),
        # Python's int() and float() read these; no one means them (an audit).
        ("max_retries", "1_000"),
        ("max_retries", "\uff15"),  # a full-width 5
        ("backoff_base", "1_0"),
        ("backoff_base", "nan"),
        ("backoff_max", "\u0663"),  # an Arabic-Indic 3
        ("max_retries", "three"),
        ("max_retries", ""),
        ("backoff_base", "0.5"),
        ("backoff_base", "abc"),
        ("backoff_base", "nan"),
        ("backoff_base", "inf"),
        ("backoff_max", "0"),
        ("backoff_max", "-1"),
        ("backoff_max", "inf"),
        ("job_timeout", "-5"),
        ("job_timeout", "soon"),
        ("lease_timeout", "1.9"),
        ("lease_timeout", "abc"),
        ("lease_timeout", "-3"),
        ("heartbeat_interval", "0.01"),
        ("heartbeat_interval", "fast"),
        # Longer than any duration queuectl takes (their repr would be "1e+16",
        # which no reader of the settings parses: one such value broke every command).
        ("job_timeout", "10000000000000000"),
        ("backoff_max", "1000000001"),
        ("lease_timeout", "40000d"),
    ],
)
def test_invalid_values_are_invalid_input_with_exit_code_2(key: str, text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_change(Settings(), key, text)
    assert info.value.exit_code == 2
    assert key in info.value.message


def test_validate_change_returns_the_canonical_key() -> None:
    assert validate_change(Settings(), "max-retries", "5") == ("max_retries", "5")


def test_lease_must_outlast_two_heartbeats() -> None:
    current = Settings()
    assert DEFAULT_HEARTBEAT_INTERVAL * 2 <= DEFAULT_LEASE_TIMEOUT
    # Lowering the lease under twice the heartbeat interval is refused...
    with pytest.raises(InvalidInput, match="at most half of lease_timeout") as info:
        validate_change(current, "lease_timeout", str(DEFAULT_HEARTBEAT_INTERVAL * 2 - 0.5))
    assert info.value.exit_code == 2
    # ...exactly twice is allowed...
    name, _ = validate_change(current, "lease_timeout", str(DEFAULT_HEARTBEAT_INTERVAL * 2))
    assert name == "lease_timeout"
    # ...and so is the other direction: a heartbeat too slow for the lease is refused.
    with pytest.raises(InvalidInput, match="at most half of lease_timeout"):
        validate_change(current, "heartbeat_interval", str(DEFAULT_LEASE_TIMEOUT / 2 + 0.5))
    validate_change(current, "heartbeat_interval", str(DEFAULT_LEASE_TIMEOUT / 2))


def test_lease_rule_is_checked_against_current_settings() -> None:
    fast = Settings(lease_timeout=3.0, heartbeat_interval=0.5)
    validate_change(fast, "lease_timeout", "1m")
    with pytest.raises(InvalidInput):
        validate_change(fast, "heartbeat_interval", "2")


def test_from_stored_of_nothing_is_the_defaults() -> None:
    assert Settings.from_stored({}) == Settings()


def test_from_stored_ignores_unknown_keys() -> None:
    assert Settings.from_stored({"colour": "blue", "max_retries": "4"}) == Settings(max_retries=4)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("max-retries", "9"),
        ("backoff_base", "3"),
        ("backoff_base", "1.5"),
        ("backoff_max", "90"),
        ("backoff_max", "0.3"),
        ("job_timeout", "90s"),
        ("job_timeout", "none"),
        ("job_timeout", "0.25"),
        ("lease_timeout", "2m"),
        ("heartbeat_interval", "1.5"),
    ],
)
def test_stored_text_round_trips_to_the_same_value(key: str, text: str) -> None:
    name, stored = validate_change(Settings(), key, text)
    expected = parse_value(name, text)
    assert Settings.from_stored({name: stored}).to_dict()[name] == expected


def test_round_trip_of_several_changes() -> None:
    current = Settings()
    stored: dict[str, str] = {}
    for key, text in [
        ("heartbeat-interval", "0.5"),
        ("lease-timeout", "3"),
        ("max-retries", "0"),
        ("backoff-max", "600"),
        ("job-timeout", "1h"),
    ]:
        name, value = validate_change(current, key, text)
        stored[name] = value
        current = Settings.from_stored(stored)
    assert current == Settings(
        max_retries=0,
        backoff_max=600.0,
        job_timeout=3600.0,
        lease_timeout=3.0,
        heartbeat_interval=0.5,
    )


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("backoff_base", "1e16"),  # stored as "1e+16": parsed back by float()
        ("backoff_base", "1.2345678901234567"),
        ("job_timeout", "1000000000"),
        ("backoff_max", "0.001"),
    ],
)
def test_extreme_values_that_are_accepted_are_stored_readably(key: str, text: str) -> None:
    name, stored = validate_change(Settings(), key, text)
    assert Settings.from_stored({name: stored}).to_dict()[name] == parse_value(name, text)


def test_a_stored_value_that_does_not_parse_names_its_repair() -> None:
    with pytest.raises(InvalidStoredSetting) as info:
        Settings.from_stored({"job_timeout": "1e+16", "max_retries": "4"})
    assert info.value.exit_code == 1  # not the user's input: the database's content
    assert "config set job_timeout" in info.value.message
    # The key a `config set` is about to replace is not read, so the repair works.
    repaired = Settings.from_stored({"job_timeout": "1e+16", "max_retries": "4"}, "job_timeout")
    assert repaired == Settings(max_retries=4)
