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
