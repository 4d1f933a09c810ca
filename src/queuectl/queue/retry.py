"""The retry policy: a pure decision, recorded by storage.

After a failed run, `attempts` (runs that ended) has gone up by one. If
`attempts < max_retries` the job waits `min(backoff_base ** attempts,
backoff_max)` seconds in the `failed` state and then runs again; otherwise it is
`dead` (the dead-letter queue).

Worked example, backoff_base=2, max_retries=3: the first failure leaves
attempts=1 and waits 2 s; the second, attempts=2, waits 4 s; the third,
attempts=3 >= 3, is dead. A job that keeps failing therefore runs
`max_retries` times in all.
"""

from __future__ import annotations

from queuectl.record import Record


class RetryDecision(Record):
    """What happens to a job after a failed run."""

    #: `attempts` after this failure.
    attempts: int
    #: True: the job goes to the dead-letter queue.
    dead: bool
    #: Seconds until the next run (0 when dead).
    delay: float


class RetryPolicy(Record):
    """Exponential backoff with a cap."""

    backoff_base: float = 2.0
    backoff_max: float = 3600.0  # seconds

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after `attempts` failed runs: base ** attempts, capped."""
        try:
            delay = float(self.backoff_base**attempts)
        except OverflowError:
            delay = self.backoff_max
        return min(delay, self.backoff_max)

    def after_failure(self, attempts_before: int, max_retries: int) -> RetryDecision:
        """Decide the fate of a job whose run numbered `attempts_before + 1` just failed."""
        attempts = attempts_before + 1
        if attempts >= max_retries:
            return RetryDecision(attempts=attempts, dead=True, delay=0.0)
        return RetryDecision(attempts=attempts, dead=False, delay=self.backoff(attempts))
