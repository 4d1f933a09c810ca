"""The retry policy: a pure decision (SPEC "Life of a job", step 5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queuectl.queue.retry import RetryDecision, RetryPolicy


def test_backoff_doubles_with_base_two() -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=3600.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]


def test_backoff_follows_the_configured_base() -> None:
    policy = RetryPolicy(backoff_base=3.0, backoff_max=3600.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [3.0, 9.0, 27.0]


def test_backoff_is_capped_by_backoff_max() -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=5.0)
    assert policy.backoff(2) == 4.0  # under the cap: untouched
    assert policy.backoff(3) == 5.0  # 8 capped to 5
    assert policy.backoff(30) == 5.0


def test_default_cap_is_an_hour() -> None:
    policy = RetryPolicy()
    assert policy.backoff(10) == 1024.0
    assert policy.backoff(12) == 3600.0  # 4096 capped


@pytest.mark.parametrize("base", [2.0, 10.0, 2])
def test_backoff_overflow_is_the_cap_not_an_error(base: float) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=120.0)
    assert policy.backoff(100_000) == 120.0


def test_first_failures_wait_two_then_four_seconds() -> None:
    policy = RetryPolicy(backoff_base=2.0, backoff_max=3600.0)
    assert policy.after_failure(0, 3) == RetryDecision(attempts=1, dead=False, delay=2.0)
    assert policy.after_failure(1, 3) == RetryDecision(attempts=2, dead=False, delay=4.0)


def test_dead_when_attempts_reach_max_retries() -> None:
    policy = RetryPolicy()
    decision = policy.after_failure(2, 3)
    assert decision == RetryDecision(attempts=3, dead=True, delay=0.0)


def test_dead_when_attempts_already_past_max_retries() -> None:
    # max_retries may be lowered by `config set` while a job has failed more often.
    decision = RetryPolicy().after_failure(5, 3)
    assert decision.dead
    assert decision.attempts == 6


@pytest.mark.parametrize("max_retries", [0, 1])
def test_zero_or_one_retries_means_dead_after_the_first_failure(max_retries: int) -> None:
    decision = RetryPolicy().after_failure(0, max_retries)
    assert decision == RetryDecision(attempts=1, dead=True, delay=0.0)


def test_a_job_that_keeps_failing_runs_max_retries_times() -> None:
    """The docstring's worked example: base 2, max_retries 3 -> waits 2 s, 4 s, then dead."""
    policy = RetryPolicy(backoff_base=2.0)
    attempts, runs = 0, 0
    delays: list[float] = []
    while True:
        runs += 1
        decision = policy.after_failure(attempts, 3)
        attempts = decision.attempts
        if decision.dead:
            break
        delays.append(decision.delay)
    assert runs == 3
    assert delays == [2.0, 4.0]


@given(
    base=st.floats(min_value=1.0, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=1e6),
    attempts=st.integers(min_value=1, max_value=10_000),
)
def test_backoff_is_never_above_the_cap_and_never_negative(
    base: float, cap: float, attempts: int
) -> None:
    delay = RetryPolicy(backoff_base=base, backoff_max=cap).backoff(attempts)
    assert 0.0 <= delay <= cap
