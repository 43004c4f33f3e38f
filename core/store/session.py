"""The session store: a small HDF5 file per session plus its large arrays beside it.

The only package that touches h5py. Design, for crash safety and scale (SPEC §7):
- A session is ``<name>.h5`` (small: JSON documents, small arrays, links) and the folder
  ``<name>.data/`` holding every large array (activations, logits, backbone weights, SAE weights
  and checkpoints) in HDF5 files of its own (:mod:`core.store.arrayfiles`). Each is written once
  and never modified; the small file refers to it with an HDF5 *virtual dataset*, so
  ``h5py.File("<name>.h5")`` and ``h5dump`` show one tree and reads slice it like any array.
- Every change to the small file is a *transaction* (:mod:`core.store.transaction`): the small
  file is copied to a temporary file beside it, the changes are applied there, the copy is fsynced
  and atomically renamed over the original. A crash or ``kill -9`` at any point leaves the old or
  the new small file, and every array file either committed version refers to is complete.
- One writer at a time (:mod:`core.store.lock`). Readers never lock: they only ever see
  committed files.
- Reads open the file briefly and never load large arrays unless asked, so ``salve info`` stays
  fast on sessions with large activation matrices.

Layout: root attrs ``format``, ``schema_version``, ``created``, ``updated``; JSON documents
(config, stages, summary, ...) are scalar string datasets under ``json/``; arrays live under
slash-separated keys (``backbone/state_dict/fc.weight``, ``activations/test/a``, ...).

This module holds :class:`Session`; every public name of the store stays importable from here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import (
    WriteFailed,
    check_free_space,
    copy_exclusive,
    describe_os_error,
    fsync_dir,
    fsync_path,
)
from core.config import SessionConfig
from core.store import lock as writer_lock
from core.store.arrayfiles import (  # noqa: F401 - re-exported
    ARRAY_CHUNK_BYTES,
    ARRAY_FILE_FORMAT,
    EXTERNAL_MIN_BYTES,
    RowBlocks,
    _collect_garbage,
    session_bytes,
)
from core.store.h5io import (
    _check_declared_size,
    _check_sources,
    _disk_full,
    _open_checked,
    _read_array,
    _read_json,
    _without_chunk_cache,
    _write_json,
)
from core.store.layout import (  # noqa: F401 - re-exported
    _UNWRITABLE,
    DATA_SUFFIX,
    DEFAULT_SESSIONS_DIR,
    DIGEST_ATTR,
    FORMAT_NAME,
    LIBVER,
    PIPELINE_STAGES,
    REPACK_MIN_BYTES,
    SCHEMA_VERSION,
    SESSION_SUFFIX,
    SHARDS_ATTR,
    STAGE_STATES,
    SessionCorrupt,
    SessionError,
    SessionLocked,
    SessionReadOnly,
    SessionTooNew,
    StageState,
    data_dir,
    exports_dir,
    lock_path,
    log,
    resolve_session_path,
    sessions_dir,
    tmp_path,
)
from core.store.maintenance import (  # noqa: F401 - re-exported
    _refuse_non_session,
    copy_session,
    delete_session,
    list_sessions,
    name_problems,
    remove_dead_copies,
    remove_tree,
)
from core.store.probe import probe, trust
from core.store.schema import _migrate, _repack
from core.store.transaction import Transaction
from core.store.untrusted import (  # noqa: F401 - re-exported
    SessionUnsafe,
    check_links,
    check_references,
    is_link,
    is_plain_file,
)
from core.store.verify import VerifyReport, require_intact, verify_isolated, verify_session  # noqa: F401 - re-exported


class Session:
    """Handle on one session file. Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = writer_lock.WriterLock()
        self.notices: list[str] = []  # things a front should tell the user (a schema migration)

    # ----- lifecycle

    @classmethod
    def create(cls, path: str | os.PathLike, config: SessionConfig, overwrite: bool = False) -> Session:
        """Create a new session file holding ``config``; the returned handle is the writer."""
        path = Path(path)
        problems = config.validate() + name_problems(path.name)
        if problems:
            raise SessionError("invalid session settings: " + "; ".join(problems))
        if path.exists() and not overwrite:
            raise SessionError(
                f"session {path} already exists; open it (`salve info {path.stem}`) or choose another name"
            )
        if path.exists() or is_link(path):
            _refuse_non_session(path)  # never replaces a file that is not a session, nor a link
        session = cls(path, read_only=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            session._acquire_lock(must_write=True)
        except OSError as exc:
            raise SessionError(describe_os_error(exc, path, "create")) from None
        if overwrite:  # under the lock: another writer of the old session would have refused us
            for folder in (path.with_name(f"{path.stem}.checkpoints"), data_dir(path)):
                remove_tree(folder)
        try:
            check_links(path, writing=True)
        except SessionError:
            session.close()
            raise
        tmp = session._tmp_path()
        try:
            tmp.unlink(missing_ok=True)  # a stale temp, or a link placed there: removed, not followed
            with h5py.File(tmp, "w-", libver=LIBVER) as f:
                now = time.time()
                f.attrs["format"] = FORMAT_NAME
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["created"] = now
                f.attrs["updated"] = now
                f.attrs["session_id"] = uuid.uuid4().hex
                _write_json(f, "config", config.to_dict())
                _write_json(f, "stages", {s: StageState().to_dict() for s in PIPELINE_STAGES})
                _write_json(f, "summary", {})
            fsync_path(tmp)
            os.replace(tmp, path)
            trust(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            session.close()
            raise SessionError(describe_os_error(exc, path, "create")) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            session.close()
            raise
        return session

    @classmethod
    def open(cls, path: str | os.PathLike, read_only: bool = False) -> Session:
        """Open an existing session; a writer takes the lock and cleans stale temp files."""
        path = Path(path)
        check_links(path, writing=not read_only)
        notices: list[str] = []
        if read_only and is_link(path):  # resolved once: its array folder is the target's
            target = Path(os.path.realpath(path))
            notices.append(f"{path} is a symbolic link; reading the session it points to, {target}")
            path = target
            check_links(path, writing=False)
        session = cls(path, read_only)
        session.notices += notices
        if is_plain_file(path):
            probe(path)  # first open of a file this process did not write: in a child process
        with _open_checked(path) as f:  # validates format and schema before locking
            check_references(f, path)  # reads no file that is not the session's own
        if not read_only:
            session._acquire_lock()
            if session._lock_fd is not None:
                for stale in path.parent.glob(f".{path.name}.tmp-*"):
                    remove_tree(stale)  # a link or folder placed there: removed, not followed
                session.notices += remove_dead_copies(path.parent)
                try:
                    _collect_garbage(path)  # array files a crash left behind
                except OSError:
                    pass  # a damaged file is reported by the read that needs it
        return session

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def exports_dir(self) -> Path:
        return exports_dir(self.path)

    def _lock_path(self) -> Path:
        return lock_path(self.path)

    def _tmp_path(self) -> Path:
        return tmp_path(self.path)

    @property
    def session_id(self) -> str:
        """Unique id of this session (fixed at creation): binds checkpoints beside the file to it."""
        with self.reader() as f:
            sid = f.attrs.get("session_id")
            if sid is None:  # sessions created before ids: their creation time is unique enough
                return f"created-{float(f.attrs.get('created', 0.0))!r}"
            return sid.decode() if isinstance(sid, bytes) else str(sid)

    @property
    def unwritable_reason(self) -> str | None:
        """Why nothing can be saved here (the folder cannot hold a lock file), or None."""
        return self._lock.unwritable_reason

    @property
    def _lock_fd(self) -> int | None:
        return self._lock.fd

    def _acquire_lock(self, must_write: bool = False) -> None:
        """Take the writer lock (:func:`core.store.lock.acquire`)."""
        self._lock = writer_lock.acquire(self.path, must_write)

    # ----- writes

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Apply changes atomically (copy, modify, fsync, rename). Nothing is saved on error."""
        if self.unwritable_reason is not None:
            raise SessionReadOnly(
                f"session {self.path} cannot be saved: {self.unwritable_reason}. Copy it to a writable "
                "folder (--sessions-dir), or pass --no-record to compute without saving"
            )
        if self.read_only or self._lock_fd is None:
            raise SessionError(f"session {self.path} is open read-only; open it as the writer to change it")
        tmp = self._tmp_path()
        try:
            check_free_space(self.path.parent, 2 * self.path.stat().st_size)
        except WriteFailed as exc:
            raise SessionError(f"cannot save session {self.name}: {exc}") from None
        tx: Transaction | None = None
        committed = False
        try:
            tmp.unlink(missing_ok=True)  # a stale temp, or a link placed there: removed, not followed
            copy_exclusive(self.path, tmp)
            with h5py.File(tmp, "r+", libver=LIBVER) as f:
                tx = Transaction(f, self.path, clock=lambda: time.time())
                migrated = _migrate(f, tx)
                yield tx
                f.attrs["updated"] = time.time()
            if tx.repack or tx.freed_bytes > REPACK_MIN_BYTES:
                _repack(tmp)
            fsync_path(tmp)  # array files were fsynced, and their folder, as they were written
            os.replace(tmp, self.path)
            committed = True
            trust(self.path)
            fsync_dir(self.path.parent)
            if migrated:
                self.notices.append(migrated)
                log.warning(migrated)
        except OSError as exc:
            if exc.errno in _UNWRITABLE or _disk_full(exc, self.path.parent):
                raise SessionError(
                    f"cannot save session {self.name}: {describe_os_error(exc, self.path)}. "
                    "Nothing was lost: the session keeps its last committed step"
                ) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
            if tx is not None and not committed:
                for path in tx.new_files:  # this transaction's arrays: nothing refers to them
                    path.unlink(missing_ok=True)
        if tx.links_changed:
            _collect_garbage(self.path)

    # ----- reads

    @contextmanager
    def reader(self) -> Iterator[h5py.File]:
        """Raw read access for several reads in one open (read-only h5py file)."""
        f = _open_checked(self.path)
        try:
            yield f
        except OSError as exc:  # HDF5 read errors: a failed checksum or damaged metadata
            raise SessionCorrupt(
                f"session {self.path} could not be read ({exc}); it may be damaged. Run `salve verify "
                f"{self.path}` to list the damaged parts"
            ) from None
        finally:
            f.close()

    def has(self, key: str) -> bool:
        with self.reader() as f:
            return key in f or f"json/{key}" in f

    def read_array(self, key: str) -> np.ndarray:
        with self.reader() as f:
            if key not in f:
                raise KeyError(f"session {self.name} has no '{key}' yet; run the stage that produces it")
            return _read_array(f, key)

    def read_arrays(self, group: str) -> dict[str, np.ndarray]:
        with self.reader() as f:
            if group not in f:
                raise KeyError(f"session {self.name} has no '{group}' yet; run the stage that produces it")
            out: dict[str, np.ndarray] = {}
            f[group].visititems(
                lambda name, obj: out.__setitem__(name, _read_array(f, f"{group}/{name}"))
                if isinstance(obj, h5py.Dataset)
                else None
            )
            return out

    @contextmanager
    def rows(self, key: str) -> Iterator[h5py.Dataset]:
        """A read-only dataset to slice block by block (``ds[i:j]``) without loading it all.

        Out-of-core code reads large arrays (activations, logits) through this; the dataset is
        only valid inside the ``with`` block.
        """
        with self.reader() as f:
            if key not in f:
                raise KeyError(f"session {self.name} has no '{key}' yet; run the stage that produces it")
            _check_sources(f, key, f[key])
            _check_declared_size(f, key, f[key])  # a block loop over 2**32 declared rows: refused
            yield _without_chunk_cache(f, key)

    def array_shape(self, key: str) -> tuple[int, ...] | None:
        with self.reader() as f:
            return tuple(f[key].shape) if key in f else None

    def read_json(self, key: str, default: Any = None) -> Any:
        with self.reader() as f:
            return _read_json(f, key, default)

    @property
    def config(self) -> SessionConfig:
        return SessionConfig.from_dict(self.read_json("config", {}))

    def stages(self) -> dict[str, StageState]:
        raw = self.read_json("stages", {}) or {}
        return {name: StageState.from_dict(d) for name, d in raw.items()}

    def stage_done(self, stage: str) -> bool:
        return self.stages().get(stage, StageState()).state == "done"

    def summary(self) -> dict[str, Any]:
        return self.read_json("summary", {}) or {}

    def overview(self) -> dict[str, Any]:
        """Everything ``salve info`` prints, read from small JSON documents only."""
        with self.reader() as f:
            config = _read_json(f, "config", {})
            stages = _read_json(f, "stages", {})
            summary = _read_json(f, "summary", {})
            return {
                "name": self.name,
                "path": str(self.path),
                "schema_version": int(f.attrs["schema_version"]),
                "created": float(f.attrs["created"]),
                "updated": float(f.attrs["updated"]),
                "size_bytes": session_bytes(self.path),
                "config": config,
                "stages": stages,
                **summary,
            }

