"""Time formats: epoch seconds inside, ISO-8601 UTC with a `Z` outside."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from queuectl.errors import InvalidInput
from queuectl.models import Job, JobState
from queuectl.timeutil import (
    LATEST_INSTANT,
    check_instant,
    format_seconds,
    parse_duration,
    parse_instant,
    to_iso,
)

SAMPLE = datetime(2026, 11, 29, 10, 30, 0, tzinfo=UTC).timestamp()


def at(ts: float) -> Any:
    """Equal to the epoch time `ts` within a millisecond (pytest.approx's default
    relative tolerance would allow half an hour at today's epoch)."""
    return pytest.approx(ts, rel=0, abs=0.001)


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+5 (no DST) for the test, restored afterwards."""
    monkeypatch.setenv("TZ", "XYZ-5")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def test_to_iso_is_utc_with_a_z() -> None:
    text = to_iso(SAMPLE)
    assert text == "2026-11-29T10:30:00.000Z"


def test_to_iso_keeps_milliseconds() -> None:
    assert to_iso(SAMPLE + 0.2509) == "2026-11-29T10:30:00.250Z"


def test_to_iso_of_epoch_and_none() -> None:
    assert to_iso(0.0) == "1970-01-01T00:00:00.000Z"
    assert to_iso(None) is None


def test_to_iso_ignores_the_local_time_zone(local_tz: None) -> None:
    assert to_iso(SAMPLE) == "2026-11-29T10:30:00.000Z"


def test_job_json_timestamps_end_with_z() -> None:
    job = Job(
        id="j",
        command="true",
        state=JobState.RUNNING,
        attempts=0,
        max_retries=3,
        priority=0,
        queue="default",
        timeout=None,
        next_attempt_at=SAMPLE,
        created_at=SAMPLE,
        updated_at=SAMPLE + 1,
        started_at=SAMPLE + 1,
        finished_at=None,
        exit_code=None,
        last_error=None,
        worker_id="w",
        lease_expires_at=SAMPLE + 16,
        runs=1,
        recoveries=0,
    )
    data = job.to_dict()
    for field in ("created_at", "updated_at", "started_at", "lease_expires_at"):
        assert isinstance(data[field], str)
        assert data[field].endswith("Z"), field
        assert parse_instant(data[field]) == at(getattr(job, field))
    assert data["finished_at"] is None
    assert data["next_attempt_at"] is None  # only shown while the job waits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T10:30:00Z", SAMPLE),
        ("2026-11-29T10:30:00z", SAMPLE),
        ("2026-11-29T10:30:00.250Z", SAMPLE + 0.25),
        ("2026-11-29T12:30:00+02:00", SAMPLE),
        ("2026-11-29T05:30:00-05:00", SAMPLE),
        ("  2026-11-29T10:30:00+00:00 ", SAMPLE),
    ],
)
def test_parse_instant_honours_z_and_offsets(text: str, expected: float) -> None:
    assert parse_instant(text) == at(expected)


def test_parse_instant_without_offset_is_local_time(local_tz: None) -> None:
    assert parse_instant("2026-11-29T15:30:00") == at(SAMPLE)


def test_iso_round_trip() -> None:
    text = to_iso(SAMPLE + 0.123)
    assert text is not None
    assert parse_instant(text) == at(SAMPLE + 0.123)


@pytest.mark.parametrize("text", ["", "   ", "tomorrow", "2026-13-01T00:00:00Z", "10:30"])
def test_parse_instant_rejects_non_dates(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_instant(text)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00", "9999-12-31T23:59:59"])
def test_parse_instant_of_an_extreme_local_time_is_invalid_input_or_a_time(
    local_tz: None, text: str
) -> None:
    try:
        value = parse_instant(text)
    except InvalidInput:
        return  # refused as bad input: fine
    assert to_iso(value) is not None  # accepted: it must be a time queuectl can show


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("90", 90.0),
        ("1.5", 1.5),
        (" 2 m ", 120.0),
        ("0", 0.0),
        (45, 45.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, "delay") == seconds


@pytest.mark.parametrize(
    "value",
    [
        *("-5", "-5s", "abc", "5x", "5 minutes", "", "1e3"),
        *(True, False, None, [], -1, -0.5),
        *(float("nan"), float("inf"), float("-inf")),
        *(1e9 + 1, 10**10, "11575d", 1e300),  # longer than MAX_DURATION (about 31 years)
    ],
)
def test_parse_duration_rejects_bad_values(value: object) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_duration(value, "delay")
    assert info.value.exit_code == 2
    assert "delay" in info.value.message


def test_parse_duration_rejects_a_text_that_overflows_to_infinity() -> None:
    with pytest.raises(InvalidInput):
        parse_duration("9" * 400 + "d", "delay")


def test_parse_duration_rejects_an_int_too_large_for_a_float() -> None:
    # JSON `{"delay": 1000...0}` with 400 digits reaches parse_duration as an int.
    with pytest.raises(InvalidInput):
        parse_duration(10**400, "delay")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0.4s"), (9.96, "10.0s"), (12.0, "12s"), (200.0, "3m20s"), (7500.0, "2h05m")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_the_latest_storable_instant_renders_and_later_ones_are_refused() -> None:
    assert to_iso(check_instant(LATEST_INSTANT, "run_at")) == "9999-12-31T23:59:59.000Z"
    with pytest.raises(InvalidInput, match="run_at"):
        check_instant(LATEST_INSTANT + 1, "run_at")
