"""Bad input is refused with exit code 2, one line, and changes nothing (SPEC: exit codes).

Service-level properties run against a SQLite store on a fake clock; a few
CLI-level examples run the real `queuectl` command. A property for valid Unicode
commands checks they round-trip exactly on every backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuectl.errors import InvalidInput
from queuectl.queue.jobspec import FIELDS, MAX_COMMAND_BYTES, parse_json_object
from queuectl.queue.service import QueueService
from queuectl.queue.settings import KEYS
from queuectl.storage.base import Store
from queuectl.storage.sqlite import SQLiteStore
from tests.conftest import Queuectl
from tests.helpers import FakeClock

FAST = settings(max_examples=100, deadline=None, database=None)
CLI = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# -- strategies ------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
non_strings = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)
garbage_text = st.text(max_size=20).filter(
    lambda s: not s.strip().lstrip("-").isascii() or not s.strip().lstrip("-").isdigit()
)
non_ints = (
    st.booleans()
    | st.floats().filter(
        lambda f: not f.is_integer() if f == f and abs(f) != float("inf") else True
    )
    | garbage_text
    | st.lists(json_scalars, max_size=2)
    | st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)
)
bad_durations = (
    st.booleans()
    | st.floats(max_value=-1e-9)
    | st.integers(max_value=-1)
    | st.just(float("nan"))
    | st.just(float("inf"))
    | st.text(max_size=12).filter(lambda s: not any(c.isdigit() for c in s))
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
bad_dates = (
    st.text(max_size=25).filter(lambda s: not any(c.isdigit() for c in s))
    | st.sampled_from(
        [
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-29T25:00:00Z",
            "2026-11-29T10:61:00Z",
            "0001-01-01T00:00:00+00:00",
            "1969-12-31T23:59:59Z",
            "9999-12-31T23:59:59-23:59",
            "tomorrow",
            "2026/11/29 10:30",
            "2026-11-29T10:30:00+25:00",
        ]
    )
    | non_strings.filter(lambda v: v is not None)
)


def malformed_json_texts() -> st.SearchStrategy[str]:
    """Text that is not one JSON object."""

    def not_an_object(text: str) -> bool:
        try:
            return not isinstance(json.loads(text), dict)
        except (ValueError, RecursionError):
            return True

    valid = json.dumps({"command": "echo hi"})
    truncated = st.integers(min_value=0, max_value=len(valid) - 1).map(lambda n: valid[:n])
    non_object = json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps)
    return (
        st.text(max_size=30).filter(not_an_object)
        | truncated
        | non_object
        | st.sampled_from(['{"command": "x",}', "{'command': 'x'}", '{"command": "x"} {}', "["])
        | st.integers(min_value=1000, max_value=200_000).map(lambda n: "[" * n + "]" * n)
        | st.just('{"command": "x", "priority": ' + "9" * 5000 + "}")
    )


def bad_job_specs() -> st.SearchStrategy[dict[str, Any]]:
    """Job objects each invalid in at least one field."""
    base = st.fixed_dictionaries({"command": st.just("echo ok")})

    def with_field(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        return base.flatmap(lambda b: values.map(lambda v: {**b, name: v}))

    return st.one_of(
        st.fixed_dictionaries({}, optional={"id": st.just("x1")}),  # missing command
        non_strings.map(lambda v: {"command": v}),
        st.text(alphabet=" \t\n\r", max_size=5).map(lambda s: {"command": s}),
        st.text(max_size=10).map(lambda s: {"command": s + "\x00" + s + "x"}),
        st.integers(min_value=MAX_COMMAND_BYTES + 1, max_value=MAX_COMMAND_BYTES + 3000).map(
            lambda n: {"command": "a" * n}
        ),
        st.integers(min_value=MAX_COMMAND_BYTES // 2 + 1, max_value=MAX_COMMAND_BYTES).map(
            lambda n: {"command": "é" * n}  # 2 bytes each: over the limit in UTF-8 bytes
        ),
        st.just({"command": "echo \ud800"}),
        with_field("id", non_strings.filter(lambda v: v is not None)),
        with_field("id", st.text(max_size=3).map(lambda s: "-" + s)),
        with_field("id", st.just("a" * 129)),
        with_field("max_retries", non_ints),
        with_field("max_retries", st.integers(max_value=-1) | st.integers(min_value=1_000_001)),
        with_field("priority", non_ints),
        with_field("priority", st.integers(min_value=2**31) | st.integers(max_value=-(2**31))),
        with_field("queue", non_strings.filter(lambda v: v is not None)),
        with_field("queue", st.sampled_from(["", "-q", "a b", "q/1", "x" * 65, "ü"])),
        with_field("run_at", bad_dates),
        with_field("delay", bad_durations),
        with_field("timeout", bad_durations | st.just(0)),
        base.map(lambda b: {**b, "run_at": "2030-01-01T00:00:00Z", "delay": 5}),
        st.text(min_size=1, max_size=10)
        .filter(lambda k: k not in FIELDS)
        .flatmap(lambda k: base.map(lambda b: {**b, k: 1})),
    )


# -- service level ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueService]:
    """A SQLite queue holding one job and one stored setting, so "unchanged" means something."""
    root = tmp_path_factory.mktemp("svc")
    store = SQLiteStore(root / "q.db", clock=FakeClock())
    svc = QueueService(store, str(root / "logs"))
    svc.enqueue([("job", {"id": "existing", "command": "echo existing"})])
    svc.config_set("backoff_base", "3")
    yield svc
    store.close()


def snapshot(svc: QueueService) -> tuple[list[dict[str, Any]], dict[str, str]]:
    return [j.to_dict() for j in svc.store.list_jobs()], svc.store.get_config()


def refused(svc: QueueService, action: Callable[[], object]) -> InvalidInput:
    """Run `action`; it must raise InvalidInput (exit 2, one line) and change nothing."""
    before = snapshot(svc)
    with pytest.raises(InvalidInput) as info:
        action()
    assert info.value.exit_code == 2
    message = info.value.message
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    assert snapshot(svc) == before
    return info.value


@FAST
@given(text=malformed_json_texts())
def test_malformed_json_is_refused(service: QueueService, text: str) -> None:
    refused(service, lambda: service.enqueue([("job", parse_json_object(text))]))


@FAST
@given(spec=bad_job_specs())
def test_invalid_job_fields_are_refused(service: QueueService, spec: dict[str, Any]) -> None:
    refused(service, lambda: service.enqueue([("job", spec)]))


@FAST
@given(spec=bad_job_specs(), good=st.integers(min_value=0, max_value=3))
def test_one_bad_job_in_a_batch_stores_none(
    service: QueueService, spec: dict[str, Any], good: int
) -> None:
    specs = [(f"line {i}", {"command": f"echo {i}"}) for i in range(good)]
    refused(service, lambda: service.enqueue([*specs, ("line bad", spec)]))


@FAST
@given(
    state=st.text(max_size=15).filter(
        lambda s: (
            s.strip().lower()
            not in {"pending", "running", "processing", "completed", "failed", "dead", "canceled"}
        )
    )
)
def test_unknown_states_are_refused(service: QueueService, state: str) -> None:
    refused(service, lambda: service.list_jobs(state=state))


@FAST
@given(key=st.text(max_size=20).filter(lambda k: k.strip().lower().replace("-", "_") not in KEYS))
def test_unknown_config_keys_are_refused(service: QueueService, key: str) -> None:
    refused(service, lambda: service.config_set(key, "3"))
    refused(service, lambda: service.config_get(key))


BAD_CONFIG_VALUES: dict[str, st.SearchStrategy[str]] = {
    "max_retries": st.sampled_from(["-1", "1.5", "three", "", "nan", "1e3", "9" * 5000])
    | st.integers(max_value=-1).map(str),
    "backoff_base": st.sampled_from(["0.5", "-2", "nan", "inf", "1e400", "two", ""])
    | st.floats(max_value=0.999).map(repr),
    "backoff_max": st.sampled_from(["0", "-1", "abc", "1x", "nan", "inf", ""]),
    "job_timeout": st.sampled_from(["-1", "abc", "1x", "nan", "inf", "0.0001"]),
    "lease_timeout": st.sampled_from(["1", "1.99", "-5", "abc", "nan", ""]),
    "heartbeat_interval": st.sampled_from(["0.05", "0", "-1", "abc", "nan", "20"]),
}


@FAST
@given(
    pair=st.sampled_from(sorted(BAD_CONFIG_VALUES)).flatmap(
        lambda k: BAD_CONFIG_VALUES[k].map(lambda v: (k, v))
    ),
    dash=st.booleans(),
)
def test_invalid_config_values_are_refused(
    service: QueueService, pair: tuple[str, str], dash: bool
) -> None:
    key, value = pair
    refused(service, lambda: service.config_set(key.replace("_", "-") if dash else key, value))


@settings(max_examples=10, deadline=None, database=None)
@given(value=st.integers(min_value=2**63, max_value=10**40))
def test_config_max_retries_beyond_the_job_limit_is_refused(
    tmp_path_factory: pytest.TempPathFactory, value: int
) -> None:
    root = tmp_path_factory.mktemp("cfg")
    store = SQLiteStore(root / "q.db", clock=FakeClock())
    try:
        svc = QueueService(store, str(root / "logs"))
        try:
            svc.config_set("max_retries", str(value))
        except InvalidInput as exc:
            assert exc.exit_code == 2
            return
        # Accepted: then the setting must be usable by the jobs it is the default of.
        (job,) = svc.enqueue([("job", {"command": "true"})]).jobs()
        assert job.max_retries == value
    finally:
        store.close()


# -- valid Unicode commands round-trip -------------------------------------------------------

valid_commands = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
    min_size=1,
    max_size=200,
).filter(lambda s: bool(s.strip()) and len(s.encode("utf-8")) <= MAX_COMMAND_BYTES)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(command=valid_commands, index=st.integers(min_value=0, max_value=10**9))
def test_valid_unicode_commands_round_trip(
    store: Store, tmp_path: Path, command: str, index: int
) -> None:
    svc = QueueService(store, str(tmp_path / "logs"))
    job_id = f"rt-{index}-{len(store.list_jobs())}"
    (job,) = svc.enqueue([("job", {"id": job_id, "command": command})]).jobs()
    assert job.command == command
    assert svc.get(job_id).command == command
    assert [j.command for j in store.list_jobs() if j.id == job_id] == [command]


def test_the_largest_command_round_trips(store: Store, tmp_path: Path) -> None:
    svc = QueueService(store, str(tmp_path / "logs"))
    command = "€" * (MAX_COMMAND_BYTES // 3) + "x" * (MAX_COMMAND_BYTES % 3)
    assert len(command.encode("utf-8")) == MAX_COMMAND_BYTES
    svc.enqueue([("job", {"id": "big", "command": command})])
    assert svc.get("big").command == command


# -- CLI level -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Queuectl:
    """The real command on a private SQLite queue with one job and one stored setting."""
    q = Queuectl(tmp_path_factory.mktemp("cli"))
    q.run("enqueue", '{"id": "existing", "command": "echo existing"}')
    q.run("config", "set", "backoff_base", "3")
    return q


def cli_argv() -> st.SearchStrategy[list[str]]:
    argument_safe = st.text(
        alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"),
        max_size=15,
    )
    return st.one_of(
        malformed_json_texts()
        .filter(lambda t: "\x00" not in t and len(t) < 50_000)
        .map(lambda t: ["enqueue", t]),
        bad_job_specs()
        .map(lambda s: json.dumps(s))
        .filter(lambda t: len(t) < 50_000)
        .map(lambda t: ["enqueue", t]),
        st.sampled_from(["--priority", "--max-retries"]).flatmap(
            lambda f: st.sampled_from(["x", "1.5", "99999999999", "-"]).map(
                lambda v: ["enqueue", '{"command": "true"}', f, v]
            )
        ),
        argument_safe.filter(
            lambda s: (
                s.strip().lower()
                not in {
                    "pending",
                    "running",
                    "processing",
                    "completed",
                    "failed",
                    "dead",
                    "canceled",
                }
            )
        ).map(lambda s: ["list", "--state", s]),
        argument_safe.filter(lambda k: k.strip().lower().replace("-", "_") not in KEYS).map(
            lambda k: ["config", "set", k, "3"]
        ),
        st.sampled_from(sorted(BAD_CONFIG_VALUES)).flatmap(
            lambda k: (
                BAD_CONFIG_VALUES[k]
                .filter(lambda v: len(v) < 1000)
                .map(lambda v: ["config", "set", k, v])
            )
        ),
    )


@CLI
@given(argv=cli_argv())
def test_cli_bad_input_exits_2_with_one_line(cli: Queuectl, argv: list[str]) -> None:
    before_jobs = cli.json("list")
    before_config = cli.json("config", "show")
    result = cli.run(*argv, check=False)
    assert result.returncode == 2, (argv, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stdout == ""
    assert cli.json("list") == before_jobs
    assert cli.json("config", "show") == before_config
