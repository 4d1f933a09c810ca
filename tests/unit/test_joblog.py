"""Following a job's log (`logs --follow`) while a run writes it, across rotations."""

from __future__ import annotations

from pathlib import Path

from queuectl.queue.joblog import JobLog, LogFollower, read_log


def test_a_follower_sees_everything_written_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "=== run 1 ===\n", max_bytes=1000)
    follower = LogFollower(path)
    seen = [follower.read_new()]  # before the run printed anything: the file is missing
    assert seen == [b""]
    written = [b"=== run 1 ===\n"]
    for i in range(300):  # about 6 rotations; the follower reads between writes
        line = f"line {i:04d} of the job's output\n".encode()
        log.write(line)
        written.append(line)
        if i % 7 == 0:
            seen.append(follower.read_new())
    log.close()
    seen.append(follower.read_new())
    follower.close()
    assert b"".join(seen) == b"".join(written)
    assert read_log(path) != b"".join(written)  # the log itself kept only the end


def test_a_follower_started_late_begins_with_what_the_log_kept(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "=== run 1 ===\n", max_bytes=100)
    for i in range(10):
        log.write(f"line {i} of some length\n".encode())
    follower = LogFollower(path)
    first = follower.read_new()
    assert first == read_log(path)  # the rotated part, then the current file
    log.write(b"one more line\n")
    assert follower.read_new() == b"one more line\n"
    assert follower.read_new() == b""
    log.close()
    follower.close()


def _lines(first: int, count: int) -> bytes:
    return b"".join(f"{i:08d}\n".encode() for i in range(first, first + count))


def _write_lines(log: JobLog, first: int, stop: int) -> None:
    """Lines `first` to `stop` (excluded), 10 to a write, as a job's output arrives."""
    for start in range(first, stop, 10):
        log.write(_lines(start, 10))


def test_a_follower_that_began_before_the_log_misses_no_rotation(tmp_path: Path) -> None:
    # Found by an audit: the follower began while the job had printed nothing, and
    # the whole first file of the log (rotated away before the next read) was lost.
    path = tmp_path / "job.log"
    follower = LogFollower(path)
    assert follower.read_new() == b""
    log = JobLog(path, "=== run 1 ===\n", max_bytes=1000)
    _write_lines(log, 0, 150)  # 1,350 bytes: one rotation before the next read
    assert follower.read_new() == b"=== run 1 ===\n" + _lines(0, 150)
    assert not follower.may_have_skipped
    log.close()
    follower.close()


def test_two_rotations_between_reads_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "=== run 1 ===\n", max_bytes=1000)
    log.write(_lines(0, 10))
    follower = LogFollower(path)
    assert follower.read_new() == b"=== run 1 ===\n" + _lines(0, 10)
    _write_lines(log, 10, 300)  # about 2,600 bytes: two rotations
    assert follower.read_new() == _lines(10, 290)
    assert follower.may_have_skipped  # (two rotations cannot be told from three)
    log.close()
    follower.close()


def test_more_rotations_between_reads_skip_output_but_never_repeat_it(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "", max_bytes=1000)
    log.write(_lines(0, 10))
    follower = LogFollower(path)
    shown = follower.read_new()
    _write_lines(log, 10, 600)  # about 5,300 bytes: five rotations
    shown += follower.read_new()
    numbers = [int(line) for line in shown.split()]
    assert numbers == sorted(set(numbers))  # in order, none twice
    assert numbers[:10] == list(range(10)) and numbers[-1] == 599
    assert follower.may_have_skipped
    log.close()
    follower.close()
