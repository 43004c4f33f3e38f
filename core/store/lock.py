"""The writer lock: one writer per session, an exclusive ``flock`` on ``<name>.h5.lock``.

The kernel releases the lock when the process dies, so a crash never leaves a session locked.
The lock file holds the writer's pid, named to a second writer that is refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from core.atomic import describe_os_error
from core.store.layout import _UNWRITABLE, SessionLocked, lock_path
from core.store.untrusted import SessionUnsafe


@dataclass
class WriterLock:
    """A held lock (``fd``), or none and the reason (a folder where no lock file can be created)."""

    fd: int | None = None
    unwritable_reason: str | None = None

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def acquire(session_path: Path, must_write: bool = False) -> WriterLock:
    """Take the writer lock of ``session_path``. In a folder where no lock file can be created
    nothing can be written either: unless ``must_write``, the result then holds only the reason."""
    path = lock_path(session_path)
    try:  # never through a link: the pid written below would truncate whatever it points at
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SessionUnsafe(f"session {session_path} is refused: its lock file {path.name} is a "
                                "symbolic link; remove the link and retry") from None
        if must_write or exc.errno not in _UNWRITABLE:
            raise
        return WriterLock(None, describe_os_error(exc, path, "create the lock file"))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SessionUnsafe(f"session {session_path} is refused: its lock file {path.name} is not a "
                            "plain file; remove it and retry")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SessionLocked(
            f"session {session_path} is open for writing in another process (pid {holder}); "
            "close it there first, or inspect it read-only with `salve info`"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return WriterLock(fd)
