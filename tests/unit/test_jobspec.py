"""Validation of job descriptions: everything is checked before anything is stored."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from queuectl.errors import InvalidInput
from queuectl.queue.jobspec import (
    MAX_COMMAND_BYTES,
    build_job,
    build_jobs,
    new_job_id,
    new_job_ids,
    parse_json_object,
)
from queuectl.queue.settings import Settings
from queuectl.timeutil import to_iso

NOW = 1_800_000_000.0
DEFAULTS = Settings()


def build(spec: dict[str, Any], settings: Settings = DEFAULTS) -> Any:
    return build_job(spec, settings, NOW)


def refused(spec: dict[str, Any], settings: Settings = DEFAULTS) -> InvalidInput:
    """Assert the spec is refused as bad input (exit code 2) and return the error."""
    with pytest.raises(InvalidInput) as info:
        build_job(spec, settings, NOW)
    assert info.value.exit_code == 2
    return info.value


# -- command --------------------------------------------------------------------------------


def test_minimal_job_gets_defaults() -> None:
    job = build({"command": "echo hi"}, Settings(max_retries=7, job_timeout=12.0))
    assert job.command == "echo hi"
    assert uuid.UUID(job.id)  # a generated UUID
    assert job.max_retries == 7
    assert job.priority == 0
    assert job.queue == "default"
    assert job.timeout == 12.0
    assert job.run_at is None


def test_generated_ids_differ() -> None:
    assert build({"command": "true"}).id != build({"command": "true"}).id


def test_command_is_kept_exactly() -> None:
    command = "  printf '%s\\n' \"a  b\" | tr a-z A-Z ; echo $HOME\t"
    assert build({"command": command}).command == command


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"id": "a"},
        {"command": ""},
        {"command": "   "},
        {"command": "\n\t"},
        {"command": None},
        {"command": 5},
        {"command": ["echo", "hi"]},
    ],
)
def test_missing_or_empty_command_is_refused(spec: dict[str, Any]) -> None:
    error = refused(spec)
    assert "command" in error.message


def test_command_with_nul_is_refused() -> None:
    assert "NUL" in refused({"command": "echo a\x00b"}).message


def test_command_that_is_not_valid_unicode_is_refused() -> None:
    refused({"command": "echo \ud800"})


def test_command_at_the_size_limit_is_accepted() -> None:
    command = "#" * MAX_COMMAND_BYTES
    assert MAX_COMMAND_BYTES == 131_071
    assert build({"command": command}).command == command


def test_command_over_the_size_limit_is_refused() -> None:
    error = refused({"command": "#" * (MAX_COMMAND_BYTES + 1)})
    assert str(MAX_COMMAND_BYTES) in error.message


def test_command_size_is_counted_in_utf8_bytes() -> None:
    # 65,536 two-byte characters: few characters, too many bytes.
    refused({"command": "é" * 65_536})


# -- id and queue ---------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["a", "job-1", "Nightly.backup_2", "0", "x" * 128])
def test_good_ids_are_kept(job_id: str) -> None:
    assert build({"command": "true", "id": job_id}).id == job_id


@pytest.mark.parametrize(
    "job_id",
    ["", "-a", ".hidden", "_a", "a b", "../etc/passwd", "a/b", "x" * 129, "é", 5, True, ["a"]],
)
def test_bad_ids_are_refused(job_id: object) -> None:
    assert "'id'" in refused({"command": "true", "id": job_id}).message


@pytest.mark.parametrize("queue", ["emails", "q-1", "a.b_c", "x" * 64])
def test_good_queues_are_kept(queue: str) -> None:
    assert build({"command": "true", "queue": queue}).queue == queue


def test_null_queue_is_the_default_queue() -> None:
    assert build({"command": "true", "queue": None}).queue == "default"


@pytest.mark.parametrize("queue", ["", " ", "a b", "-q", "x" * 65, "a/b", 3, False])
def test_bad_queues_are_refused(queue: object) -> None:
    assert "'queue'" in refused({"command": "true", "queue": queue}).message


# -- whole numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_retries", "priority"])
@pytest.mark.parametrize("value", [True, False, 1.5, 2.0, "abc", "", [], {}])
def test_whole_number_fields_refuse_non_integers(field: str, value: object) -> None:
    assert field in refused({"command": "true", field: value}).message


def test_whole_number_fields_accept_integers_and_integer_text() -> None:
    job = build({"command": "true", "max_retries": 0, "priority": "-3"})
    assert job.max_retries == 0
    assert job.priority == -3
    assert build({"command": "true", "max_retries": "5"}).max_retries == 5


def test_null_max_retries_uses_the_setting() -> None:
    assert build({"command": "true", "max_retries": None}, Settings(max_retries=9)).max_retries == 9


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", -1),
        ("max_retries", 1_000_001),
        ("priority", 2**31),
        ("priority", -(2**31)),
    ],
)
def test_whole_numbers_out_of_range_are_refused(field: str, value: int) -> None:
    refused({"command": "true", field: value})


def test_priority_range_edges_are_accepted() -> None:
    assert build({"command": "true", "priority": 2**31 - 1}).priority == 2**31 - 1
    assert build({"command": "true", "priority": -(2**31 - 1)}).priority == -(2**31 - 1)


@pytest.mark.parametrize("text", ["--5", "²", "9" * 5000])
def test_odd_integer_text_is_invalid_input(text: str) -> None:
    refused({"command": "true", "priority": text})


# -- when to run ----------------------------------------------------------------------------


def test_run_at_is_parsed() -> None:
    job = build({"command": "true", "run_at": "2026-11-29T10:30:00Z"})
    assert job.run_at == datetime(2026, 11, 29, 10, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("delay", "seconds"), [("30s", 30.0), ("5m", 300.0), ("2h", 7200.0)])
def test_delay_is_relative_to_now(delay: str, seconds: float) -> None:
    assert build({"command": "true", "delay": delay}).run_at == NOW + seconds


def test_delay_as_a_number_of_seconds() -> None:
    assert build({"command": "true", "delay": 5}).run_at == NOW + 5


def test_null_run_at_and_delay_mean_now() -> None:
    assert build({"command": "true", "run_at": None, "delay": None}).run_at is None


def test_run_at_and_delay_together_are_refused() -> None:
    error = refused({"command": "true", "run_at": "2026-11-29T10:30:00Z", "delay": "5s"})
    assert "run_at" in error.message
    assert "delay" in error.message


@pytest.mark.parametrize("run_at", [1_800_000_000, "next tuesday", "", True])
def test_bad_run_at_is_refused(run_at: object) -> None:
    refused({"command": "true", "run_at": run_at})


@pytest.mark.parametrize("delay", ["-5s", "soon", True, [], "5 minutes"])
def test_bad_delay_is_refused(delay: object) -> None:
    refused({"command": "true", "delay": delay})


@pytest.mark.parametrize(
    "spec",
    [
        {"command": "true", "delay": "99999999d"},
        {"command": "true", "delay": 1e300},
        {"command": "true", "run_at": "9999-12-31T23:59:59-01:00"},
        {"command": "true", "run_at": "0001-01-01T00:00:00+01:00"},
    ],
)
def test_a_time_that_cannot_be_shown_is_refused(spec: dict[str, Any]) -> None:
    try:
        job = build(spec)
    except InvalidInput:
        return  # refused as bad input: fine
    assert to_iso(job.run_at) is not None  # accepted: it must at least render


# -- timeout --------------------------------------------------------------------------------


@pytest.mark.parametrize(("timeout", "seconds"), [(10, 10.0), ("90s", 90.0), ("0.5", 0.5)])
def test_timeout_is_parsed(timeout: object, seconds: float) -> None:
    assert build({"command": "true", "timeout": timeout}).timeout == seconds


@pytest.mark.parametrize("no_limit", [None, "none", "None", " none "])
def test_null_or_none_timeout_overrides_the_default_with_none(no_limit: object) -> None:
    # "none" is how `--timeout` (text only) says what null says in JSON.
    job = build({"command": "true", "timeout": no_limit}, Settings(job_timeout=60.0))
    assert job.timeout is None


@pytest.mark.parametrize("timeout", [0, "0s", -1, -0.5, "later", False, "nothing"])
def test_bad_timeout_is_refused(timeout: object) -> None:
    refused({"command": "true", "timeout": timeout})


@pytest.mark.parametrize("timeout", [0, "0s", -1, -0.5, "-1", " -5s"])
def test_a_timeout_of_zero_or_less_is_refused_with_one_rule(timeout: object) -> None:
    # -1 said "must be a non-negative number", which 0 is, and 0 is refused too.
    message = refused({"command": "true", "timeout": timeout}).message
    assert message == "job: 'timeout' must be more than 0 seconds (or null for no limit)"


# -- the object as a whole ------------------------------------------------------------------


def test_unknown_field_is_refused_and_named() -> None:
    error = refused({"command": "true", "retries": 3})
    assert "'retries'" in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ""},
        {"priority": "high"},
        {"delay": "soon"},
        {"delay": "99999999d"},
        {"run_at": "next tuesday"},
        {"run_at": 5},
        {"run_at": "2026-11-29T10:30:00Z", "delay": 5},
        {"timeout": "later"},
        {"timeout": 0},
    ],
)
def test_error_names_where_the_job_came_from(fields: dict[str, Any]) -> None:
    """In a file of 100,000 jobs, the line is what a user needs to find the mistake."""
    with pytest.raises(InvalidInput, match=r"^jobs\.jsonl line 7: "):
        build_job({"command": "true", **fields}, DEFAULTS, NOW, where="jobs.jsonl line 7")


def test_build_jobs_keeps_order() -> None:
    jobs = build_jobs(
        [("line 1", {"command": "true", "id": "b"}), ("line 2", {"command": "true", "id": "a"})],
        DEFAULTS,
        NOW,
    )
    assert [j.id for j in jobs] == ["b", "a"]


def test_generated_ids_are_uuid7_with_the_time_in_milliseconds() -> None:
    before = int(time.time() * 1000)
    ids = [new_job_id(), *new_job_ids(500)]
    after = int(time.time() * 1000)
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert str(parsed) == job_id
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after


def test_a_batch_gets_ascending_ids_in_input_order() -> None:
    # Ascending ids insert at the right edge of the unique index on `id`.
    specs: list[tuple[str, dict[str, Any]]] = [
        (f"line {n}", {"command": "true"}) for n in range(1, 1001)
    ]
    specs[500] = ("line 501", {"command": "true", "id": "named"})
    jobs = build_jobs(specs, DEFAULTS, NOW)
    generated = [j.id for j in jobs if j.id != "named"]
    assert jobs[500].id == "named"
    assert len(generated) == 999
    assert generated == sorted(generated)
    assert len(set(generated)) == 999
    assert {uuid.UUID(i).version for i in generated} == {7}


def test_duplicate_ids_in_a_batch_are_refused() -> None:
    with pytest.raises(InvalidInput, match="'a' appears twice") as info:
        build_jobs(
            [
                ("line 1", {"command": "true", "id": "a"}),
                ("line 2", {"command": "true", "id": "b"}),
                ("line 3", {"command": "false", "id": "a"}),
            ],
            DEFAULTS,
            NOW,
        )
    assert info.value.exit_code == 2


def test_one_bad_job_in_a_batch_refuses_the_batch() -> None:
    with pytest.raises(InvalidInput, match=r"^line 2: "):
        build_jobs(
            [("line 1", {"command": "true"}), ("line 2", {"command": "true", "bogus": 1})],
            DEFAULTS,
            NOW,
        )


# -- JSON -----------------------------------------------------------------------------------


def test_parse_json_object() -> None:
    assert parse_json_object('{"command": "sleep 2", "priority": 1}') == {
        "command": "sleep 2",
        "priority": 1,
    }


@pytest.mark.parametrize(
    "text",
    ["", "{", "{'command': 'x'}", '["command"]', '"echo"', "null", "42", "[" * 100_000],
)
def test_parse_json_object_refuses_anything_else(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_object(text, where="line 3")
    assert info.value.exit_code == 2
    assert info.value.message.startswith("line 3: ")


@pytest.mark.parametrize(
    "text",
    [
        '{"command": "true"}',
        '{"command": "true"}  \t',
        ' {"command": "true"}',
        '{"command": "a", "priority": -0}',
        '{"command": "\\u00e9", "timeout": 1.5e1, "delay": null}',
    ],
)
def test_parse_json_object_reads_what_json_loads_reads(text: str) -> None:
    parsed = parse_json_object(text)
    assert parsed == json.loads(text)
    assert type(parsed) is dict


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"command": "true"}x', "malformed JSON: Extra data at column 20"),
        ('{"a": 1}{"b": 2}', "malformed JSON: Extra data at column 9"),
        (
            '{"a": 1,}',
            "malformed JSON: Expecting property name enclosed in double quotes at column 9",
        ),
        ('{"a": }', "malformed JSON: Expecting value at column 7"),
        # A key given twice: json would keep the last value without a word.
        ('{"command": "a", "command": "b"}', "malformed JSON: the key 'command' appears twice"),
        (' {"c": 1, "q": {"a": 1, "a": 1}}', "malformed JSON: the key 'a' appears twice"),
        ('{"a": ' + "[" * 100_000, "JSON nested too deeply"),
        ('\ufeff{"a": 1}', "malformed JSON: a byte order mark (BOM) before the object"),
    ],
)
def test_parse_json_object_names_the_error_and_column(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_json_object(text, where="f line 4")
    assert info.value.message == f"f line 4: {message}"


def test_parse_json_object_refuses_an_integer_with_too_many_digits() -> None:
    with pytest.raises(InvalidInput):
        parse_json_object('{"command": "true", "priority": ' + "9" * 5000 + "}")
