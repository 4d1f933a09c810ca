"""The executor with real subprocesses: outcomes, process groups, pipes, logs, the watchdog.

Every wait polls with a deadline. "A process survives" means a live (non-zombie)
process: an orphan killed here is reparented to PID 1, which may take a while
to reap it, and a zombie runs no code.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from shlex import quote

import pytest

from queuectl.queue import executor as executor_module
from queuectl.queue import joblog
from queuectl.queue.executor import (
    GATE_CLOSED,
    GROUP_SIGNALS,
    MAX_LINE,
    READ_CHUNK,
    Executor,
    Outcome,
)
from tests.helpers import SignalsBeforeGate, wait_for

# -- /proc helpers ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process, or None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def live_group_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that still run (zombies excluded)."""
    members = []
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] != "Z":
            members.append(pid)
    return members


def group_gone(pgid: int) -> bool:
    """No process of group `pgid` survives: killpg finds nobody, or only zombies remain."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return not live_group_members(pgid)


def children_of(pid: int) -> dict[int, str]:
    """Direct children of `pid` with their state letter (Z = zombie)."""
    found = {}
    for child in _all_pids():
        stat = _proc_stat(child)
        if stat is not None and stat[1] == pid:
            found[child] = stat[0]
    return found


def open_fd_count() -> int:
    # Garbage left by earlier tests in this process (an unclosed file, a Popen) can
    # be collected at any moment and close a descriptor mid-test: collect it first,
    # so that a difference between two counts is the test's own.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def read_pid(path: Path) -> int:
    """Wait until a job has written its pid (`echo $$ > path`) and return it."""
    text = wait_for(
        lambda: path.exists() and path.read_text().strip(), timeout=10, message=f"{path}"
    )
    return int(text)


def kill_group_quietly(pgid: int) -> None:
    """Cleanup after a failed assertion: never leave a test's processes running."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# -- driving the executor ---------------------------------------------------------------------


class Lines:
    """An on_line callback that keeps what it receives."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.pieces: dict[str, list[bytes]] = {}
        self.sizes: list[int] = []
        self.counts: dict[int, int] = {}

    def __call__(self, key: str, data: bytes) -> None:
        self.sizes.append(len(data))
        for byte in (ord("x"), ord("y")):
            self.counts[byte] = self.counts.get(byte, 0) + data.count(byte)
        if self.keep:
            self.pieces.setdefault(key, []).append(data)

    def text(self, key: str) -> str:
        return b"".join(self.pieces.get(key, [])).decode()


def start(
    executor: Executor,
    key: str,
    command: str,
    tmp_path: Path,
    *,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> Path:
    """Start a job that must start; returns its log path."""
    log_path = tmp_path / "logs" / f"{key}.log"
    result = executor.start(
        key,
        command,
        log_path=log_path,
        log_header=f"--- run of {key}\n",
        env=env or {},
        timeout=timeout,
    )
    assert result is None, f"job {key} did not start: {result}"
    return log_path


def run_until_done(executor: Executor, keys: set[str], timeout: float = 15.0) -> dict[str, Outcome]:
    """Poll until every key is reported; each key must be reported exactly once."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, Outcome] = {}
    while set(outcomes) != keys:
        if time.monotonic() > deadline:
            missing = sorted(keys - set(outcomes))
            raise AssertionError(f"timed out after {timeout}s waiting for {missing}")
        for key, outcome in executor.poll(0.1):
            assert key not in outcomes, f"{key} reported twice"
            assert key in keys, f"unexpected key {key}"
            outcomes[key] = outcome
    return outcomes


def run_one(executor: Executor, key: str, timeout: float = 15.0) -> Outcome:
    return run_until_done(executor, {key}, timeout)[key]


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def executor(lines: Lines) -> Iterator[Executor]:
    ex = Executor(lines, guard=False)
    try:
        yield ex
    finally:
        ex.close()


# -- outcomes ---------------------------------------------------------------------------------


def test_exit_zero_succeeds_and_output_is_captured(
    executor: Executor, lines: Lines, tmp_path: Path
) -> None:
    log_path = start(executor, "ok", "echo hello; echo oops >&2", tmp_path)
    outcome = run_one(executor, "ok")
    assert outcome.succeeded
    assert outcome == Outcome(exit_code=0, duration=outcome.duration)
    assert outcome.describe() == "exit code 0"
    assert lines.text("ok") == "hello\noops\n"
    assert joblog.read_log(log_path) == b"--- run of ok\nhello\noops\n"
    assert executor.running == frozenset()


def test_nonzero_exit_is_a_failure_with_its_code(executor: Executor, tmp_path: Path) -> None:
    start(executor, "three", "exit 3", tmp_path)
    outcome = run_one(executor, "three")
    assert not outcome.succeeded
    assert (outcome.exit_code, outcome.signal, outcome.timed_out) == (3, None, False)
    assert not outcome.interrupted
    assert outcome.error is None
    assert outcome.describe() == "exit code 3"


def test_command_not_found_is_127(executor: Executor, tmp_path: Path) -> None:
    log_path = start(executor, "nf", "queuectl-no-such-command-xyz --flag", tmp_path)
    outcome = run_one(executor, "nf")
    assert not outcome.succeeded
    assert outcome.exit_code == 127
    assert outcome.signal is None
    assert "command not found" in outcome.describe()
    assert b"not found" in joblog.read_log(log_path)


@pytest.mark.parametrize(
    "command",
    [
        "queuectl-no-such-command-xyz --flag",
        "echo start; if true; then echo unclosed",  # a syntax error: nothing runs
        "; echo never",
        'echo "$0" "$#" "$*"',
        "cat <<EOF\nhere $((1 + 2))\nEOF\nexit 4",
        "# only a comment",
        'f() { echo "f:$1" >&2; }\nf one; exit 9',
    ],
)
def test_a_job_runs_exactly_as_sh_dash_c_would(
    executor: Executor, tmp_path: Path, command: str
) -> None:
    """Same output (the shell's own error messages included, with no trace of the
    gate) and same exit code as `/bin/sh -c COMMAND`."""
    direct = subprocess.run(
        ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, capture_output=True, check=False
    )
    log_path = start(executor, "same", command, tmp_path)
    outcome = run_one(executor, "same")
    assert outcome.exit_code == direct.returncode
    log = joblog.read_log(log_path) if log_path.exists() else b""
    assert log.removeprefix(b"--- run of same\n") == direct.stdout + direct.stderr


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGUSR1])
def test_killed_by_a_signal_is_recorded_as_that_signal(
    executor: Executor, tmp_path: Path, sig: signal.Signals
) -> None:
    start(executor, "sig", f"kill -{sig.name.removeprefix('SIG')} $$; sleep 5", tmp_path)
    outcome = run_one(executor, "sig")
    assert not outcome.succeeded
    assert outcome.exit_code is None
    assert outcome.signal == sig
    assert not outcome.timed_out
    assert not outcome.interrupted
    assert not outcome.killed_before_command
    assert outcome.describe() == f"killed by {sig.name}"


def test_outcomes_of_concurrent_jobs_are_kept_apart(executor: Executor, tmp_path: Path) -> None:
    start(executor, "a", "exit 0", tmp_path)
    start(executor, "b", "exit 3", tmp_path)
    start(executor, "c", "queuectl-no-such-command-xyz", tmp_path)
    start(executor, "d", "kill -KILL $$", tmp_path)
    outcomes = run_until_done(executor, {"a", "b", "c", "d"})
    assert outcomes["a"].exit_code == 0
    assert outcomes["b"].exit_code == 3
    assert outcomes["c"].exit_code == 127
    assert outcomes["d"].signal == signal.SIGKILL
    assert [o.succeeded for o in (outcomes[k] for k in "abcd")] == [True, False, False, False]


def test_job_sees_its_environment(executor: Executor, lines: Lines, tmp_path: Path) -> None:
    start(
        executor,
        "env",
        'echo "$QUEUECTL_JOB_ID/$QUEUECTL_ATTEMPT"',
        tmp_path,
        env={"QUEUECTL_JOB_ID": "job-7", "QUEUECTL_ATTEMPT": "2"},
    )
    assert run_one(executor, "env").succeeded
    assert lines.text("env") == "job-7/2\n"


# -- process groups, timeouts, stopping ------------------------------------------------------


def test_timeout_kills_the_whole_process_group(executor: Executor, tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    start(executor, "tm", f"echo $$ > {pidfile}; sleep 60 & sleep 60", tmp_path, timeout=0.5)
    pgid = read_pid(pidfile)
    try:

        def running_members() -> list[int]:
            found = live_group_members(pgid)
            return found if len(found) >= 2 else []

        # Without poll() nothing enforces the deadline yet: see the group really running.
        members = wait_for(running_members, message="the job's shell and its sleeps")
        assert pgid in members
        outcome = run_one(executor, "tm", timeout=10)
        assert outcome.timed_out
        assert not outcome.succeeded
        assert not outcome.interrupted
        assert outcome.describe().startswith("timed out after")
        assert outcome.duration < 5
        wait_for(lambda: group_gone(pgid), timeout=10, message=f"process group {pgid} to die")
    finally:
        kill_group_quietly(pgid)


def test_job_ignoring_sigterm_is_sigkilled_after_the_grace(tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    ex = Executor(guard=False, kill_grace=0.3)
    try:
        start(ex, "stubborn", f"trap '' TERM; echo $$ > {pidfile}; sleep 30", tmp_path, timeout=0.2)
        pgid = read_pid(pidfile)
        try:
            outcome = run_one(ex, "stubborn", timeout=10)
            assert outcome.timed_out
            assert outcome.signal == signal.SIGKILL
            # SIGTERM at 0.2 s did nothing; SIGKILL came one grace period later.
            assert 0.45 <= outcome.duration < 5
            # The message names the limit the job exceeded, not the grace added to it.
            assert outcome.time_limit == pytest.approx(0.2)
            assert outcome.describe() == "timed out after 0.2s"
            wait_for(lambda: group_gone(pgid), timeout=10, message="the stubborn group to die")
        finally:
            kill_group_quietly(pgid)
    finally:
        ex.close()


def test_stop_interrupts_the_run(executor: Executor, tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    start(executor, "long", f"echo $$ > {pidfile}; sleep 30 & sleep 30", tmp_path)
    pgid = read_pid(pidfile)
    try:
        assert executor.poll(0) == []
        executor.stop("long")
        outcome = run_one(executor, "long", timeout=10)
        assert outcome.interrupted
        assert not outcome.timed_out
        assert not outcome.succeeded
        assert outcome.signal == signal.SIGTERM
        assert outcome.duration < 5
        wait_for(lambda: group_gone(pgid), timeout=10, message="the stopped group to die")
    finally:
        kill_group_quietly(pgid)


def test_stop_escalates_to_sigkill_after_grace(tmp_path: Path) -> None:
    ex = Executor(guard=False, kill_grace=0.3)
    try:
        pidfile = tmp_path / "pgid"
        start(ex, "stubborn", f"trap '' TERM; echo $$ > {pidfile}; sleep 30", tmp_path)
        pgid = read_pid(pidfile)
        try:
            ex.stop("stubborn")
            outcome = run_one(ex, "stubborn", timeout=10)
            assert outcome.interrupted
            assert outcome.signal == signal.SIGKILL
            assert 0.25 <= outcome.duration < 5
        finally:
            kill_group_quietly(pgid)
    finally:
        ex.close()


def test_end_all_now_ends_every_group_before_an_exit_without_reports(tmp_path: Path) -> None:
    ex = Executor(guard=False, kill_grace=0.3)
    pgids = []
    try:
        # One that ends on SIGTERM, leaving a child behind; one that ignores it.
        start(ex, "polite", f"echo $$ > {tmp_path / 'a'}; sleep 30 & wait", tmp_path)
        start(ex, "stubborn", f"trap '' TERM; echo $$ > {tmp_path / 'b'}; sleep 30", tmp_path)
        pgids = [read_pid(tmp_path / "a"), read_pid(tmp_path / "b")]
        began = time.monotonic()
        assert ex.end_all_now() == 2
        assert time.monotonic() - began < 5  # the grace (0.3 s), then SIGKILL
        for pgid in pgids:
            assert not live_group_members(pgid), f"group {pgid} survived"
        # Not reaped: each shell's pid, and so its group id, stays taken until we exit.
        assert all(_proc_stat(pgid) is not None for pgid in pgids)
    finally:
        for pgid in pgids:
            kill_group_quietly(pgid)
        ex.close()


def test_background_child_holding_the_pipe_does_not_delay_the_job(
    executor: Executor, lines: Lines, tmp_path: Path
) -> None:
    bgfile = tmp_path / "bg"
    log_path = start(executor, "bg", f"sleep 30 & echo $! > {bgfile}; echo done", tmp_path)
    outcome = run_one(executor, "bg", timeout=10)
    bg_pid = int(bgfile.read_text())
    try:
        assert outcome.succeeded
        assert outcome.duration < 5
        assert lines.text("bg") == "done\n"
        assert joblog.read_log(log_path).endswith(b"done\n")
        wait_for(lambda: not is_alive(bg_pid), timeout=10, message="the background sleep to die")
    finally:
        if is_alive(bg_pid):
            os.kill(bg_pid, signal.SIGKILL)


@pytest.fixture
def blocking_stdin() -> Iterator[None]:
    """Make our own fd 0 a pipe nobody writes to, so a job that inherited it would hang."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        yield
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)


@pytest.mark.usefixtures("blocking_stdin")
def test_stdin_is_at_eof(executor: Executor, lines: Lines, tmp_path: Path) -> None:
    start(executor, "cat", "cat; echo after-cat", tmp_path, timeout=3)
    outcome = run_one(executor, "cat", timeout=10)
    assert not outcome.timed_out, "the job waited on stdin"
    assert outcome.succeeded
    assert outcome.duration < 2
    assert lines.text("cat") == "after-cat\n"


def test_job_gets_default_handling_of_sigpipe(
    executor: Executor, lines: Lines, tmp_path: Path
) -> None:
    """Python ignores SIGPIPE for itself; a job must not inherit that, or `yes | head`
    would print "Broken pipe" errors instead of ending quietly as in a terminal."""
    start(executor, "pipe", "grep SigIgn /proc/self/status; yes | head -c 2 >/dev/null", tmp_path)
    assert run_one(executor, "pipe").succeeded
    text = lines.text("pipe")
    ignored = int(text.split("SigIgn:")[1].split()[0], 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{sig.name} is ignored in the job"
    assert "Broken pipe" not in text


def test_a_job_started_past_the_lease_guard_never_runs_its_command(
    executor: Executor, tmp_path: Path
) -> None:
    """A worker frozen since its last lease renewal may have lost its jobs: what it
    starts when it wakes up stays behind the shell's gate and never runs."""
    marker = tmp_path / "ran"
    executor.guard_lease(0.0)  # the guard's deadline is now
    start(executor, "late", f"touch {quote(str(marker))}", tmp_path)
    outcome = run_one(executor, "late")
    assert outcome.interrupted
    assert outcome.exit_code == GATE_CLOSED
    assert not marker.exists()
    executor.guard_lease(60.0)  # renewed: the next job runs
    start(executor, "in-time", f"touch {quote(str(marker))}", tmp_path)
    assert run_one(executor, "in-time").succeeded
    assert marker.exists()


@pytest.mark.parametrize("sig", sorted(GROUP_SIGNALS))
def test_a_shell_killed_before_its_command_began_is_interrupted_not_failed(
    lines: Lines, tmp_path: Path, sig: signal.Signals
) -> None:
    """A signal for the worker's process group (a terminal's Ctrl+C) can reach a
    job's shell before it leaves that group: the command never ran, so the run is
    reported as interrupted, and the worker gives the job back uncharged."""
    marker = tmp_path / "ran"
    executor = SignalsBeforeGate(lines, guard=False)
    executor.sig = sig
    try:
        start(executor, "early", f"touch {quote(str(marker))}", tmp_path)
        outcome = run_one(executor, "early")
    finally:
        executor.close()
    assert outcome.signal == sig
    assert outcome.interrupted
    assert outcome.killed_before_command
    assert not marker.exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
def test_a_shell_that_crashes_before_its_command_began_is_charged(
    lines: Lines, tmp_path: Path, sig: signal.Signals
) -> None:
    """Only a signal meant for the worker's process group makes an early death
    uncharged. A shell that crashes, or that the OOM killer takes, before its
    command began fails as usual: a shell that can never start ends in the DLQ
    through the retries, instead of going back to pending for ever."""
    executor = SignalsBeforeGate(lines, guard=False)
    executor.sig = sig
    try:
        start(executor, "crash", "true", tmp_path)
        outcome = run_one(executor, "crash")
    finally:
        executor.close()
    assert outcome.signal == sig
    assert not outcome.interrupted
    assert not outcome.killed_before_command
    assert not outcome.succeeded


def test_descriptors_the_worker_inherited_do_not_reach_jobs(lines: Lines, tmp_path: Path) -> None:
    """A pipe left open by whoever started the worker must not reach its jobs (a job's
    daemon would hold it open for ever); the worker itself keeps it."""
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # as a parent's descriptor arrives
    executor = Executor(lines, guard=False)
    try:
        start(executor, "fds", "ls /proc/$$/fd", tmp_path)
        assert run_one(executor, "fds").succeeded
    finally:
        executor.close()
        os.close(read_end)
        os.close(write_end)  # still open here: only its inheritance was withheld
    listed = {int(name) for name in lines.text("fds").split()}
    assert {0, 1, 2} <= listed
    assert write_end not in listed


def test_the_command_runs_as_under_sh_c(executor: Executor, lines: Lines, tmp_path: Path) -> None:
    """The gate around the command changes nothing it can see: no positional
    parameters, $0 is /bin/sh, fd 3 is closed, and `exit` ends the job."""
    command = 'echo "$0 $# [$1]"; [ -e /proc/$$/fd/3 ] && echo fd3-open || echo fd3-closed; exit 7'
    start(executor, "args", command, tmp_path)
    assert run_one(executor, "args").exit_code == 7
    assert lines.text("args") == "/bin/sh 0 []\nfd3-closed\n"


def test_partial_last_line_is_delivered(executor: Executor, lines: Lines, tmp_path: Path) -> None:
    start(executor, "nl", "printf 'one\\ntwo'", tmp_path)
    assert run_one(executor, "nl").succeeded
    assert lines.pieces["nl"] == [b"one\n", b"two\n"]


# -- volume -----------------------------------------------------------------------------------


def test_ten_megabytes_on_both_streams(tmp_path: Path) -> None:
    counter = Lines(keep=False)
    ex = Executor(counter, guard=False)
    size = 10_000_000
    try:
        log_path = start(
            ex,
            "big",
            f"head -c {size} /dev/zero | tr '\\0' x; head -c {size} /dev/zero | tr '\\0' y >&2",
            tmp_path,
        )
        outcome = run_one(ex, "big", timeout=40)
    finally:
        ex.close()
    assert outcome.succeeded, outcome.describe()
    assert outcome.error is None
    # Everything reached the callback, in bounded pieces.
    assert counter.counts == {ord("x"): size, ord("y"): size}
    assert max(counter.sizes) <= MAX_LINE + READ_CHUNK
    assert len(counter.sizes) >= 2 * size // (MAX_LINE + READ_CHUNK)
    # The log kept only the latest output, bounded.
    rotated = log_path.with_name(log_path.name + ".1")
    assert log_path.stat().st_size <= joblog.LOG_MAX_BYTES
    assert rotated.stat().st_size <= joblog.LOG_MAX_BYTES
    kept = joblog.read_log(log_path)
    assert joblog.LOG_MAX_BYTES <= len(kept) <= 2 * joblog.LOG_MAX_BYTES
    assert kept.endswith(b"y" * 100_000)
    assert set(kept) == {ord("y")}  # the x's came first and were rotated away
    assert joblog.output_was_cut(log_path)


def test_a_log_says_whether_the_start_of_its_output_was_dropped(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "j.log"
    log = joblog.JobLog(path, "head\n", max_bytes=100)
    log.write(b"a" * 90)
    log.write(b"b" * 60)  # rotates once: the two files still hold everything
    assert joblog.read_log(path) == b"head\n" + b"a" * 90 + b"b" * 60
    assert not joblog.output_was_cut(path)
    log.write(b"c" * 60)
    log.write(b"d" * 60)  # rotates again: the first file is replaced
    log.close()
    assert joblog.read_log(path) == b"c" * 60 + b"d" * 60
    assert joblog.output_was_cut(path)


@contextlib.contextmanager
def alarm(seconds: int, message: str) -> Iterator[None]:
    """Fail (instead of hanging) if the block is still running after `seconds`."""

    def expire(signum: int, frame: object) -> None:
        raise AssertionError(message)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_job_that_prints_without_pause_does_not_hold_up_the_loop(tmp_path: Path) -> None:
    """`yes` refills its pipe as fast as the loop empties it (the loop hands every
    line on): reading it until the pipe is empty never ends, and poll() would
    never return to report the other job, enforce the deadline or see a Ctrl+C."""
    ex = Executor(Lines(keep=False), guard=False)
    try:
        start(ex, "noisy", "yes", tmp_path, timeout=1.0)
        start(ex, "quick", "sleep 0.2", tmp_path)
        with alarm(30, "poll() did not return while a job printed without pause"):
            quick = run_one(ex, "quick", timeout=30)
            assert "noisy" in ex.running  # reported while the noisy job still ran
            noisy = run_one(ex, "noisy", timeout=30)
    finally:
        ex.close()
    assert quick.succeeded, quick.describe()
    assert noisy.timed_out, noisy.describe()


# -- failures to start ------------------------------------------------------------------------


@pytest.mark.parametrize("depth", ["parent", "grandparent"])
def test_an_unopenable_log_is_reported_and_the_jobs_result_stands(
    executor: Executor, tmp_path: Path, depth: str
) -> None:
    """The log is created at the first output; if it cannot be, the outcome says so,
    but a run that exited 0 succeeded: failing it would run its side effects again."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where a directory should be\n")
    log_path = blocker / "job.log" if depth == "parent" else blocker / "logs" / "job.log"
    executor.start("nolog", "echo lost", log_path=log_path, log_header="h\n", env={})
    result = run_one(executor, "nolog")
    assert result.exit_code == 0
    assert result.succeeded
    assert result.error is None
    assert result.log_error is not None
    assert "cannot write the job's log" in result.log_error
    assert str(log_path) in result.log_error
    assert executor.running == frozenset()


def test_a_silent_job_needs_no_log(executor: Executor, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where a directory should be\n")
    executor.start("quiet", "true", log_path=blocker / "q.log", log_header="h\n", env={})
    result = run_one(executor, "quiet")
    assert result.succeeded
    assert result.error is None


def test_a_log_write_failure_is_reported_and_output_is_still_drained(
    executor: Executor, lines: Lines, tmp_path: Path
) -> None:
    # A log on a full disk: every write fails with ENOSPC.
    log_path = tmp_path / "logs" / "full.log"
    log_path.parent.mkdir()
    log_path.symlink_to("/dev/full")
    start(
        executor, "full", "head -c 2000000 /dev/zero | tr '\\0' z; echo; echo end; exit 3", tmp_path
    )
    outcome = run_one(executor, "full", timeout=20)
    assert outcome.exit_code == 3
    assert outcome.describe() == "exit code 3"  # the job's own result
    assert outcome.log_error is not None
    assert "cannot write the job's log" in outcome.log_error
    assert "No space left" in outcome.log_error
    assert lines.text("full").endswith("\nend\n")  # the pipe kept being read


def test_log_is_private_even_with_a_permissive_umask(executor: Executor, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        log_path = start(executor, "priv", "echo secret", tmp_path)
        assert run_one(executor, "priv").succeeded
    finally:
        os.umask(old)
    assert log_path.parent.stat().st_mode & 0o777 == 0o700
    assert log_path.stat().st_mode & 0o777 == 0o600


def test_shell_that_cannot_be_spawned_is_an_error_outcome(
    executor: Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fork(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    fds_before = open_fd_count()
    monkeypatch.setattr(os, "posix_spawn", no_fork)
    result = executor.start(
        "nofork", "true", log_path=tmp_path / "logs" / "nofork.log", log_header="h\n", env={}
    )
    monkeypatch.undo()
    assert result is not None
    assert result.error == f"cannot start /bin/sh: {os.strerror(errno.EAGAIN)}"
    assert not result.succeeded
    assert executor.running == frozenset()
    assert open_fd_count() == fds_before  # the pipe made for it was closed again


# -- without pidfd (kernels before 5.3): exits are found by polling ---------------------


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "_pidfd_open", lambda pid: None)


@pytest.mark.usefixtures("no_pidfd")
def test_without_pidfd_background_child_does_not_delay_the_job(
    executor: Executor, lines: Lines, tmp_path: Path
) -> None:
    bgfile = tmp_path / "bg"
    start(executor, "bg", f"sleep 30 & echo $! > {bgfile}; echo done", tmp_path)
    outcome = run_one(executor, "bg", timeout=10)
    bg_pid = int(bgfile.read_text())
    try:
        assert outcome.succeeded
        assert outcome.duration < 5
        assert lines.text("bg") == "done\n"
        wait_for(lambda: not is_alive(bg_pid), timeout=10, message="the background sleep to die")
    finally:
        if is_alive(bg_pid):
            os.kill(bg_pid, signal.SIGKILL)


@pytest.mark.usefixtures("no_pidfd")
def test_without_pidfd_timeout_kills_the_group(executor: Executor, tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    start(executor, "tm", f"echo $$ > {pidfile}; sleep 60 & sleep 60", tmp_path, timeout=0.3)
    pgid = read_pid(pidfile)
    try:
        outcome = run_one(executor, "tm", timeout=10)
        assert outcome.timed_out
        wait_for(lambda: group_gone(pgid), timeout=10, message=f"process group {pgid} to die")
    finally:
        kill_group_quietly(pgid)


@pytest.mark.usefixtures("no_pidfd")
def test_without_pidfd_outcomes_are_distinct(executor: Executor, tmp_path: Path) -> None:
    start(executor, "a", "exit 0", tmp_path)
    start(executor, "b", "exit 3", tmp_path)
    start(executor, "c", "kill -KILL $$", tmp_path)
    outcomes = run_until_done(executor, {"a", "b", "c"})
    assert (outcomes["a"].exit_code, outcomes["b"].exit_code) == (0, 3)
    assert outcomes["c"].signal == signal.SIGKILL


# -- resources --------------------------------------------------------------------------------


def test_many_quick_jobs_leave_no_zombies_or_fds(tmp_path: Path) -> None:
    me = os.getpid()
    children_before = set(children_of(me))
    fds_before = open_fd_count()
    ex = Executor(guard=False)
    try:
        pending = [f"job{i}" for i in range(200)]
        outcomes: dict[str, Outcome] = {}
        deadline = time.monotonic() + 40
        while pending or ex.running:
            assert time.monotonic() < deadline, "200 quick jobs took too long"
            while pending and len(ex.running) < 20:
                key = pending.pop()
                start(ex, key, "exit 0" if int(key[3:]) % 2 else "true", tmp_path)
            for key, outcome in ex.poll(0.1):
                outcomes[key] = outcome
        assert len(outcomes) == 200
        assert all(o.succeeded for o in outcomes.values())
        # Every job was reaped as it was reported: no zombie children.
        leftover = {pid: st for pid, st in children_of(me).items() if pid not in children_before}
        assert leftover == {}
    finally:
        ex.close()
    assert set(children_of(me)) <= children_before
    assert open_fd_count() == fds_before


# -- the watchdog -----------------------------------------------------------------------------

_GUARDED_WORKER = r"""
import sys, time
from pathlib import Path
from queuectl.queue.executor import Executor

tmp = Path(sys.argv[1])
pidfile = tmp / "job.pid"
ex = Executor(guard=True)
started = ex.start(
    "job",
    f"echo $$ > {pidfile}; sleep 60 & sleep 60",
    log_path=tmp / "logs" / "job.log",
    log_header="run\n",
    env={},
)
assert started is None, started
deadline = time.monotonic() + 10
while not (pidfile.exists() and pidfile.read_text().strip()):
    assert time.monotonic() < deadline, "the job never wrote its pid"
    ex.poll(0.05)
print("ready", ex._watchdog_pid, flush=True)
sys.stdin.read()  # block until killed
"""


def test_watchdog_kills_the_jobs_of_a_killed_worker(tmp_path: Path) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", _GUARDED_WORKER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    pgid: int | None = None
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline().decode().split()
        if not line:
            worker.kill()
            _, err = worker.communicate(timeout=10)
            raise AssertionError(f"the guarded worker failed: {err.decode()}")
        assert line[0] == "ready"
        watchdog_pid = int(line[1])
        pgid = int((tmp_path / "job.pid").read_text())
        assert pgid in live_group_members(pgid)
        assert is_alive(watchdog_pid)

        worker.kill()
        worker.communicate(timeout=10)
        assert worker.returncode == -signal.SIGKILL

        wait_for(lambda: group_gone(pgid), timeout=10, message=f"the dead worker's group {pgid}")
        wait_for(lambda: not is_alive(watchdog_pid), timeout=10, message="the watchdog to exit")
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate(timeout=10)
        if pgid is not None:
            kill_group_quietly(pgid)


def test_clean_close_leaves_no_watchdog(tmp_path: Path) -> None:
    me = os.getpid()
    before = set(children_of(me))
    fds_before = open_fd_count()
    ex = Executor(guard=True)
    try:
        watchdogs = set(children_of(me)) - before
        assert len(watchdogs) == 1, watchdogs  # the watchdog runs while the executor does
        (watchdog_pid,) = watchdogs
        cmdline = Path(f"/proc/{watchdog_pid}/cmdline").read_bytes()
        assert b"queuectl.queue.watchdog" in cmdline
        start(ex, "quick", "echo hi", tmp_path)
        assert run_one(ex, "quick").succeeded
        assert is_alive(watchdog_pid)
    finally:
        ex.close()
    assert _proc_stat(watchdog_pid) is None  # exited and reaped by close()
    assert set(children_of(me)) <= before
    assert open_fd_count() == fds_before


# -- bookkeeping ------------------------------------------------------------------------------


def test_starting_a_key_that_is_still_running_is_refused(
    executor: Executor, tmp_path: Path
) -> None:
    """A key names one run; a second start must not orphan the first (its process,
    pipe and pidfd would leak and poll() would spin on the stale pidfd)."""
    pidfile = tmp_path / "first.pid"
    start(executor, "dup", f"echo $$ > {pidfile}; exec sleep 30", tmp_path)
    first_pgid = read_pid(pidfile)
    try:
        with pytest.raises(ValueError, match="already running"):
            executor.start(
                "dup", "exit 0", log_path=tmp_path / "logs" / "dup.log", log_header="", env={}
            )
        assert executor.running == frozenset({"dup"})
        kill_group_quietly(first_pgid)
        reports: list[Outcome] = []
        deadline = time.monotonic() + 5
        while not reports and time.monotonic() < deadline:
            reports.extend(outcome for key, outcome in executor.poll(0.1) if key == "dup")
        assert len(reports) == 1
        assert executor.running == frozenset()
    finally:
        kill_group_quietly(first_pgid)
