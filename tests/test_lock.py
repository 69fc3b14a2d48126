"""One writer per directory: a second process is refused; a killed holder's lock is taken over.

The holder is a real separate process (a Python child that takes the lock and waits), because
what matters is the kernel's behaviour across processes and after SIGKILL.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cnnvit.errors import CnnvitError
from cnnvit.runs.lock import HOLDER_NAME, RunLock

HOLDER = textwrap.dedent(
    """
    import sys, time
    from cnnvit.runs.lock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("held", flush=True)
    time.sleep(60)
    """
)


def _start_holder(directory: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"  # blocks until the child holds the lock
    return child


def test_second_process_is_refused_and_named(tmp_path: Path) -> None:
    child = _start_holder(tmp_path)
    try:
        with pytest.raises(CnnvitError) as caught:
            RunLock(tmp_path).acquire()
        message = str(caught.value)
        assert "\n" not in message
        assert f"process {child.pid} on {socket.gethostname()}" in message
        assert "wait for it or stop it" in message
    finally:
        child.terminate()
        child.wait(10)


def test_lock_of_a_killed_holder_is_taken_over_as_stale(tmp_path: Path) -> None:
    child = _start_holder(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert (tmp_path / HOLDER_NAME).is_file()  # the dead holder never cleaned up
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.took_over is not None and lock.took_over["pid"] == child.pid
        assert f"process {child.pid}" in (lock.stale_message() or "")
        assert "stale" in (lock.stale_message() or "")
    finally:
        lock.release()
    assert not (tmp_path / HOLDER_NAME).exists()


def test_clean_release_leaves_no_stale_record(tmp_path: Path) -> None:
    with RunLock(tmp_path) as first:
        assert first.held and first.took_over is None
        with pytest.raises(CnnvitError, match="is being written by process"):
            RunLock(tmp_path).acquire()  # a second hold, even from this process, is refused
    again = RunLock(tmp_path).acquire()
    assert again.took_over is None and again.stale_message() is None
    again.release()


def test_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CnnvitError, match="does not exist"):
        RunLock(tmp_path / "absent").acquire()
