"""The worker: claims jobs, runs them through the executor, records outcomes.

Threads: the main thread runs the loop (`step()` is one iteration, callable
directly from tests); a heartbeat thread, with its own database connection,
renews leases on a timer, independent of job progress, and recovers the jobs
of lost workers; a watcher thread wakes an idle loop when the queue changes;
and the terminal's threads (queue/terminal.py) write job output and events, so
that a terminal that does not read never holds up the loop. Signal handlers
only set flags; the loop acts on them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

from queuectl.errors import InvalidStoredSetting, QueuectlError, StorageError
from queuectl.models import Job, JobState, WorkerInfo
from queuectl.queue.executor import Executor, Outcome
from queuectl.queue.hostinfo import hostname, known_dead
from queuectl.queue.joblog import log_path
from queuectl.queue.retry import RetryPolicy
from queuectl.queue.settings import SETTINGS_PICKUP, Settings
from queuectl.queue.terminal import TerminalOutput
from queuectl.storage.base import Store
from queuectl.textutil import one_line
from queuectl.timeutil import format_seconds, to_iso

TYPE_CHECKING = False  # importing `typing` (and `pathlib`) costs a worker's start-up time
if TYPE_CHECKING:
    from os import PathLike
    from types import FrameType
    from typing import Any, TextIO, TypeGuard

BUSY_WAIT = 0.5  # seconds the loop waits at most for events (any event wakes it earlier)
STEP_POLL = 0.010  # seconds: idle wait of a loop driven by step() alone (no watcher)
WATCH_SLICE = 1.0  # seconds per wait_for_change call of the watcher thread
SETTINGS_REFRESH = 2.0  # seconds between re-reads of the shared settings
HEARTBEAT_SLICE = 0.5  # seconds: how often the heartbeat looks at a changed interval
STORAGE_RETRY_MAX = 5.0  # seconds: cap of the backoff while the database is unavailable
RECORD_GIVE_UP = 60.0  # seconds a stopping worker keeps retrying to record outcomes
TERMINAL_FLUSH = 2.0  # seconds a stopping worker waits for its terminal to take its last lines
LAUNCH_PAUSE = 1.0  # seconds without claims after a job could not be started (out of fds, say)
#: Seconds without progress before a signal counts the loop as stuck. An iteration
#: waits for events half a second at most, and each job it launches or records is
#: progress; only a database that does not answer (a lock held elsewhere, a hung
#: server) holds it longer.
STUCK_AFTER = 2.0
#: The signals that stop a worker (SIGHUP: unless it is ignored, as under nohup).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _describe(exc: Exception) -> str:
    """One line for an error a background thread survives."""
    return exc.message if isinstance(exc, QueuectlError) else f"{type(exc).__name__}: {exc}"


def new_worker_id() -> str:
    """A fresh identity per `worker start` (never the host name: hosts run many)."""
    return f"w-{os.urandom(5).hex()}"  # not `uuid`, whose import costs start-up time


def run_key(job: Job) -> str:
    """The executor's key for one run: a job id can run again (after its lease was
    taken over) while the old run is still being stopped."""
    return f"{job.id}#{job.runs}"


class _Running:
    """A job this worker has started."""

    __slots__ = ("claimed_at", "job", "lost")

    def __init__(self, job: Job, claimed_at: float) -> None:
        self.job = job
        self.claimed_at = claimed_at  # monotonic
        #: The lease was taken over: stop the run and discard its result.
        self.lost = False


class _Unrecorded:
    """An ended run whose outcome is not written yet (or could not be, yet)."""

    __slots__ = ("outcome", "past_guard", "running")

    def __init__(self, running: _Running, outcome: Outcome, past_guard: bool = False) -> None:
        self.running = running
        self.outcome = outcome
        #: It ended after the lease guard ran out: the watchdog may have killed it,
        #: and its lease may be someone else's; never charge it as the job's failure.
        self.past_guard = past_guard


def guard_window(settings: Settings) -> float:
    """Seconds after a lease renewal *began* at which the watchdog kills the jobs.

    Shortly before the lease expires (at `lease_timeout`) and well after the next
    heartbeat is due (at `heartbeat_interval`), so only a worker that missed
    several renewals loses its jobs, and always before anyone can recover them.
    """
    margin = min(1.0, (settings.lease_timeout - settings.heartbeat_interval) / 2)
    return settings.lease_timeout - margin


class _Flags:
    """State shared with signal handlers and the heartbeat thread."""

    __slots__ = ("held", "held_since", "lock", "signals", "stop_requested")

    def __init__(self) -> None:
        self.signals = 0
        self.stop_requested = False
        self.held: frozenset[str] | None = None
        self.held_since = 0.0  # monotonic time the heartbeat's query began
        self.lock = threading.Lock()


class Worker:
    """Runs up to `concurrency` jobs at a time until asked to stop."""

    def __init__(
        self,
        store: Store,
        *,
        open_store: Callable[[], Store],
        logs_dir: str | PathLike[str],
        concurrency: int = 1,
        queues: Sequence[str] = (),
        executor: Executor | None = None,
        out: TextIO | None = None,
        err: TextIO | None = None,
        worker_id: str | None = None,
        quiet: bool = False,
    ) -> None:
        """`store` serves the main loop; `open_store` makes the heartbeat thread's own."""
        self.store = store
        self._open_store = open_store
        self.logs_dir = logs_dir
        self.concurrency = concurrency
        self.queues = tuple(queues)
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._terminal = TerminalOutput(self.out, self.err)
        self.quiet = quiet
        self.executor = executor or Executor(on_line=self._echo_line, on_notice=self._event)
        self.info = WorkerInfo(
            id=worker_id or new_worker_id(),
            host=hostname(),
            pid=os.getpid(),
            started_at=store.now(),
            last_heartbeat=store.now(),
            concurrency=concurrency,
            queues=self.queues,
            stop_requested=False,
        )
        self.settings = Settings.from_stored(store.get_config())
        self._settings_read = time.monotonic()
        self._bad_setting: str | None = None  # the last InvalidStoredSetting reported
        self._running: dict[str, _Running] = {}  # by run_key()
        self._unrecorded: list[_Unrecorded] = []
        self._storage_retry_at = 0.0  # monotonic; no claims or records before it
        self._launch_retry_at = 0.0  # monotonic; no claims before it (see _launch)
        self._log_error_shown = False  # under --quiet, a log that fails is reported once
        self._storage_backoff = 0.0
        self._storage_failure: str | None = None  # the cause last reported
        self._stopping_since: float | None = None
        self._flags = _Flags()
        self._notified = threading.Event()  # set by the watcher thread
        # Set by the loop when it found nothing to claim and has a free slot: only
        # then does the watcher look for changes (while busy it would only add
        # wake-ups; every commit of a busy queue is a change).
        self._want_wakeup = threading.Event()
        self._watcher: threading.Thread | None = None
        self._due_at: float | None = None  # store clock: when a waiting job becomes runnable
        self._looked_for_changes = False  # see _changed_since_last_look()
        self._claim_now = True
        #: Claimed together with recording an outcome (complete_and_claim), to launch.
        self._next: Job | None = None
        self._stopping = False
        self._forced = False
        #: When the loop last made progress (began an iteration, launched or recorded
        #: a job): what a signal that finds it stuck judges by.
        self._progress_at = time.monotonic()
        self._signals_acted_on = 0  # signals the loop has seen (the rest wait for it)
        self._abandoning = False
        self._stuck_said = False  # the first signal's answer while stuck was given
        self._signal_r = -1  # the read end of the signal wake-up pipe (see run())
        self._started = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.executor.add_wakeup_fd(self._wake_r)
        self._hb_stop = threading.Event()
        self._hb_thread: threading.Thread | None = None
        self._guard_deadline = float("inf")  # monotonic; see guard_window()
        #: When a renewal last came after the guard had run out (monotonic): the
        #: watchdog killed every run of that time (see _ended_past_guard).
        self._guard_lapsed_at = float("-inf")
        self._stop_shown = False  # the workers table says this worker is stopping
        # Each running job's lease as last seen, with the monotonic time first seen so.
        self._lease_seen: dict[tuple[str, int, float | None], float] = {}

    @property
    def id(self) -> str:
        return self.info.id

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, *, exiting: bool = False) -> int:
        """Register, work until stopped, clean up. Returns the process exit code (0).

        `exiting`: the process ends when this returns (`worker start`). The stop
        signals are then ignored from the end of the run on, instead of going back
        to their old handlers: a second Ctrl+C just as the worker stopped was
        Python's KeyboardInterrupt, and the command exited 130 instead of 0.
        """
        # Each signal delivered writes its number to this pipe, even when Python runs
        # the handler once for a signal that came twice (while the main thread waited
        # in C code: a double Ctrl+C during one SQLite busy wait). See _count_signals.
        self._signal_r, signal_w = os.pipe()
        os.set_blocking(self._signal_r, False)
        os.set_blocking(signal_w, False)
        previous_wakeup = signal.set_wakeup_fd(signal_w, warn_on_full_buffer=False)
        previous = self._install_signal_handlers()
        self._progress_at = time.monotonic()
        try:
            self.start()
            while not self.finished:
                self.step()
        finally:
            self.shutdown()
            signal.setitimer(signal.ITIMER_REAL, 0)  # a look still due (see _check_stuck)
            for sig, handler in previous.items():
                ignore = exiting and sig in STOP_SIGNALS
                signal.signal(sig, signal.SIG_IGN if ignore else handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(signal_w)
            os.close(self._signal_r)
            self._signal_r = -1
        return 0

    def start(self) -> None:
        """Register this worker, recover lost jobs, start heartbeating."""
        began = time.monotonic()
        self.store.register_worker(self.info)
        self._renewed(began)
        self._recover(self.store)
        self._event(
            f"worker {self.id} started: {self.concurrency} slot(s), "
            f"queues {', '.join(self.queues) or 'all'}, pid {self.info.pid}, "
            f"db {self.store.location}"
        )
        self._started = True
        self._hb_thread = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True
        )
        self._hb_thread.start()
        self._watcher = threading.Thread(target=self._watch_loop, name="watcher", daemon=True)
        self._watcher.start()

    @property
    def finished(self) -> bool:
        if not self._stopping or self._running:
            return False
        if not self._unrecorded:
            return True
        assert self._stopping_since is not None
        if time.monotonic() - self._stopping_since > RECORD_GIVE_UP:
            self._event(
                f"giving up recording {len(self._unrecorded)} outcome(s): the database is "
                "unavailable; those jobs will be recovered and run again"
            )
            return True
        return False

    def shutdown(self) -> None:
        """Stop heartbeating, deregister, release the executor and the wake-up pipe."""
        self._progress_at = time.monotonic()
        self._hb_stop.set()
        self._want_wakeup.set()  # let the watcher see the stop at once
        for thread in (self._hb_thread, self._watcher):
            if thread is not None:
                thread.join()
        self._hb_thread = self._watcher = None
        if self._running:  # only on an unexpected error: give the jobs back
            self.request_stop(force=True)
            self.executor.stop_all(grace=0)
            while self._running:
                self.step(max_wait=0.1)
        self.executor.close()
        try:
            self.store.deregister_worker(self.id)
        except QueuectlError as exc:
            self._event(f"could not deregister: {exc.message}")
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._started:  # (a start that failed is reported by its error alone)
            self._event(f"worker {self.id} stopped")
        self._progress_at = time.monotonic()  # a terminal that does not read: bounded
        self._terminal.close(TERMINAL_FLUSH)

    def request_stop(self, force: bool = False) -> None:
        """Stop claiming; with `force`, also stop running jobs and give them back."""
        if not self._stopping:
            self._stopping = True
            self._stopping_since = time.monotonic()
            if self._running and not force:
                self._event(
                    f"stopping: waiting for {len(self._running)} running job(s) to finish "
                    "(Ctrl+C again to stop them now)"
                )
            elif self._unrecorded:
                self._event(
                    f"stopping: {len(self._unrecorded)} outcome(s) still to record; "
                    f"retrying for up to {format_seconds(RECORD_GIVE_UP)}"
                )
        if force and not self._forced:
            self._forced = True
            if self._running:
                self._event(
                    f"stopping now: ending {len(self._running)} job(s), they go back to pending"
                )
            self.executor.stop_all()

    # -- one iteration -----------------------------------------------------------------------

    def step(self, max_wait: float = BUSY_WAIT) -> None:
        """One loop iteration: act on flags, claim into free slots, wait for events.

        A database that is unavailable (server down, disk full, busy for minutes)
        does not stop the worker: claims pause and outcomes wait in memory, retried
        with backoff, while running jobs go on.
        """
        self._progress_at = time.monotonic()
        self._apply_flags()
        claimed = 0
        if time.monotonic() >= self._storage_retry_at:
            try:
                # Also while nothing is claimed (one long job, an idle queue): a
                # shortened lease must reach the heartbeat within SETTINGS_PICKUP.
                self._refresh_settings()
                self._record_pending_outcomes()
                claimed = self._fill_slots()
                self._storage_ok()
            except StorageError as exc:
                self._storage_failed(exc)
        if claimed:
            wait = 0.0
        elif time.monotonic() < self._storage_retry_at:
            wait = self._storage_retry_at - time.monotonic()
        elif not self._stopping and len(self._running) < self.concurrency:
            wait = self._idle_wait()
        else:
            wait = BUSY_WAIT
        for key, outcome in self.executor.poll(min(wait, max_wait)):
            running = self._running.pop(key)
            past_guard = self._ended_past_guard(running)
            self._unrecorded.append(_Unrecorded(running, outcome, past_guard))
        if time.monotonic() >= self._storage_retry_at:
            try:
                self._record_pending_outcomes()
            except StorageError as exc:
                self._storage_failed(exc)

    def _ended_past_guard(self, running: _Running) -> bool:
        """Whether a run that just ended may have been killed by the watchdog's guard.

        Also after the heartbeat has renewed the leases again: a worker frozen past
        its guard (Ctrl+Z) resumes with its heartbeat thread and its loop racing,
        and a renewal that came first must not turn the watchdog's kill into a
        charged failure (an e2e test saw about one run in twenty charged).
        """
        if time.monotonic() >= self._guard_deadline:
            return True
        return running.claimed_at < self._guard_lapsed_at

    def _storage_failed(self, exc: StorageError) -> None:
        self._claim_now = True  # what failed may have been a claim: try again after the pause
        self._storage_backoff = min(max(self._storage_backoff * 2, 0.1), STORAGE_RETRY_MAX)
        self._storage_retry_at = time.monotonic() + self._storage_backoff
        if exc.message != self._storage_failure:  # once per cause, not at every retry
            self._event(
                f"database unavailable, retrying (every {format_seconds(STORAGE_RETRY_MAX)} "
                f"at most): {exc.message}"
            )
        self._storage_failure = exc.message

    def _storage_ok(self) -> None:
        if self._storage_backoff:
            self._event("database available again")
        self._storage_backoff = 0.0
        self._storage_failure = None

    def _record_pending_outcomes(self) -> None:
        while self._unrecorded:
            item = self._unrecorded[0]
            outcome, reason = item.outcome, "interrupted by worker shutdown (not charged)"
            if outcome.not_started:
                reason = "not started: its worker could not renew the lease in time (not charged)"
            elif item.past_guard and not outcome.succeeded:
                outcome = outcome.replace(interrupted=True)
                reason = "stopped: its worker could not renew the lease in time (not charged)"
            elif outcome.killed_before_command:
                reason = (
                    f"its shell was {outcome.describe()} before the command began (not charged)"
                )
            elif outcome.interrupted and outcome.error is not None:
                reason = f"not started: {outcome.error} (not charged)"
            if outcome.log_error is not None:
                self._report_log_error(item.running.job.id, outcome.log_error)
            self._record(item.running, outcome, reason)
            self._unrecorded.pop(0)
            self._progress_at = time.monotonic()
            if self._next is not None:
                job, self._next = self._next, None
                self._launch(job)

    def _apply_flags(self) -> None:
        signals = self._flags.signals
        self._signals_acted_on = signals  # see _check_stuck
        with self._flags.lock:
            stop_requested = self._flags.stop_requested
            held, held_since = self._flags.held, self._flags.held_since
            self._flags.held = None
        if signals >= 2:
            self.request_stop(force=True)
        elif signals == 1 or stop_requested:
            self.request_stop()
        if held is not None:
            for key, running in self._running.items():
                job_id = running.job.id
                if job_id not in held and running.claimed_at < held_since and not running.lost:
                    self._event(
                        f"[{job_id}] lease lost to another worker; stopping this run", job_id
                    )
                    running.lost = True
                    self.executor.stop(key, grace=0)

    def _report_log_error(self, job_id: str, message: str) -> None:
        """The job's result stands; its missing output is the operator's to fix."""
        if not self.quiet:
            self._event(f"[{job_id}] its output was not logged: {message}", job_id)
        elif not self._log_error_shown:
            self._event(f"job output cannot be logged ({message}); results are still recorded")
        self._log_error_shown = True

    def _may_claim(self) -> bool:
        """Claims wait while the leases are past their guard: a job claimed then would
        only be given back unstarted, at once, again and again until the heartbeat
        renews. For a moment after a job could not be started for want of
        descriptors or processes. And while the job watchdog is down."""
        now = time.monotonic()
        return now < self._guard_deadline and now >= self._launch_retry_at and self.executor.guarded

    def _fill_slots(self) -> int:
        if self._stopping or len(self._running) >= self.concurrency or not self._may_claim():
            return 0
        if not self._should_try_claim():
            return 0
        claimed = 0  # (settings: step() has just refreshed them)
        while len(self._running) < self.concurrency and self._may_claim():
            job = self.store.claim(self.id, self.queues, self.settings.lease_timeout)
            if not self._claimed(job):
                break
            claimed += 1
            self._launch(job)
            self._progress_at = time.monotonic()  # many slots take a while to fill
        return claimed

    def _claimed(self, job: Job | None) -> TypeGuard[Job]:
        """Note what a claim found; True when it got a job."""
        if job is None:
            self._due_at = self.store.next_due_at(self.queues)
            self._claim_now = False
            self._want_wakeup.set()
            return False
        self._claim_now = True  # more may be waiting: look again when a slot frees
        return True

    def _claims_after_success(self) -> bool:
        """Whether recording a success should claim the next job in the same write.

        Only while the queue is known to be busy (the last claim found a job):
        an idle worker claims when the watcher or a due time says so.
        """
        return (
            self._claim_now
            and not self._stopping
            and len(self._running) < self.concurrency
            and time.monotonic() >= self._storage_retry_at
            and self._may_claim()
        )

    def _should_try_claim(self) -> bool:
        if self._notified.is_set():  # the watcher saw a change
            self._notified.clear()
            return True
        # Driven by step() alone, or the watcher gave up: look for changes ourselves.
        if self._watcher is None and self._changed_since_last_look():
            return True
        if self._claim_now:
            return True
        return self._due_at is not None and self.store.now() >= self._due_at

    def _changed_since_last_look(self) -> bool:
        # The first look only sets the store's starting point and cannot tell what
        # came before it (a watcher may hand over at any moment): count it as a change.
        if not self._looked_for_changes:
            self._looked_for_changes = True
            self.store.changed()
            return True
        return self.store.changed()

    def _idle_wait(self) -> float:
        # With a watcher thread, its wake-up ends the wait; without one, poll.
        wait = BUSY_WAIT if self._watcher is not None else STEP_POLL
        if self._due_at is not None:
            wait = min(wait, max(0.0, self._due_at - self.store.now()))
        return wait

    def _launch(self, job: Job) -> None:
        attempt = job.attempts + 1
        key = run_key(job)
        self._running[key] = _Running(job=job, claimed_at=time.monotonic())
        if not self.quiet:  # per-job events: not even formatted under --quiet
            self._event(
                f"[{job.id}] started (attempt {attempt}/{job.runs_allowed}): "
                f"{one_line(job.command)}",
                job.id,
            )
        started = self.store.now()

        def header() -> str:  # formatted only if the job prints something
            return (
                f"=== run {job.runs} (attempt {attempt}) started {to_iso(started)} "
                f"on {self.info.host} by {self.id} ===\n"
            )

        try:
            failure = self.executor.start(
                key,
                job.command,
                log_path=log_path(self.logs_dir, job.id),
                log_header=header,
                env={"QUEUECTL_JOB_ID": job.id, "QUEUECTL_ATTEMPT": str(attempt)},
                timeout=job.timeout,
            )
        except BaseException:
            del self._running[key]  # never started: nothing for the loop to wait for
            raise
        if failure is not None:
            if failure.interrupted:  # short of descriptors or processes: pause claims
                self._launch_retry_at = time.monotonic() + LAUNCH_PAUSE
                self._event(
                    f"cannot start jobs: {failure.describe()}; "
                    f"claiming again in {format_seconds(LAUNCH_PAUSE)}"
                )
            self._unrecorded.append(_Unrecorded(self._running.pop(key), failure))

    def _record(self, running: _Running, outcome: Outcome, interrupt_reason: str) -> None:
        """Write a run's outcome (fenced on the run); raises StorageError to retry later."""
        job = running.job
        job_id = job.id
        if running.lost:  # another worker owns the job now
            self._event(f"[{job_id}] run ended after losing its lease; result discarded", job_id)
            return
        if outcome.interrupted:
            ok = self.store.release(job.id, job.runs, self.id, interrupt_reason)
            message = f"back to pending: {interrupt_reason}"
        elif outcome.succeeded:
            # Not even formatted under --quiet (a worker of short jobs records many).
            message = "" if self.quiet else f"completed in {format_seconds(outcome.duration)}"
            if self._claims_after_success():
                self._refresh_settings()
                ok, claimed = self.store.complete_and_claim(
                    job.id,
                    job.runs,
                    self.id,
                    outcome.exit_code or 0,
                    queues=self.queues,
                    lease_seconds=self.settings.lease_timeout,
                )
                if self._claimed(claimed):
                    self._next = claimed  # launched once this outcome is off the list
            else:
                ok = self.store.complete(job.id, job.runs, self.id, outcome.exit_code or 0)
        else:
            self._refresh_settings(force=True)
            policy = RetryPolicy(
                backoff_base=self.settings.backoff_base, backoff_max=self.settings.backoff_max
            )
            decision = policy.after_failure(job.attempts, job.max_retries)
            ok = self.store.fail(
                job.id,
                job.runs,
                self.id,
                attempts=decision.attempts,
                dead=decision.dead,
                retry_in=decision.delay,
                exit_code=outcome.exit_code,
                error=outcome.describe(),
            )
            if decision.dead:
                message = f"dead after {decision.attempts} attempt(s): {outcome.describe()}"
            else:
                message = (
                    f"failed ({outcome.describe()}); retry in {format_seconds(decision.delay)} "
                    f"(attempt {decision.attempts}/{job.max_retries})"
                )
        if self.quiet:
            return
        if not ok:
            message = "lease was taken over by another worker; this run's result is discarded"
        self._event(f"[{job_id}] {message}", job_id)

    # -- heartbeat and recovery ---------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        # Any error is retried at the next beat: a heartbeat thread that ended would
        # leave this worker running jobs whose leases nobody renews.
        store: Store | None = None
        try:
            try:
                store = self._open_store()  # at once: a worker holds its connections from the start
            except Exception as exc:
                self._event(f"heartbeat cannot open the database (will retry): {_describe(exc)}")
            failing: str | None = None  # said once, not at every beat of an outage
            last = time.monotonic()
            while True:
                # In slices, against the settings as they are now: a shortened
                # interval takes effect within a slice, not after the old interval.
                due_in = last + self.settings.heartbeat_interval - time.monotonic()
                if self._hb_stop.wait(min(max(due_in, 0.0), HEARTBEAT_SLICE)):
                    break
                if time.monotonic() < last + self.settings.heartbeat_interval:
                    continue
                last = time.monotonic()
                try:
                    if store is None:
                        store = self._open_store()
                    self.beat(store)
                except Exception as exc:
                    if _describe(exc) != failing:
                        self._event(f"heartbeat failed (retrying): {_describe(exc)}")
                    failing = _describe(exc)
                else:
                    if failing is not None:
                        self._event("heartbeat renewed again")
                    failing = None
        finally:
            if store is not None:
                store.close()

    def beat(self, store: Store) -> None:
        """Renew leases, learn about stop requests, recover lost workers' jobs."""
        began = time.monotonic()
        # Copies are atomic under the GIL; the main thread may add or remove runs meanwhile.
        running = tuple(self._running.values())
        unrecorded = tuple(self._unrecorded)
        mine = {r.job.id for r in running if not r.lost} | {u.running.job.id for u in unrecorded}
        hb = store.heartbeat(self.info, self.settings.lease_timeout, sorted(mine))
        self._renewed(began)
        if self._stopping and not self._stop_shown:
            # Stopping on its own (Ctrl+C, SIGTERM), as if asked by `worker stop`, so
            # that `worker list` and `status` show it. Here, not in the loop: a loop
            # that waits on a busy database must still see the second Ctrl+C.
            store.request_stop([self.id])
            self._stop_shown = True
        with self._flags.lock:
            self._flags.held = hb.held_job_ids
            self._flags.held_since = began
            self._flags.stop_requested |= hb.stop_requested
        self._recover(store)
        self._wake()

    def _watch_loop(self) -> None:
        """Wake the loop when another connection may have made a job runnable."""
        try:
            store = self._open_store()
        except QueuectlError as exc:
            self._stop_watching(exc)
            return
        try:
            # A zero wait sets up what the store waits with (SQLite: an inotify
            # descriptor) now, so the worker holds the same descriptors all its life.
            with contextlib.suppress(QueuectlError):  # the database is away: the loop retries
                store.wait_for_change(0.0, self._hb_stop)
            while not self._hb_stop.is_set():
                if not self._want_wakeup.wait(WATCH_SLICE):
                    continue
                try:
                    changed = store.wait_for_change(WATCH_SLICE, self._hb_stop)
                except QueuectlError:
                    changed = not self._hb_stop.wait(1.0)  # the database is away: retry
                if changed:
                    self._want_wakeup.clear()
                    self._notified.set()
                    self._wake()
        except Exception as exc:  # e.g. the inotify descriptor failed
            self._stop_watching(exc)
        finally:
            store.close()

    def _stop_watching(self, exc: Exception) -> None:
        """From the watcher thread: the loop polls for changes from now on."""
        self._event(f"cannot watch for new jobs (polling instead): {_describe(exc)}")
        self._watcher = None
        # Wake the loop: its first own look for changes counts as one, so it claims
        # at once (see _changed_since_last_look).
        self._wake()

    def _renewed(self, began: float) -> None:
        """Leases were renewed by a write that began at `began` (monotonic)."""
        now = time.monotonic()
        if now >= self._guard_deadline:  # set first: the loop reads it second
            self._guard_lapsed_at = now
        self._guard_deadline = began + guard_window(self.settings)
        self.executor.guard_lease(self._guard_deadline - time.monotonic())

    def _recover(self, store: Store) -> None:
        lost = [w.id for w in store.list_workers() if w.id != self.id and known_dead(w.host, w.pid)]
        unrenewed = None if store.shared_clock else self._unrenewed_leases(store)
        recovered = store.recover(
            lost,
            stale_after=2 * self.settings.lease_timeout,
            unrenewed=unrenewed,
            exclude=self.id,
        )
        for job in recovered:
            verdict = (
                "dead (lost its worker too many times)"
                if job.state is JobState.DEAD
                else "pending again"
            )
            self._event(f"[{job.id}] recovered from lost worker {job.worker_id}: {verdict}", job.id)
        if recovered:
            self._claim_now = True

    def _unrenewed_leases(self, store: Store) -> list[str]:
        """Running jobs whose lease this worker has seen unrenewed for a whole lease.

        Measured on this process's monotonic clock, so a jump of the wall clock
        (which a SQLite store's `now()` reads) cannot make a live lease look
        expired: its holder renews it every heartbeat, which changes the value
        seen here. A lease unrenewed that long also means the holder's watchdog
        has already stopped the run (see guard_window), so taking the job back
        never runs it twice at once. The watch starts when this worker first
        sees a lease, so a worker that has just started waits one lease.
        """
        now = time.monotonic()
        seen: dict[tuple[str, int, float | None], float] = {}
        unrenewed = []
        for job in store.list_jobs(JobState.RUNNING):
            lease = (job.id, job.runs, job.lease_expires_at)
            since = seen[lease] = self._lease_seen.get(lease, now)
            # With SETTINGS_PICKUP of slack: a holder that has not yet heard of a
            # shortened lease still renews on its old, longer interval.
            if now - since >= self.settings.lease_timeout + SETTINGS_PICKUP:
                unrenewed.append(job.id)
        self._lease_seen = seen
        return unrenewed

    def _refresh_settings(self, force: bool = False) -> None:
        if force or time.monotonic() - self._settings_read > SETTINGS_REFRESH:
            stored = self.store.get_config()
            self._settings_read = time.monotonic()
            try:
                self.settings = Settings.from_stored(stored)
            except InvalidStoredSetting as exc:  # written by hand: keep working as before
                if exc.message != self._bad_setting:
                    self._event(f"{exc.message}; keeping the previous settings")
                self._bad_setting = exc.message
            else:
                self._bad_setting = None

    # -- signals and output ------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        # SIGHUP too: a closed terminal or a dropped ssh session stops the worker
        # gracefully instead of killing it mid-job (jobs are in sessions of their
        # own, so the hang-up does not reach them). Unless it is ignored: that is
        # `nohup queuectl worker start`, asking to outlive the terminal.
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, self._on_signal)
        previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, self._on_continue)
        return previous

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes: taking the flags lock here could
        # deadlock against the loop holding it, and a plain int update needs no lock.
        self._count_signals(unless_counted=1)
        self._wake()
        self._check_stuck(look_again=True)

    def _on_continue(self, signum: int, frame: FrameType | None) -> None:
        self._progress_at = time.monotonic()  # (see _count_signals)

    def _count_signals(self, unless_counted: int) -> None:
        """Add the stop signals delivered since the last look to the count.

        Each delivery writes its number to the wake-up pipe (see run()), even when
        Python runs the handler once for a signal that came twice. A SIGCONT among
        them: this process was stopped until now (Ctrl+Z, SIGSTOP), which is no
        database's fault, so the loop's time starts again before the signals that
        waited for the SIGCONT are judged (their handlers run before its own).
        `unless_counted`: what to add when no pipe counts them (a test's worker).
        """
        if self._signal_r < 0:
            self._flags.signals += unless_counted
            return
        try:
            numbers = os.read(self._signal_r, 256)
        except BlockingIOError:  # counted by an earlier look (the pipe was drained)
            return
        if signal.SIGCONT in numbers:
            self._progress_at = time.monotonic()
        self._flags.signals += sum(1 for number in numbers if number in STOP_SIGNALS)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        self._count_signals(unless_counted=0)
        self._check_stuck(look_again=False)

    def _check_stuck(self, *, look_again: bool) -> None:
        """After a signal: act on it here if the loop is stuck; if it is not (yet),
        look again (SIGALRM) once it would count as stuck. Two quick Ctrl+C just as
        the loop got stuck would otherwise both find it not stuck yet, and nothing
        would act on them. Signals the loop has seen are its own to act on: a forced
        stop that then waits to record its outcomes is no second Ctrl+C."""
        if self._abandoning or self._flags.signals <= self._signals_acted_on:
            return
        stuck = time.monotonic() - self._progress_at
        if stuck >= STUCK_AFTER:
            self._signal_while_stuck(stuck)
        elif look_again:
            signal.setitimer(signal.ITIMER_REAL, STUCK_AFTER - stuck + 0.05)

    def _signal_while_stuck(self, stuck: float) -> None:
        """Act on a signal that found the loop stuck, here in the handler.

        The loop acts on signals between iterations, and a stuck one (blocked on a
        database that does not answer: a lock held in another session, a hung
        server) might never get there: the worker would not stop for any number of
        Ctrl+C. The first signal is only acknowledged; running jobs go on. A second
        stops the worker without the database: its jobs are ended here and the
        process exits. Nothing can be recorded, so the jobs are taken back by
        another worker (or the next `worker start`) once their leases run out.
        """
        if self._flags.signals < 2:
            if not self._stuck_said:
                self._stuck_said = True
                going_on = "; running jobs go on" if self._running else ""
                self._event(
                    "stopping once the database answers (it has not for "
                    f"{format_seconds(stuck)}){going_on} (Ctrl+C again to stop now without it)"
                )
            return
        self._abandoning = True
        ended = self.executor.end_all_now()
        parts = [f"stopping now without the database (no answer for {format_seconds(stuck)})"]
        if ended:
            parts.append(
                f"ended {ended} running job(s): another worker takes them back once their "
                f"leases run out (within {format_seconds(self.settings.lease_timeout)})"
            )
        if self._unrecorded:
            # PostgreSQL may yet carry out a record it had received before we left.
            parts.append(
                f"the outcome of {len(self._unrecorded)} ended run(s) may not be recorded: "
                "those jobs may run again"
            )
        self._event("; ".join(parts))
        self._terminal.close(TERMINAL_FLUSH)
        # Not an exception: unwinding through the driver's wait could block again
        # (psycopg cancels the query on the way out, through the same server).
        os._exit(1)

    def _wake(self) -> None:
        # A full pipe already wakes the loop; a closed one means we are done.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _echo_line(self, key: str, line: bytes) -> None:
        if self.quiet:
            return
        job_id = key.rpartition("#")[0]
        text = line.decode("utf-8", "replace")
        # A piece of a very long line comes without its newline: the next line shown,
        # maybe another job's, must not be glued to it.
        self._terminal.write(
            0, f"[{job_id}] {text}" if text[-1:] == "\n" else f"[{job_id}] {text}\n"
        )

    def _event(self, message: str, job_id: str | None = None) -> None:
        if self.quiet and job_id is not None:
            return
        self._terminal.write(1, f"queuectl: {message}\n")
