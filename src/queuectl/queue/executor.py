"""The executor: runs shell commands, several at once, and knows nothing of storage.

Each command runs as `/bin/sh -c COMMAND` in a new session (its own process
group), stdin from /dev/null, stdout and stderr merged into one pipe that is
copied to the job's log and handed line by line to an `on_line` callback.

One thread multiplexes everything with poll(2): the output pipes, a pidfd
per process (so a job whose background child keeps the pipe open still
finishes when its shell exits), and an optional wake-up fd. Timeouts use the
monotonic clock. Stopping a job signals the whole group, SIGTERM, then SIGKILL
after a grace period; when a command exits, whatever it left running in its
group is killed too, so no job leaves processes behind.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from os import PathLike

from queuectl.queue.joblog import JobLog
from queuectl.queue.sessions import signal_sessions
from queuectl.record import Record
from queuectl.timeutil import format_seconds

KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a group being stopped
#: Seconds before starting a job watchdog again after a replacement died at once,
#: doubling up to WATCHDOG_RETRY_MAX while they keep dying.
WATCHDOG_RETRY_FIRST = 1.0
WATCHDOG_RETRY_MAX = 30.0
READ_CHUNK = 65536  # bytes per read from a job's output pipe
#: Reads of one job's output per turn of the loop. A job that prints without pause
#: refills its pipe as fast as the loop empties it; unbounded, reading it would keep
#: the loop from the other jobs, from deadlines and from Ctrl+C for as long as the
#: job prints. Bounded, the job waits on its full pipe until the next turn.
READS_PER_TURN = 4
#: Reads after a job's shell ended: more than the largest pipe buffer holds (1 MiB
#: by default), yet bounded, for a process that left the job's group may still write.
READS_AT_EXIT = 32
MAX_LINE = 64 * 1024  # bytes; longer "lines" are passed on in pieces
GATE_CLOSED = 111  # exit code of a shell whose gate closed before its command could run
#: What a terminal (^C, ^\, hang-up) or a `kill -PGID` sends to a whole process group:
#: a shell killed by one of these before its command began is not charged.
GROUP_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTERM})
#: Why a shell could not be started when the worker, not the job, is short of
#: something (descriptors, processes, memory): such a start is not charged.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})

# The job's shell waits on a gate (fd 3) before it runs the command: the worker
# opens it only after the watchdog has been told about the new process group, so
# no job can do anything (kill its own worker, say) that the watchdog could miss.
# If the worker dies first, the gate closes unopened and the shell exits without
# running the command. The gate is a prefix of the job's own script, on its first
# line, so the command is the shell's script exactly as under `sh -c COMMAND`:
# same `$0`, no positional parameters, and the shell's own error messages
# ("/bin/sh: 1: foo: not found"; through `eval` they read "eval: foo: not found").
# dash parses a whole line before it runs any of it, so a command with a syntax
# error ends the shell (exit 2, as under `sh -c`) before the gate is read, having
# run nothing.
# The gate also tells afterwards whether the command began: the executor keeps its
# own copy of the gate's read end, and a newline still in the pipe when the shell
# has exited was never read (see _Run.command_began).
GATE = f"read _ <&3 || exit {GATE_CLOSED}; exec 3<&-; "


class Outcome(Record):
    """How a run ended. `interrupted`: stopped on purpose by `stop()`."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    error: str | None = None
    duration: float = 0.0
    #: The time limit the run exceeded (when `timed_out`): the run itself lasted
    #: longer, by the time its group took to end after SIGTERM.
    time_limit: float | None = None
    #: The shell was killed by a signal before its command began: a signal meant
    #: for the worker's process group (a terminal's Ctrl+C) that reached the shell
    #: in the instant before it left that group. Also `interrupted`.
    killed_before_command: bool = False
    #: The gate stayed shut: the worker was past its lease guard when it started
    #: the shell, so the command never ran. Also `interrupted`.
    not_started: bool = False
    #: The job's output could not be written to its log (a full disk, say). The
    #: job's own result stands: a run that exited 0 succeeded all the same.
    log_error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.error is None and not self.timed_out

    def describe(self) -> str:
        """One line for `last_error` and the worker's terminal."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"timed out after {format_seconds(self.time_limit or self.duration)}"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.exit_code == 127:
            return "command not found (exit code 127)"
        if self.exit_code == 126:
            return "command not executable (exit code 126)"
        return f"exit code {self.exit_code}"


class _Run:
    """One command being run (identity, not value: a key names one run at a time)."""

    __slots__ = (
        "deadline",
        "gate_fd",
        "interrupted",
        "key",
        "kill_at",
        "log",
        "not_started",
        "partial",
        "pid",
        "pidfd",
        "pipe_fd",
        "returncode",
        "started",
        "timed_out",
    )

    def __init__(
        self,
        *,
        key: str,
        pid: int,
        log: JobLog,
        started: float,
        deadline: float | None,
        pipe_fd: int,
        pidfd: int | None,
        gate_fd: int,
        interrupted: bool,
    ) -> None:
        self.key = key
        self.pid = pid  # of /bin/sh; also its process group id (it leads a new session)
        self.log = log
        self.started = started
        self.deadline = deadline
        self.pipe_fd = pipe_fd
        self.pidfd = pidfd
        self.gate_fd = gate_fd  # our copy of the gate's read end (see GATE)
        self.interrupted = interrupted
        self.not_started = interrupted  # only a start past the lease guard begins so
        self.partial = bytearray()
        self.kill_at: float | None = None
        self.timed_out = False
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Reap the shell if it has exited (without blocking); its exit code or None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def command_began(self) -> bool:
        """Whether the shell read its gate (call once, after it has exited).

        Our copy of the gate's write end is closed by then and the shell's copy of
        the read end is gone with it, so this read cannot block: it returns the
        newline the shell never read, or end-of-file.
        """
        try:
            return os.read(self.gate_fd, 1) != b"\n"
        except OSError:
            return True


class Executor:
    """Runs commands concurrently; `poll()` reports the ones that ended."""

    def __init__(
        self,
        on_line: Callable[[str, bytes], None] | None = None,
        *,
        guard: bool = True,
        kill_grace: float = KILL_GRACE,
        clock: Callable[[], float] = time.monotonic,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        """`guard`: start the watchdog so that jobs die with this process.
        `on_notice`: told, in a sentence, of trouble with the watchdog."""
        self._on_line = on_line
        self._on_notice = on_notice
        self._kill_grace = kill_grace
        self._clock = clock
        # poll(2) rather than `selectors`: its bookkeeping per registration and per
        # wake-up was a measurable share of a short job's cost in the worker.
        self._poller = select.poll()
        self._watched: dict[int, _Run | None] = {}  # fd -> its run (None: a wake-up fd)
        self._devnull = os.open(os.devnull, os.O_RDONLY)  # every job's stdin
        self._devnull_w = os.open(os.devnull, os.O_WRONLY)  # the watchdog's output
        self._runs: dict[str, _Run] = {}
        # Encoded once, not for every job (posix_spawn wants bytes).
        self._base_env = {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
        self._watchdog_pid: int | None = None
        self._watchdog_fd = -1  # the watchdog's stdin: lines of "+PGID", "-PGID", ...
        self._watchdog_pidfd: int | None = None  # readable when the watchdog has died
        self._watchdog_started = 0.0  # monotonic
        self._watchdog_replaced = False  # the one running replaced one that died
        self._guard_wanted = guard
        #: With no watchdog (it kept dying): when to try starting one again (monotonic).
        self._watchdog_retry_at: float | None = None
        self._watchdog_backoff = WATCHDOG_RETRY_FIRST
        self._guard_lock = threading.Lock()  # the heartbeat thread writes lease lines too
        self._ended_groups: list[str] = []  # "-PGID" lines not sent to the watchdog yet
        self._guard_until = float("inf")  # monotonic; see guard_lease()
        _withhold_inherited_descriptors()
        if guard:
            self._start_watchdog()

    def _start_watchdog(self) -> None:
        # posix_spawn rather than subprocess.Popen: importing `subprocess` was a
        # measurable share of a worker's start-up. Its own session, so a terminal's
        # Ctrl+C does not reach it; only the pipe is inherited (all else is CLOEXEC).
        read_fd, write_fd = os.pipe()
        try:
            self._watchdog_pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-m", "queuectl.queue.watchdog"],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, read_fd, 0),
                    (os.POSIX_SPAWN_DUP2, self._devnull_w, 1),
                    (os.POSIX_SPAWN_DUP2, self._devnull_w, 2),
                ],
                setsid=True,
            )
        except OSError:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self._watchdog_fd = write_fd
        self._watchdog_started = time.monotonic()
        self._watchdog_pidfd = _pidfd_open(self._watchdog_pid)
        if self._watchdog_pidfd is not None:
            self._poller.register(self._watchdog_pidfd, select.POLLIN)

    @property
    def guarded(self) -> bool:
        """Whether a watchdog stands by (or none was asked for): without one, a job
        outlives this process's death, or runs on while it is frozen, so the worker
        takes no new job until one is back (see _replace_watchdog)."""
        return not self._guard_wanted or self._watchdog_pid is not None

    def _replace_watchdog(self) -> None:
        """The watchdog died on its own (the OOM killer, a stray kill): start another
        and tell it what the dead one knew, or this worker's death would leave its
        jobs running. A replacement that dies within a second is started again only
        after a pause, doubling while they keep dying; until then `guarded` is
        False."""
        assert self._watchdog_pid is not None and self._watchdog_pidfd is not None
        dead_pid = self._watchdog_pid
        quick = self._watchdog_replaced and time.monotonic() - self._watchdog_started < 1.0
        self._poller.unregister(self._watchdog_pidfd)
        os.close(self._watchdog_pidfd)
        self._watchdog_pidfd = None
        with self._guard_lock:  # the heartbeat thread writes to it too
            os.close(self._watchdog_fd)
            self._watchdog_fd = -1
            self._ended_groups = []  # the new one never heard of those groups
        with contextlib.suppress(ChildProcessError):
            os.waitpid(dead_pid, 0)
        self._watchdog_pid = None
        if quick:
            self._retry_watchdog_later(f"the job watchdog (pid {dead_pid}) keeps dying")
            return
        self._watchdog_backoff = WATCHDOG_RETRY_FIRST
        if self._restart_watchdog():
            self._notice(f"the job watchdog (pid {dead_pid}) died; started another")

    def _retry_watchdog_later(self, why: str) -> None:
        pause = self._watchdog_backoff
        self._watchdog_backoff = min(pause * 2, WATCHDOG_RETRY_MAX)
        self._watchdog_retry_at = time.monotonic() + pause
        self._notice(
            f"{why}; running jobs are unguarded and no job is taken until one stays up "
            f"(next try in {format_seconds(pause)})"
        )

    def _restart_watchdog(self) -> bool:
        """Start a watchdog and tell it about every run and the lease guard."""
        self._watchdog_retry_at = None
        try:
            self._start_watchdog()
        except OSError as exc:
            self._retry_watchdog_later(f"cannot start a job watchdog: {exc.strerror}")
            return False
        self._watchdog_replaced = True
        lines = [f"+{run.pid}" for run in self._runs.values()]
        if not math.isinf(self._guard_until):
            lines.append(f"lease {max(self._guard_until - self._clock(), 0.0):.3f}")
        for line in lines:
            self._guard(line)
        return True

    def _notice(self, message: str) -> None:
        if self._on_notice is not None:
            self._on_notice(message)

    # -- starting and stopping ---------------------------------------------------------

    def start(
        self,
        key: str,
        command: str,
        *,
        log_path: str | PathLike[str],
        log_header: str | Callable[[], str],
        env: Mapping[str, str],
        timeout: float | None = None,
    ) -> Outcome | None:
        """Start `command` under `key`. Returns an Outcome at once if it could not start.

        A callable `log_header` is called only if the command prints something.
        A key names one run; starting a key that is still running is a caller bug.
        """
        if key in self._runs:
            raise ValueError(f"run {key!r} is already running")
        log = JobLog(log_path, log_header)
        opened: list[int] = []
        try:
            read_fd, write_fd = os.pipe()
            opened += (read_fd, write_fd)
            gate_r, gate_w = os.pipe()
            opened += (gate_r, gate_w)
            # posix_spawn (vfork + exec) costs half the CPU of subprocess.Popen, which
            # matters for short jobs. Our own descriptors are close-on-exec (PEP 446),
            # so the shell inherits only stdin, stdout, stderr and the gate (fd 3),
            # which it closes before the command runs.
            pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", GATE + command],
                self._job_env(env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self._devnull, 0),
                    (os.POSIX_SPAWN_DUP2, write_fd, 1),
                    (os.POSIX_SPAWN_DUP2, write_fd, 2),
                    (os.POSIX_SPAWN_DUP2, gate_r, 3),
                ],
                setsid=True,
                # Python ignores these for itself; a job gets the defaults, as from a
                # shell (subprocess's restore_signals does the same).
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as exc:
            for fd in opened:
                os.close(fd)
            log.close()
            # Out of descriptors, processes or memory: the worker's trouble, and
            # passing. Given back uncharged; anything else (no /bin/sh) is charged,
            # so a shell that can never start ends in the DLQ, not retried for ever.
            return Outcome(
                error=f"cannot start /bin/sh: {exc.strerror}",
                interrupted=exc.errno in _EXHAUSTED,
            )
        os.close(write_fd)
        self._guard(f"+{pid}")
        # Past the lease guard (this worker was frozen since its last renewal), the
        # job may already be someone else's: leave the gate shut, so it never runs.
        late = self._clock() >= self._guard_until
        if not late:
            with contextlib.suppress(OSError):  # the shell is gone already: reaped below
                os.write(gate_w, b"\n")
        os.close(gate_w)
        os.set_blocking(read_fd, False)
        pidfd = _pidfd_open(pid)
        now = self._clock()
        run = _Run(
            key=key,
            pid=pid,
            log=log,
            started=now,
            deadline=None if timeout is None else now + timeout,
            pipe_fd=read_fd,
            pidfd=pidfd,
            gate_fd=gate_r,
            interrupted=late,
        )
        self._runs[key] = run
        self._watch(read_fd, run)
        if pidfd is not None:
            self._watch(pidfd, run)
        return None

    def _job_env(self, extra: Mapping[str, str]) -> dict[bytes, bytes]:
        env = self._base_env.copy()
        for name, value in extra.items():
            env[name.encode("utf-8", "surrogateescape")] = value.encode("utf-8", "surrogateescape")
        return env

    def _watch(self, fd: int, run: _Run | None) -> None:
        self._poller.register(fd, select.POLLIN)
        self._watched[fd] = run

    def _unwatch(self, fd: int) -> None:
        self._poller.unregister(fd)
        del self._watched[fd]

    def stop(self, key: str, *, grace: float | None = None) -> None:
        """Stop a run: SIGTERM its group now, SIGKILL after `grace` seconds.

        Its Outcome will say `interrupted`.
        """
        self._stop([key], grace)

    def stop_all(self, *, grace: float | None = None) -> None:
        self._stop(list(self._runs), grace)

    def _stop(self, keys: list[str], grace: float | None) -> None:
        runs = [r for r in map(self._runs.get, keys) if r is not None and not r.interrupted]
        kill_at = self._clock() + (self._kill_grace if grace is None else grace)
        for run in runs:
            run.interrupted = True
            run.kill_at = kill_at
        self._signal_sessions(runs, signal.SIGTERM)  # one pass over /proc for them all

    def end_all_now(self, grace: float | None = None) -> int:
        """End every run before this process exits without reporting them.

        For a worker whose loop is stuck (its database does not answer) and that
        was told to stop now: SIGTERM each group, wait up to `grace` seconds for
        the shells to exit, then SIGKILL the groups, leftovers included. Blocks,
        and reports nothing: the runs are left as they are, for the exit. The
        shells are not reaped, so their group ids stay theirs until then.
        Returns how many runs there were.
        """
        runs = list(self._runs.values())
        self._signal_sessions(runs, signal.SIGTERM)
        # The monotonic clock, not self._clock: this waits for real processes.
        deadline = time.monotonic() + (self._kill_grace if grace is None else grace)
        alive = runs
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [run for run in alive if not _has_exited(run.pid)]
        self._signal_sessions(runs, signal.SIGKILL)
        return len(runs)

    def add_wakeup_fd(self, fd: int) -> None:
        """Make `poll()` return when `fd` becomes readable (its data is drained)."""
        self._watch(fd, None)

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._runs)

    # -- the event loop --------------------------------------------------------------------

    def poll(self, timeout: float) -> list[tuple[str, Outcome]]:
        """Wait up to `timeout` seconds for output, exits, deadlines or a wake-up.

        Returns the runs that ended, with their outcomes.
        """
        if self._ended_groups:
            self._guard()  # before sleeping: tell the watchdog which groups ended
        retry_at = self._watchdog_retry_at
        if retry_at is not None and retry_at <= time.monotonic() and self._restart_watchdog():
            self._notice("a new job watchdog is up")
        if self._watchdog_retry_at is not None:
            timeout = min(timeout, max(0.0, self._watchdog_retry_at - time.monotonic()))
        timeout = min(timeout, self._next_deadline_in())
        # poll(2) takes whole milliseconds: round up, or a wait for a deadline would
        # return just before it, with nothing to do, again and again.
        wait_ms = -1 if math.isinf(timeout) else math.ceil(max(timeout, 0.0) * 1000)
        events = self._poller.poll(wait_ms)
        exited: set[_Run] = set()
        for fd, _mask in events:
            if fd == self._watchdog_pidfd:
                self._replace_watchdog()
                continue
            if fd not in self._watched:
                continue  # closed by an earlier event of this round
            run = self._watched[fd]
            if run is None:
                _drain(fd)
            elif fd == run.pipe_fd:
                self._read_output(run)
            else:
                exited.add(run)
        self._enforce_deadlines()
        finished = []
        for run in list(self._runs.values()):
            if run in exited or (run.pidfd is None and run.poll() is not None):
                finished.append((run.key, self._finish(run)))
        return finished

    def _next_deadline_in(self) -> float:
        now = self._clock()
        deadlines = [d for r in self._runs.values() for d in (r.deadline, r.kill_at) if d]
        if any(r.pidfd is None for r in self._runs.values()):
            deadlines.append(now + 0.05)  # no pidfd: poll for exits
        return max(0.0, min(deadlines) - now) if deadlines else float("inf")

    def _enforce_deadlines(self) -> None:
        now = self._clock()
        for run in self._runs.values():
            if run.deadline is not None and now >= run.deadline and not run.timed_out:
                run.timed_out = True
                self._signal_sessions([run], signal.SIGTERM)
                run.kill_at = now + self._kill_grace
            if run.kill_at is not None and now >= run.kill_at:
                self._signal_sessions([run], signal.SIGKILL)
                run.kill_at = None

    def _read_output(self, run: _Run, reads: int = READS_PER_TURN) -> bool:
        """Copy what the pipe holds, in at most `reads` reads; False at end-of-file."""
        for _ in range(reads):
            try:
                data = os.read(run.pipe_fd, READ_CHUNK)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return False
            if not data:
                self._unwatch(run.pipe_fd)
                os.close(run.pipe_fd)
                run.pipe_fd = -1
                return False
            run.log.write(data)
            if self._on_line is not None:
                self._emit_lines(run, data)
        return True

    def _emit_lines(self, run: _Run, data: bytes) -> None:
        assert self._on_line is not None
        run.partial += data
        while True:
            cut = run.partial.find(b"\n")
            if cut < 0:
                if len(run.partial) > MAX_LINE:
                    self._on_line(run.key, bytes(run.partial))
                    run.partial.clear()
                return
            self._on_line(run.key, bytes(run.partial[: cut + 1]))
            del run.partial[: cut + 1]

    def _finish(self, run: _Run) -> Outcome:
        # The shell has exited but is not reaped yet, so its pid (= the group id)
        # cannot be reused: killing the group now hits only what the job left behind.
        # A run being ended (stopped, timed out) loses its whole session; one that
        # ended by itself, its group only: a pass over /proc for every short job
        # would cost more than the job (see queuectl.queue.sessions).
        if run.interrupted or run.timed_out:
            self._signal_sessions([run], signal.SIGKILL)
        else:
            self._signal_group(run, signal.SIGKILL)
        returncode = run.poll()
        if returncode is None:  # still running (close() killed it): wait for it
            _, status = os.waitpid(run.pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        # Sent with the next write (a start, or before poll() sleeps): the group is
        # dead and reaped, so there is no hurry, and one write per job is cheaper.
        with self._guard_lock:  # _guard() swaps the list from the heartbeat thread too
            self._ended_groups.append(f"-{run.pid}")
        if run.pipe_fd >= 0:
            self._read_output(run, READS_AT_EXIT)  # what was written before exit
        if run.pipe_fd >= 0:
            self._unwatch(run.pipe_fd)
            os.close(run.pipe_fd)
            run.pipe_fd = -1
        if run.pidfd is not None:
            self._unwatch(run.pidfd)
            os.close(run.pidfd)
        # A shell killed by a group's signal before it read its gate never ran the
        # command: the signal was meant for the worker's process group (a terminal's
        # Ctrl+C) and came in the instant between the shell's creation and its
        # `setsid`. The run is given back like one stopped on purpose, not charged.
        # Any other early death (a crash, the OOM killer) is charged, so a shell that
        # cannot start at all ends in the DLQ instead of being retried for ever.
        killed_early = returncode < 0 and -returncode in GROUP_SIGNALS and not run.command_began()
        os.close(run.gate_fd)
        if run.partial and self._on_line is not None:
            self._on_line(run.key, bytes(run.partial) + b"\n")
        run.log.close()
        del self._runs[run.key]
        return Outcome(
            exit_code=returncode if returncode >= 0 else None,
            signal=-returncode if returncode < 0 else None,
            timed_out=run.timed_out,
            interrupted=run.interrupted or killed_early,
            not_started=run.not_started,
            log_error=run.log.error,
            duration=self._clock() - run.started,
            time_limit=run.deadline - run.started if run.timed_out and run.deadline else None,
            killed_before_command=killed_early,
        )

    def _signal_group(self, run: _Run, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, sig)

    def _signal_sessions(self, runs: list[_Run], sig: int) -> None:
        """Signal every process of these runs' sessions, in other groups too."""
        if runs:
            signal_sessions([run.pid for run in runs], sig)

    def guard_lease(self, seconds: float) -> None:
        """Tell the watchdog to kill every job unless this is called again within `seconds`.

        The worker calls it after each successful lease renewal, with a deadline
        shortly before its leases expire: a worker that is frozen or cut off from
        the database has its jobs stopped before another worker takes them over,
        so no job ever runs twice at once. A job started after that deadline
        never runs its command (see GATE). Thread-safe.
        """
        self._guard_until = self._clock() + seconds
        self._guard(f"lease {max(seconds, 0.0):.3f}")

    def _guard(self, line: str | None = None) -> None:
        """Send `line` (if any) to the watchdog, after the "-PGID" lines waiting."""
        with self._guard_lock:
            lines = self._ended_groups if line is None else [*self._ended_groups, line]
            self._ended_groups = []
            if self._watchdog_fd < 0:
                return
            # A gone watchdog: jobs still run, they just lose the guard.
            with contextlib.suppress(OSError):
                os.write(self._watchdog_fd, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        """Release everything. Runs still going are killed (callers stop them first)."""
        runs = list(self._runs.values())
        self._signal_sessions(runs, signal.SIGKILL)
        for run in runs:
            self._finish(run)
        if self._watchdog_pidfd is not None:
            self._poller.unregister(self._watchdog_pidfd)
            os.close(self._watchdog_pidfd)
            self._watchdog_pidfd = None
        if self._watchdog_pid is not None:
            self._guard("exit")
            with self._guard_lock:
                os.close(self._watchdog_fd)
                self._watchdog_fd = -1
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self._watchdog_pid, 0)
                self._watchdog_pid = None
        self._watched.clear()
        os.close(self._devnull)
        os.close(self._devnull_w)


def _withhold_inherited_descriptors() -> None:
    """Mark the descriptors this process inherited (beyond 0-2) close-on-exec.

    posix_spawn passes every inheritable descriptor on to each job, so a pipe that
    `worker start`'s parent left open would reach every job, and any daemon a job
    starts would hold it open. This process keeps them; its jobs do not get them
    (as under subprocess's default `close_fds`). Linux's /proc tells which are open.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # e.g. listdir's own, closed by now
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)


def _pidfd_open(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` exits (Linux 5.3+), or None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd


def _has_exited(pid: int) -> bool:
    """Whether child `pid` has exited, without reaping it (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return True


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
