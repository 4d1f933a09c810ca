"""Shared test helpers: polling with a deadline (never fixed sleeps) and a fake clock."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TypeVar

from queuectl.queue.executor import Executor

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class FakeClock:
    """A settable epoch clock for stores, so lease and backoff tests need no waiting."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SignalsBeforeGate(Executor):
    """An executor that signals each new shell before opening its gate.

    It recreates, on purpose, what a terminal's Ctrl+C to the worker's process
    group can do by chance: reach a job's shell in the instant between its
    creation and its `setsid`, so it dies before its command began. The executor
    tells the watchdog about a shell (`_guard("+PID")`) between spawning it and
    opening its gate; this is the seam used. Each shell is dead before this returns.
    """

    sig: int = signal.SIGINT  # the signal sent; set another on an instance

    def _guard(self, line: str | None = None) -> None:
        super()._guard(line)
        if line is not None and line.startswith("+"):
            pid = int(line[1:])
            os.kill(pid, self.sig)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped yet
