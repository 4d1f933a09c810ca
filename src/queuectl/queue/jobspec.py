"""Turn what a user typed (a JSON object, flags) into a validated `NewJob`.

Everything is checked before anything is stored, so bad input changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import time

from queuectl.errors import InvalidInput
from queuectl.models import NewJob
from queuectl.queue.settings import MAX_RETRIES_LIMIT, Settings
from queuectl.timeutil import check_instant, parse_duration, parse_instant

TYPE_CHECKING = False  # importing `typing` costs start-up time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

FIELDS = ("id", "command", "max_retries", "priority", "queue", "run_at", "delay", "timeout")
_KNOWN_FIELDS = frozenset(FIELDS)
DEFAULT_QUEUE = "default"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_COMMAND_BYTES = 131_071  # Linux MAX_ARG_STRLEN less the NUL: the longest `sh -c` argument
MAX_PRIORITY = 2**31 - 1
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,19}")
#: A random hex digit -> the UUID variant's (0b10xx) with the digit's 2 low bits.
_VARIANT = dict(zip("0123456789abcdef", "89ab" * 4, strict=True))


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's dict; a key given twice is refused, as an unknown field is: one
    of the two values is a mistake, and json would silently keep the last."""
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice")
            seen.add(key)
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_object_without_repeats)
#: The scanner json.loads ends in: `(text, index) -> (value, end)`. Not a documented
#: attribute (typeshed omits it), so without it every line takes the decoder's `decode`.
_scan_json: Callable[[str, int], tuple[Any, int]] | None
_scan_json = getattr(_DECODER, "scan_once", None)


def parse_json_object(text: str, where: str = "job") -> dict[str, Any]:
    """Parse one JSON object; anything else is InvalidInput."""
    if text[:1] == "{" and _scan_json is not None:
        # The common case, text that is exactly one object, goes straight to the
        # scanner json.loads ends in: its wrappers are half the time of parsing a
        # line of `--file`. For such text json.loads returns this very value;
        # anything else (surrounding whitespace, errors) takes its full path below.
        try:
            value, end = _scan_json(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value  # type: ignore[no-any-return]
    if text[:1] == "\ufeff":  # json.loads says "decode using utf-8-sig": Python's words
        raise InvalidInput(f"{where}: malformed JSON: a byte order mark (BOM) before the object")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{where}: malformed JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise InvalidInput(f"{where}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. Python's limit on the digits of an integer
        raise InvalidInput(f"{where}: malformed JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f'{where}: expected a JSON object like {{"command": "echo hi"}}')
    return value


def new_job_id() -> str:
    """A time-ordered UUID (version 7: 48-bit milliseconds, then 74 random bits)."""
    return new_job_ids(1)[0]


def new_job_ids(count: int) -> list[str]:
    """`count` time-ordered UUIDs (version 7), ascending in the order returned.

    Ids that grow with time keep inserts into the unique index on `id` at its
    right edge; random UUIDv4s scatter them and make big batches several times
    slower. They also sort in creation order, which people appreciate in lists.
    A batch reads the clock and draws randomness once, not per id (that was a
    tenth of an `enqueue --file`); its ids then share a millisecond, so they are
    sorted to keep them ascending: unsorted, 100,000 of them insert 40 % slower.
    """
    millis = f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}"
    prefix = f"{millis[:8]}-{millis[8:]}-7"  # the version nibble follows the time
    rand = os.urandom(10 * count).hex()  # 20 hex digits an id, 74 of its 80 bits used
    # Formatted by hand: the uuid module costs start-up time.
    ids = [
        f"{prefix}{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"
        for r in (rand[i : i + 20] for i in range(0, len(rand), 20))
    ]
    ids.sort()
    return ids


def build_job(
    spec: Mapping[str, Any],
    settings: Settings,
    now: float,
    where: str = "job",
    new_id: Callable[[], str] = new_job_id,
) -> NewJob:
    """Validate one job description (JSON fields; flags already merged in).

    `new_id` makes the id of a job that names none. `enqueue --file` calls this
    once per line, so a field left out costs one dict lookup; only the fields a
    user gave are checked further.
    """
    if not _KNOWN_FIELDS.issuperset(spec):
        unknown = sorted(set(spec) - _KNOWN_FIELDS)
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    get = spec.get
    command = get("command")
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(f"{where}: 'command' is required and must be a non-empty string")
    if "\x00" in command:
        raise InvalidInput(f"{where}: 'command' must not contain NUL bytes")
    try:
        size = len(command.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{where}: 'command' is not valid Unicode text") from None
    if size > MAX_COMMAND_BYTES:
        raise InvalidInput(f"{where}: 'command' is {size} bytes; the limit is {MAX_COMMAND_BYTES}")

    job_id = get("id")
    if job_id is None:
        job_id = new_id()
    elif not isinstance(job_id, str) or not ID_PATTERN.fullmatch(job_id):
        raise InvalidInput(
            f"{where}: 'id' must be 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit; got {job_id!r}"
        )

    max_retries = _int_field(
        get("max_retries"), "max_retries", settings.max_retries, 0, MAX_RETRIES_LIMIT, where
    )
    priority = _int_field(get("priority"), "priority", 0, -MAX_PRIORITY, MAX_PRIORITY, where)

    queue = get("queue")
    if queue is None:
        queue = DEFAULT_QUEUE
    elif not isinstance(queue, str) or not QUEUE_PATTERN.fullmatch(queue):
        raise InvalidInput(
            f"{where}: 'queue' must be 1-64 letters, digits, '.', '_' or '-'; got {queue!r}"
        )

    run_at = get("run_at")
    delay = get("delay")
    timeout = settings.job_timeout
    try:  # the time parsers name the field; the error also names the job (or line)
        if run_at is not None:
            if delay is not None:
                raise InvalidInput("give 'run_at' or 'delay', not both")
            if not isinstance(run_at, str):
                raise InvalidInput("'run_at' must be an ISO-8601 date-time string")
            run_at = parse_instant(run_at)
        elif delay is not None:
            run_at = check_instant(now + parse_duration(delay, "delay"), "delay")
        if "timeout" in spec:
            timeout = _timeout_field(spec["timeout"])
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.message}") from None

    return NewJob(
        id=job_id,
        command=command,
        max_retries=max_retries,
        priority=priority,
        queue=queue,
        timeout=timeout,
        run_at=run_at,
    )


def build_jobs(
    specs: Iterable[tuple[str, Mapping[str, Any]]], settings: Settings, now: float
) -> list[NewJob]:
    """Validate many `(where, spec)` pairs; the first error stops everything."""
    pairs = list(specs)
    # Ids for the jobs that name none, made in one go (see new_job_ids).
    fresh = iter(new_job_ids(sum(1 for _, spec in pairs if spec.get("id") is None)))
    jobs = [build_job(spec, settings, now, where, fresh.__next__) for where, spec in pairs]
    if len({job.id for job in jobs}) < len(jobs):  # one set in C; the loop names the repeat
        seen: set[str] = set()
        for job in jobs:
            if job.id in seen:
                raise InvalidInput(
                    f"job id {job.id!r} appears twice in the input; nothing was added"
                )
            seen.add(job.id)
    return jobs


def _timeout_field(value: object) -> float | None:
    """A job's own time limit: seconds (or `5m`, ...), or null / "none" for no limit,
    whatever `job_timeout` says (`--timeout none` is the flag's way to say null)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    refusal = "'timeout' must be more than 0 seconds (or null for no limit)"
    negative = (
        value.strip().startswith("-")
        if isinstance(value, str)
        else isinstance(value, int | float) and not isinstance(value, bool) and value < 0
    )
    if negative:  # not "non-negative" nor "not a duration": one rule, one message
        raise InvalidInput(refusal)
    timeout = parse_duration(value, "timeout")
    if timeout == 0:
        raise InvalidInput(refusal)
    return timeout


def _int_field(value: object, name: str, default: int, low: int, high: int, where: str) -> int:
    """The whole number given for `name`, checked against `low..high`; `default`
    when none was given (None)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        # Flags arrive as text; only plain ASCII digits (`"²".isdigit()` is True).
        if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
            value = int(value)
        else:
            raise InvalidInput(f"{where}: '{name}' must be a whole number; got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{where}: '{name}' must be between {low} and {high}; got {value}")
    return value
