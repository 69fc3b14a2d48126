"""One writer per run or study directory: `RunLock`, a kernel lock with a named holder.

The lock is `filelock.FileLock` on `DIR/.cnnvit.lock` (fcntl `flock` on POSIX): the kernel
releases it when the holding process exits for any reason, SIGKILL and power-off of the process
included, so a lock left behind by a killed process is simply free to take. Beside it a sidecar
`DIR/.cnnvit.lock.json` records the holder (pid, host, start time): it names the holder in the
refusal ("... is being written by process 1234 on host since ...") and, because a clean release
deletes it, a sidecar found by a process that has just won the lock says the previous holder
died holding it (a stale lock that was taken over; `RunLock.took_over` describes it).

On a network file system without working `flock`, filelock falls back to a soft lock file that
the kernel cannot release; there a crashed holder's lock must be removed by hand (the message
says which file).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from ..errors import CnnvitError
from .files import write_atomic

LOCK_NAME = ".cnnvit.lock"
HOLDER_NAME = ".cnnvit.lock.json"


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The sidecar's record, or None if absent or unreadable (a holder mid-write)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
        f"since {holder.get('since', '?')}"
    )


class RunLock:
    """Exclusive right to write `directory` (a run or a study), held until released.

    Use as a context manager, or call `acquire()` / `release()`. Acquiring never waits: a
    directory already held raises `CnnvitError` at once, naming the holder.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.lock_path = self.directory / LOCK_NAME
        self.holder_path = self.directory / HOLDER_NAME
        # Not a singleton and not thread-local: one RunLock object is one hold.
        self._lock = FileLock(self.lock_path, timeout=0, thread_local=False)
        self.took_over: dict[str, Any] | None = None  # the dead holder's record, if stale

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> RunLock:
        """Take the lock or raise one line naming the holder; records a stale takeover."""
        if not self.directory.is_dir():
            raise CnnvitError(f"{self.directory} does not exist: nothing to lock")
        try:
            self._lock.acquire(blocking=False)
        except Timeout:
            holder = _describe(_read_holder(self.holder_path))
            raise CnnvitError(
                f"{self.directory} is being written by {holder}: wait for it or stop it"
            ) from None
        except OSError as err:
            raise CnnvitError(f"cannot lock {self.lock_path}: {err.strerror or err}") from None
        # We hold the kernel lock, so whoever wrote a sidecar still present no longer does:
        # a clean release deletes it, only a process that died holding the lock leaves it.
        self.took_over = _read_holder(self.holder_path)
        write_atomic(self.holder_path, json.dumps(_holder_record()) + "\n")
        return self

    def stale_message(self) -> str | None:
        """One line saying a dead holder's lock was taken over, or None."""
        if self.took_over is None:
            return None
        return (
            f"took over a stale lock on {self.directory}: {_describe(self.took_over)} "
            "stopped without releasing it"
        )

    def release(self) -> None:
        """Give the directory up (the sidecar goes first, so no reader sees it unheld)."""
        if not self._lock.is_locked:
            return
        self.holder_path.unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()
