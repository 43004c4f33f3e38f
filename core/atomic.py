"""One rule for every file the tool writes: temp file in the same folder, fsync, rename.

A reader (or a crash, or ``kill -9``) therefore sees either the previous complete file or the
new complete one, never a truncated mix. :func:`atomic_write` is the only way the tool writes a
file outside the session store; the store uses :func:`fsync_path` / :func:`check_free_space`.

Overwriting an existing output is allowed by default for library callers (the TUI asks first);
the CLI sets :func:`overwrite_policy` from ``--force``. Failures become :class:`WriteFailed`
with one message naming the file, the cause and what to do; the temp file is always removed.
"""

from __future__ import annotations

import contextvars
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FREE_SPACE_MARGIN = 16 << 20  # keep this much free beyond what a write needs

_overwrite_allowed: contextvars.ContextVar[bool] = contextvars.ContextVar("overwrite_allowed", default=True)
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


class WriteFailed(Exception):
    """A file could not be written; the message names it and says what to do."""


class OutputExists(WriteFailed):
    """The output file exists and overwriting was not allowed."""


class NotEnoughSpace(WriteFailed):
    """The disk (or quota) is full, or would be by this write."""


@contextmanager
def overwrite_policy(allowed: bool) -> Iterator[None]:
    """Within the block, :func:`atomic_write` refuses existing targets unless ``allowed``."""
    token = _overwrite_allowed.set(allowed)
    try:
        yield
    finally:
        _overwrite_allowed.reset(token)


def overwrite_allowed() -> bool:
    return _overwrite_allowed.get()


def refuse_existing(path: Path, overwrite: bool | None = None) -> None:
    """Raise :class:`OutputExists` when ``path`` exists and overwriting is not allowed."""
    path = Path(path)
    if path.is_dir():
        raise WriteFailed(f"{path} is a folder; give a file name (e.g. {path / 'model.pt'})")
    allowed = overwrite_allowed() if overwrite is None else overwrite
    if path.exists() and not allowed:
        raise OutputExists(f"{path} already exists; pass --force to replace it or choose another name")


def describe_os_error(exc: OSError, path: Path | str, action: str = "write") -> str:
    """One sentence for an OS error on ``path``: what happened and what to do."""
    if exc.errno in _NO_SPACE:
        return f"no space left to {action} {path} ({exc.strerror}); free some disk space and rerun"
    if exc.errno in _READ_ONLY:
        return (f"cannot {action} {path}: {exc.strerror} (the folder is read-only or not yours); "
                "choose a writable location")
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot {action} {path}: the file name is too long; choose a shorter name"
    return f"cannot {action} {path}: {exc.strerror or str(exc).split(' (')[0]}"


def _fail(exc: OSError, path: Path) -> WriteFailed:
    kind = NotEnoughSpace if exc.errno in _NO_SPACE else WriteFailed
    return kind(describe_os_error(exc, path))


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def default_file_mode() -> int:
    """``0o666`` less the umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_free_space(folder: Path, needed: int) -> None:
    """Raise :class:`NotEnoughSpace` when ``folder``'s disk has less than ``needed`` bytes (+ margin)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < needed + FREE_SPACE_MARGIN:
        raise NotEnoughSpace(
            f"not enough free space in {folder}: this write needs about {needed / 1e6:.1f} MB and "
            f"{free / 1e6:.1f} MB are free; free some disk space and rerun"
        )


def temp_path_for(path: Path) -> Path:
    """A fresh, unique temp file beside ``path`` (hidden, named after this pid, removed on failure).

    Temp files of writers that were killed (``kill -9`` skips every cleanup) are removed here,
    the next time the same file is written.
    """
    remove_stale_temps(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _fail(exc, path) from None
    os.close(fd)
    return Path(name)


def remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.<pid>-*.tmp`` beside ``path`` whose writer process no longer runs."""
    prefix = f".{path.name}."
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for candidate in candidates:
        pid_text = candidate.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            candidate.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that needs a file name; renamed on success."""
    path = Path(path)
    refuse_existing(path, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(exc, path.parent) from None
    tmp = temp_path_for(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise _fail(exc, path) from None
    finally:
        tmp.unlink(missing_ok=True)


class _RecordingFile:
    """A file object that remembers the OS error of a failed write or flush, then re-raises it."""

    def __init__(self, raw: IO[Any]) -> None:
        self._raw = raw
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._raw.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self._raw.flush()
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __iter__(self):
        return iter(self._raw)


@contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", overwrite: bool | None = None, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path`` for writing; on success fsync it and rename it over ``path``."""
    with atomic_path(path, overwrite) as tmp:
        handle: _RecordingFile | None = None
        try:
            with open(tmp, mode, **open_kwargs) as raw:
                handle = _RecordingFile(raw)
                yield handle  # type: ignore[misc]
                raw.flush()
                os.fsync(raw.fileno())
        except OSError as exc:
            raise _fail(exc, Path(path)) from None
        except Exception:
            # a writer that turns a failed write into its own error (torch.save: "unexpected
            # pos" from its zip writer on a full disk) still gets one message naming the cause
            if handle is not None and handle.error is not None:
                raise _fail(handle.error, Path(path)) from None
            raise


def write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool | None = None) -> Path:
    with atomic_write(path, "wb", overwrite) as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str, overwrite: bool | None = None) -> Path:
    with atomic_write(path, "w", overwrite, encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(path)


def copy_exclusive(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new file ``dst`` that must not exist: never writes through a link or over a
    file someone placed at ``dst`` (``O_EXCL`` does not follow links)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, default_file_mode())
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb", closefd=False) as target:
            shutil.copyfileobj(source, target, 1 << 20)
    finally:
        os.close(fd)

