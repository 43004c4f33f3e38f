"""The session store: one HDF5 file per session, the only module that touches h5py.

Design, for crash safety (SPEC §7):
- Every write is a *transaction*: the committed file is copied to a temporary file beside it,
  the changes are applied there, the copy is flushed and fsynced, then atomically renamed over
  the original. A crash or ``kill -9`` at any point leaves either the old or the new file, never
  a half-written one, so a session always opens and resumes from its last committed step.
- One writer at a time: a writer holds an exclusive ``flock`` on ``<file>.lock`` for its whole
  life (released by the kernel if the process dies). A second writer gets :class:`SessionLocked`
  naming the holder's pid. Readers never lock: they only ever see committed files.
- Reads open the file briefly and never load large arrays unless asked, so ``salve info`` stays
  fast on sessions with large activation matrices.

Layout: root attrs ``format``, ``schema_version``, ``created``, ``updated``; JSON documents
(config, stages, summary, ...) are scalar string datasets under ``json/``; arrays live under
slash-separated keys (``backbone/state_dict/fc.weight``, ``activations/test/a``, ...).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.config import SessionConfig

FORMAT_NAME = "salve-tui session"
SCHEMA_VERSION = 1
SESSION_SUFFIX = ".h5"
DEFAULT_SESSIONS_DIR = "sessions"
PIPELINE_STAGES = ("data", "backbone", "activations", "sae", "rankings")
STAGE_STATES = ("pending", "partial", "done", "failed", "stale")
REPACK_MIN_BYTES = 8 << 20  # repack after a transaction that freed more than this


class SessionError(Exception):
    """A session problem with a message that names it and says what to do."""


class SessionLocked(SessionError):
    """Another process holds the session for writing."""


class SessionCorrupt(SessionError):
    """The file is not a readable salve-tui session."""


class SessionTooNew(SessionError):
    """The file was written by a newer schema than this version understands."""


# --------------------------------------------------------------------------- locations


def sessions_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder for sessions: explicit flag, then ``SALVE_SESSIONS``, then ``./sessions``."""
    return Path(override or os.environ.get("SALVE_SESSIONS") or DEFAULT_SESSIONS_DIR)


def resolve_session_path(name_or_path: str | os.PathLike, folder: Path | None = None) -> Path:
    """A bare name means ``<sessions dir>/<name>.h5``; anything with a slash or suffix is a path."""
    text = str(name_or_path)
    if os.sep in text or text.endswith(SESSION_SUFFIX) or Path(text).exists():
        return Path(text)
    return (folder or sessions_dir()) / f"{text}{SESSION_SUFFIX}"


def exports_dir(session_path: Path) -> Path:
    """Exports live in a folder beside the session file: ``<name>.exports/``."""
    return session_path.with_name(session_path.stem + ".exports")


@dataclass
class StageState:
    """Committed state of one pipeline stage."""

    state: str = "pending"
    message: str = ""
    updated: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "message": self.message, "updated": self.updated, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageState:
        return cls(d.get("state", "pending"), d.get("message", ""), d.get("updated", 0.0), d.get("info", {}))


# --------------------------------------------------------------------------- file helpers


def _open_checked(path: Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file and verify it is a session of a schema we understand."""
    if not path.exists():
        raise SessionError(
            f"session file {path} does not exist; create it with `salve new` or list sessions with `salve list`"
        )
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise SessionCorrupt(
            f"{path} is not a readable HDF5 file ({exc.__class__.__name__}: {exc}). It may be truncated or "
            "not a session; move it aside and recreate the session with `salve new`."
        ) from exc
    fmt = f.attrs.get("format")
    if fmt != FORMAT_NAME:
        f.close()
        raise SessionCorrupt(
            f"{path} is an HDF5 file but not a salve-tui session (no '{FORMAT_NAME}' marker); "
            "pass a session created by `salve new`"
        )
    version = int(f.attrs.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        f.close()
        raise SessionTooNew(
            f"{path} uses session schema {version}, newer than this salve-tui understands "
            f"({SCHEMA_VERSION}); upgrade salve-tui to open it"
        )
    return f


def _delete(f: h5py.File, key: str) -> int:
    """Delete ``key`` and return the bytes its datasets occupied (space HDF5 will not give back)."""
    if key not in f:
        return 0
    obj = f[key]
    freed = 0
    if isinstance(obj, h5py.Dataset):
        freed = obj.id.get_storage_size()
    else:
        sizes: list[int] = []
        obj.visititems(lambda _n, o: sizes.append(o.id.get_storage_size()) if isinstance(o, h5py.Dataset) else None)
        freed = sum(sizes)
    del f[key]
    return freed


def _write_json(f: h5py.File, key: str, obj: Any) -> None:
    name = f"json/{key}"
    if name in f:
        del f[name]
    f.create_dataset(name, data=json.dumps(obj, sort_keys=True, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read_json(f: h5py.File, key: str, default: Any = None) -> Any:
    name = f"json/{key}"
    if name not in f:
        return default
    raw = f[name][()]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _write_array(f: h5py.File, key: str, value: np.ndarray) -> int:
    freed = _delete(f, key)
    value = np.asarray(value)
    if value.dtype.kind == "U":
        value = value.astype(h5py.string_dtype())
        f.create_dataset(key, data=value)
        return freed
    compress = value.nbytes > (1 << 16) and value.dtype.kind in "biu"
    f.create_dataset(key, data=value, compression="gzip" if compress else None)
    return freed


def _read_array(f: h5py.File, key: str) -> np.ndarray:
    ds = f[key]
    data = ds[()]
    if ds.dtype.kind == "O":
        data = np.array([x.decode() if isinstance(x, bytes) else x for x in np.atleast_1d(data)])
    return data


# --------------------------------------------------------------------------- the session


class Transaction:
    """Changes applied to a temporary copy; committed atomically when the block exits cleanly."""

    def __init__(self, f: h5py.File, session: Session) -> None:
        self._f = f
        self._session = session
        self.freed_bytes = 0  # space left unused by deletions; the commit repacks when it is large

    def write_array(self, key: str, value: Any) -> None:
        self.freed_bytes += _write_array(self._f, key, np.asarray(value))

    def write_arrays(self, group: str, arrays: dict[str, Any]) -> None:
        self.freed_bytes += _delete(self._f, group)
        for name, value in arrays.items():
            _write_array(self._f, f"{group}/{name}", np.asarray(value))

    def create_rows(self, key: str, shape: tuple[int, ...], dtype: Any) -> None:
        """Preallocate an array filled in row blocks by later transactions (resumable streams)."""
        self.freed_bytes += _delete(self._f, key)
        self._f.create_dataset(key, shape=shape, dtype=dtype)

    def write_rows(self, key: str, start: int, value: np.ndarray) -> None:
        self._f[key][start : start + len(value)] = value

    def write_json(self, key: str, obj: Any) -> None:
        _write_json(self._f, key, obj)

    def update_json(self, key: str, **changes: Any) -> None:
        doc = _read_json(self._f, key, {}) or {}
        doc.update(changes)
        _write_json(self._f, key, doc)

    def delete(self, key: str) -> None:
        self.freed_bytes += _delete(self._f, key) + _delete(self._f, f"json/{key}")

    def has(self, key: str) -> bool:
        return key in self._f

    def set_stage(self, stage: str, state: str, message: str = "", **info: Any) -> None:
        if state not in STAGE_STATES:
            raise ValueError(f"unknown stage state {state!r}")
        stages = _read_json(self._f, "stages", {}) or {}
        stages[stage] = StageState(state, message, time.time(), info).to_dict()
        _write_json(self._f, "stages", stages)


class Session:
    """Handle on one session file. Open with :meth:`create` or :meth:`open`; use as a context manager."""

    def __init__(self, path: Path, read_only: bool) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock_fd: int | None = None

    # ----- lifecycle

    @classmethod
    def create(cls, path: str | os.PathLike, config: SessionConfig, overwrite: bool = False) -> Session:
        """Create a new session file holding ``config``; the returned handle is the writer."""
        path = Path(path)
        problems = config.validate()
        if problems:
            raise SessionError("invalid session settings: " + "; ".join(problems))
        if path.exists() and not overwrite:
            raise SessionError(
                f"session {path} already exists; open it (`salve info {path.stem}`) or choose another name"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        session = cls(path, read_only=False)
        session._acquire_lock()
        tmp = session._tmp_path()
        try:
            with h5py.File(tmp, "w") as f:
                now = time.time()
                f.attrs["format"] = FORMAT_NAME
                f.attrs["schema_version"] = SCHEMA_VERSION
                f.attrs["created"] = now
                f.attrs["updated"] = now
                _write_json(f, "config", config.to_dict())
                _write_json(f, "stages", {s: StageState().to_dict() for s in PIPELINE_STAGES})
                _write_json(f, "summary", {})
            _fsync_path(tmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            session.close()
            raise
        return session

    @classmethod
    def open(cls, path: str | os.PathLike, read_only: bool = False) -> Session:
        """Open an existing session; a writer takes the lock and cleans stale temp files."""
        path = Path(path)
        session = cls(path, read_only)
        _open_checked(path).close()  # validates format and schema before locking
        if not read_only:
            session._acquire_lock()
            for stale in path.parent.glob(f".{path.name}.tmp-*"):
                stale.unlink(missing_ok=True)
        return session

    def close(self) -> None:
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

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
        return self.path.with_name(self.path.name + ".lock")

    def _tmp_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")

    def _acquire_lock(self) -> None:
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SessionLocked(
                f"session {self.path} is open for writing in another process (pid {holder}); "
                "close it there first, or inspect it read-only with `salve info`"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    # ----- writes

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Apply changes atomically (copy, modify, fsync, rename). Nothing is saved on error."""
        if self.read_only or self._lock_fd is None:
            raise SessionError(f"session {self.path} is open read-only; open it as the writer to change it")
        tmp = self._tmp_path()
        shutil.copyfile(self.path, tmp)
        try:
            with h5py.File(tmp, "r+") as f:
                tx = Transaction(f, self)
                yield tx
                f.attrs["updated"] = time.time()
            if tx.freed_bytes > REPACK_MIN_BYTES:
                _repack(tmp)
            _fsync_path(tmp)
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    # ----- reads

    @contextmanager
    def reader(self) -> Iterator[h5py.File]:
        """Raw read access for several reads in one open (read-only h5py file)."""
        f = _open_checked(self.path)
        try:
            yield f
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
                "size_bytes": self.path.stat().st_size,
                "config": config,
                "stages": stages,
                **summary,
            }


def _repack(path: Path) -> None:
    """Rewrite ``path`` compactly: HDF5 never returns the space of deleted datasets to the OS."""
    packed = path.with_name(path.name + ".pack")
    try:
        with h5py.File(path, "r") as src, h5py.File(packed, "w") as dst:
            for name, value in src.attrs.items():
                dst.attrs[name] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(packed, path)
    finally:
        packed.unlink(missing_ok=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_sessions(folder: Path | None = None) -> list[dict[str, Any]]:
    """Short description of each session file in ``folder``; unreadable files are listed with the error."""
    folder = folder or sessions_dir()
    rows: list[dict[str, Any]] = []
    if not folder.is_dir():
        return rows
    for path in sorted(folder.glob(f"*{SESSION_SUFFIX}")):
        try:
            with _open_checked(path) as f:
                config = _read_json(f, "config", {})
                stages = _read_json(f, "stages", {})
                rows.append(
                    {
                        "name": path.stem,
                        "path": str(path),
                        "model": config.get("backbone", {}).get("arch", "?"),
                        "dataset": config.get("data", {}).get("kind", "?"),
                        "stages": {k: v.get("state", "pending") for k, v in stages.items()},
                        "updated": float(f.attrs["updated"]),
                        "warnings": len(_read_json(f, "summary", {}).get("warnings") or []),
                        "error": None,
                    }
                )
        except SessionError as exc:
            rows.append({"name": path.stem, "path": str(path), "error": str(exc)})
    return rows


def delete_session(path: Path) -> None:
    """Delete a session file (refuses while another process writes it) and its lock file."""
    session = Session.open(path)  # takes the lock: refuses if in use
    try:
        path.unlink()
        shutil.rmtree(path.with_name(f"{path.stem}.checkpoints"), ignore_errors=True)
    finally:
        session.close()
        session._lock_path().unlink(missing_ok=True)
