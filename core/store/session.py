"""The session store: a small HDF5 file per session plus its large arrays beside it.

The only module that touches h5py. Design, for crash safety and scale (SPEC §7):
- A session is ``<name>.h5`` (small: JSON documents, small arrays, links) and the folder
  ``<name>.data/`` holding every large array (activations, logits, backbone weights, SAE weights
  and checkpoints) in HDF5 files of its own. Each is written once, to a temp file that is fsynced
  and renamed, and never modified; the small file refers to it with an HDF5 *virtual dataset*,
  so ``h5py.File("<name>.h5")`` and ``h5dump`` show one tree and reads slice it like any array.
- Every change to the small file is a *transaction*: the small file is copied to a temporary file
  beside it, the changes are applied there, the copy is fsynced and atomically renamed over the
  original. The cost is that of the small file, not of the data. A crash or ``kill -9`` at any
  point leaves the old or the new small file, and every array file either committed version
  refers to is complete, so a session always opens and resumes from its last committed step.
  Array files no committed version refers to (left by a crash, or replaced) are deleted by the
  next writer.
- Activations are written as row shards: each commit adds one shard file and re-points the
  virtual dataset; earlier rows are never rewritten.
- One writer at a time: a writer holds an exclusive ``flock`` on ``<file>.lock`` for its whole
  life (released by the kernel if the process dies). A second writer gets :class:`SessionLocked`
  naming the holder's pid. Readers never lock: they only ever see committed files.
- Reads open the file briefly and never load large arrays unless asked, so ``salve info`` stays
  fast on sessions with large activation matrices.

Layout: root attrs ``format``, ``schema_version``, ``created``, ``updated``; JSON documents
(config, stages, summary, ...) are scalar string datasets under ``json/``; arrays live under
slash-separated keys (``backbone/state_dict/fc.weight``, ``activations/test/a``, ...). Schema 1
kept every array inside the one file; such sessions are read as they are and migrated on their
first write.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import resource
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import (
    WriteFailed,
    atomic_path,
    check_free_space,
    describe_os_error,
    fsync_dir,
    fsync_path,
)
from core.config import SessionConfig

FORMAT_NAME = "salve-tui session"
SCHEMA_VERSION = 2  # 2: large arrays in files of their own under <name>.data/
SESSION_SUFFIX = ".h5"
DATA_SUFFIX = ".data"  # folder beside the session holding its large arrays
ARRAY_FILE_FORMAT = "salve-tui session arrays"
# arrays (or groups written together) this large live in a file of their own; the environment
# variable exists for tests, which lower it to put every array of a tiny session in array files
EXTERNAL_MIN_BYTES = int(os.environ.get("SALVE_ARRAY_FILE_MIN_BYTES", 1 << 20))
SHARDS_ATTR = "shards"  # JSON [[start, stop, file], ...] of a row-sharded group
DEFAULT_SESSIONS_DIR = "sessions"
PIPELINE_STAGES = ("data", "backbone", "activations", "sae", "rankings")
STAGE_STATES = ("pending", "partial", "done", "failed", "stale")
REPACK_MIN_BYTES = 8 << 20  # repack after a transaction that freed more than this
# HDF5 1.8+ formats: superblock, object headers, B-trees and heaps carry checksums of their own
LIBVER = ("v108", "latest")
DIGEST_ATTR = "sha256"  # digest of datasets HDF5 cannot checksum (scalars, strings, JSON)
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
log = logging.getLogger("salve")


class SessionError(Exception):
    """A session problem with a message that names it and says what to do."""


class SessionLocked(SessionError):
    """Another process holds the session for writing."""


class SessionCorrupt(SessionError):
    """The file is not a readable salve-tui session."""


class SessionTooNew(SessionError):
    """The file was written by a newer schema than this version understands."""


class SessionReadOnly(SessionError):
    """The session's folder cannot be written (no lock file, no temp file can be created)."""


# --------------------------------------------------------------------------- locations


def sessions_dir(override: str | os.PathLike | None = None) -> Path:
    """Folder for sessions: explicit flag, then ``SALVE_SESSIONS``, then ``./sessions``."""
    return Path(override or os.environ.get("SALVE_SESSIONS") or DEFAULT_SESSIONS_DIR)


def resolve_session_path(name_or_path: str | os.PathLike, folder: Path | None = None) -> Path:
    """A bare name (no slash) always means ``<sessions dir>/<name>.h5``, whatever the current folder
    holds; only an argument with a slash (``./x.h5``, ``/abs/x.h5``, ``runs/x``) is a path."""
    text = str(name_or_path)
    if "/" in text or os.sep in text:
        return Path(text)
    name = text if text.endswith(SESSION_SUFFIX) else f"{text}{SESSION_SUFFIX}"
    return (folder or sessions_dir()) / name


def exports_dir(session_path: Path) -> Path:
    """Exports live in a folder beside the session file: ``<name>.exports/``."""
    return session_path.with_name(session_path.stem + ".exports")


def data_dir(session_path: Path) -> Path:
    """The session's large arrays live in a folder beside it: ``<name>.data/``."""
    return session_path.with_name(session_path.stem + DATA_SUFFIX)


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
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    ds = f.create_dataset(name, data=text)
    ds.attrs[DIGEST_ATTR] = _digest(text.encode())


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
    try:
        raw = f[name][()]
        text = raw.decode() if isinstance(raw, bytes) else raw
        _check_digest(f, name, text.encode())
        return json.loads(text)
    except SessionCorrupt:
        raise
    except (OSError, ValueError, UnicodeError) as exc:  # JSONDecodeError is a ValueError
        raise _corrupt(f, name, exc) from None


def _write_array(f: h5py.File, key: str, value: np.ndarray) -> int:
    freed = _delete(f, key)
    value = np.asarray(value)
    if value.dtype.kind == "U":
        value = value.astype(h5py.string_dtype())
        _create_checked(f, key, data=value)
        return freed
    compress = value.nbytes > (1 << 16) and value.dtype.kind in "biu"
    _create_checked(f, key, data=value, compression="gzip" if compress else None)
    return freed


def _read_array(f: h5py.File, key: str) -> np.ndarray:
    try:
        ds = f[key]
        _check_sources(f, key, ds)
        data = ds[()]
    except (OSError, RuntimeError, KeyError) as exc:
        raise _corrupt(f, key, exc) from None
    if ds.dtype.kind == "O":
        data = np.array([x.decode() if isinstance(x, bytes) else x for x in np.atleast_1d(data)])
    if DIGEST_ATTR in ds.attrs:
        _check_digest(f, key, _array_bytes(data))
    return data


# --------------------------------------------------------------------------- array files


def _fits_array_file(value: np.ndarray) -> bool:
    """Numeric arrays with rows can live in an array file; strings and scalars stay inline."""
    return value.dtype.kind in "biuf" and value.ndim > 0 and value.size > 0


def _split_external(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(to an array file, inline)``: a group goes out when its numeric arrays are large together."""
    numeric = {name: a for name, a in arrays.items() if _fits_array_file(a)}
    if not numeric or sum(a.nbytes for a in numeric.values()) < EXTERNAL_MIN_BYTES:
        return {}, arrays
    return numeric, {name: a for name, a in arrays.items() if name not in numeric}


def _slug(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in key).strip("-")[:60] or "array"


@dataclass(frozen=True)
class RowBlocks:
    """One array given as consecutive row blocks: written block by block, never concatenated.

    The activation stage hands over its batches this way, so a commit does not first copy a
    whole shard in memory.
    """

    parts: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("RowBlocks needs at least one block")
        tails = {(p.shape[1:], p.dtype) for p in self.parts}
        if len(tails) != 1:
            raise ValueError(f"row blocks differ in shape or dtype: {sorted(map(str, tails))}")

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(len(p) for p in self.parts), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def __len__(self) -> int:
        return self.shape[0]


ARRAY_CHUNK_BYTES = 4 << 20  # rows per chunk in array files: few, large chunks (fletcher32 each)


def _row_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...] | bool:
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    if not shape or shape[0] == 0 or row_bytes > ARRAY_CHUNK_BYTES:
        return True  # let h5py choose
    most = max(1, min(shape[0], ARRAY_CHUNK_BYTES // max(row_bytes, 1)))
    count = -(-shape[0] // most)  # chunks needed; spread the rows evenly so the last is not mostly empty
    return (-(-shape[0] // count), *shape[1:])


def _write_array_file(folder: Path, stem: str, arrays: dict[str, np.ndarray | RowBlocks]) -> Path:
    """Write ``arrays`` into a new file under ``folder`` (temp file, fsync, rename); return it.

    HDF5 does not survive a write failing under it (the process can crash), so every limit that
    can be known is checked first: free space (``Transaction._ensure_space``) and the process's
    file-size limit here. A failure HDF5 reports as an error leaves only the temp file, removed.
    """
    nbytes = sum(a.nbytes for a in arrays.values())
    soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and nbytes + (1 << 20) > soft:
        raise WriteFailed(f"no space left to write an array file of {nbytes / 1e6:.1f} MB under {folder}: "
                          f"this process may write files of at most {soft / 1e6:.1f} MB (ulimit -f); "
                          "raise the limit and rerun")
    final = folder / f"{_slug(stem)}-{uuid.uuid4().hex[:12]}{SESSION_SUFFIX}"
    with atomic_path(final, overwrite=False) as tmp:
        with h5py.File(tmp, "w", libver=LIBVER) as g:
            g.attrs["format"] = ARRAY_FILE_FORMAT
            for name, value in arrays.items():
                compress = value.nbytes > (1 << 16) and value.dtype.kind in "biu"
                options = {"compression": "gzip" if compress else None,
                           "chunks": _row_chunks(value.shape, value.dtype.itemsize)}
                if isinstance(value, RowBlocks):
                    ds = _create_checked(g, name, shape=value.shape, dtype=value.dtype, **options)
                    row = 0
                    for part in value.parts:
                        ds[row : row + len(part)] = part
                        row += len(part)
                else:
                    _create_checked(g, name, data=value, **options)
    return final


def _link(f: h5py.File, key: str, shape: tuple[int, ...], dtype: np.dtype,
          shards: list[tuple[int, int, str]], dset: str) -> h5py.Dataset:
    """A virtual dataset at ``key`` made of row ranges ``[start, stop)`` of array files.

    File names are relative to the session's folder, so a session and its ``.data`` folder can be
    moved together. Rows no shard covers read as 0 (only while a stage is partial).
    """
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    for start, stop, rel in shards:
        layout[start:stop] = h5py.VirtualSource(rel, dset, shape=(stop - start, *shape[1:]), dtype=dtype)
    return f.create_virtual_dataset(key, layout, fillvalue=0)


def _sources(f: h5py.File, ds: h5py.Dataset) -> list[Path]:
    """The array files a virtual dataset reads from."""
    folder = Path(f.filename).parent
    return sorted({folder / vs.file_name for vs in ds.virtual_sources()})


def _check_sources(f: h5py.File, key: str, ds: h5py.Dataset) -> None:
    """HDF5 reads a missing source file as zeros without a word: refuse instead."""
    if not ds.is_virtual:
        return
    missing = [p for p in _sources(f, ds) if not p.exists()]
    if missing:
        path = Path(f.filename)
        raise SessionCorrupt(
            f"session {path}: '{key}' is stored in {missing[0]}, which is missing ({len(missing)} file(s) "
            f"gone). Keep the folder {data_dir(path).name}/ beside {path.name} (move or copy them together, "
            "or use `salve copy`), or rerun the stage that wrote it (`salve run NAME STAGE --force`)"
        )


def _referenced_files(f: h5py.File) -> set[str]:
    """Names of the array files any virtual dataset of ``f`` refers to."""
    names: set[str] = set()

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            names.update(Path(vs.file_name).name for vs in obj.virtual_sources())

    f.visititems(visit)
    return names


def _collect_garbage(path: Path) -> int:
    """Delete array files the committed session no longer refers to; return how many.

    Only the writer calls this (under the lock), after a commit or when it opens the session, so
    no transaction in flight can own one of these files.
    """
    folder = data_dir(path)
    if not folder.is_dir():
        return 0
    with h5py.File(path, "r") as f:
        keep = _referenced_files(f)
    removed = 0
    for item in folder.iterdir():
        if item.name not in keep and (item.suffix == SESSION_SUFFIX or item.name.endswith(".tmp")):
            item.unlink(missing_ok=True)
            removed += 1
    return removed


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    except OSError:
        return 0


def session_bytes(path: Path) -> int:
    """Disk use of a session as one unit: the small file and its array files."""
    size = path.stat().st_size if path.exists() else 0
    return size + _folder_bytes(data_dir(path))


# --------------------------------------------------------------------------- checksums


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _array_bytes(data: Any) -> bytes:
    data = np.asarray(data)
    if data.dtype.kind in "OUS":
        items = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(data).ravel()]
        return json.dumps([list(data.shape), items]).encode()
    return np.ascontiguousarray(data).tobytes()


def _create_checked(f: h5py.File, key: str, data: Any = None, shape: tuple[int, ...] | None = None,
                    dtype: Any = None, **kwargs: Any) -> h5py.Dataset:
    """Create a dataset HDF5 checksums on every read (fletcher32), or one with a stored digest
    where the filter cannot apply (scalars, empty arrays, variable-length strings)."""
    arr = None if data is None else np.asarray(data)
    shape = tuple(arr.shape) if arr is not None else tuple(shape or ())
    kind = arr.dtype.kind if arr is not None else np.dtype(dtype).kind
    if not shape or 0 in shape or kind in "OUS":
        kwargs.pop("compression", None)
        kwargs.pop("chunks", None)
        ds = f.create_dataset(key, data=data, shape=None if data is not None else shape, dtype=dtype, **kwargs)
        ds.attrs[DIGEST_ATTR] = _digest(_array_bytes(ds[()]))
        return ds
    return f.create_dataset(key, data=data, shape=None if data is not None else shape, dtype=dtype,
                            fletcher32=True, **kwargs)


def _check_digest(f: h5py.File, key: str, raw: bytes) -> None:
    stored = f[key].attrs.get(DIGEST_ATTR)
    if stored is None:
        return  # written before checksums existed
    stored = stored.decode() if isinstance(stored, bytes) else str(stored)
    if stored != _digest(raw):
        raise _corrupt(f, key, None)


def _corrupt(f: h5py.File, key: str, exc: BaseException | None) -> SessionCorrupt:
    path = Path(f.filename)
    cause = "its checksum does not match" if exc is None else f"{type(exc).__name__}: {exc}"
    return SessionCorrupt(
        f"session {path}: '{key}' is damaged ({cause}). Run `salve verify {path}` to list every damaged "
        "part; restore the file from a backup or rerun the stage that wrote it "
        "(`salve run NAME STAGE --force`)"
    )


# --------------------------------------------------------------------------- the session


class Transaction:
    """Changes applied to a temporary copy; committed atomically when the block exits cleanly."""

    def __init__(self, f: h5py.File, session: Session) -> None:
        self._f = f
        self._session = session
        self.freed_bytes = 0  # space left unused by deletions; the commit repacks when it is large
        self.new_files: list[Path] = []  # array files written by this transaction (removed on abort)
        self.links_changed = False  # the commit may have left array files unreferenced
        self.repack = False  # compact the small file on commit whatever was freed (migration)

    def _ensure_space(self, nbytes: int) -> None:
        """Refuse a write the disk cannot hold: HDF5 does not survive running out of space."""
        try:
            check_free_space(self._session.path.parent, int(nbytes))
        except WriteFailed as exc:
            raise SessionError(f"cannot save session {self._session.name}: {exc}") from None

    def _remove(self, key: str) -> None:
        if key in self._f:
            self.links_changed = True
            self.freed_bytes += _delete(self._f, key)

    def _array_file(self, stem: str, arrays: dict[str, np.ndarray]) -> str:
        """Write a new array file; return its name relative to the session's folder."""
        folder = data_dir(self._session.path)
        try:
            path = _write_array_file(folder, stem, arrays)
        except OSError as exc:  # HDF5's own failures (atomic_path reports the others as WriteFailed)
            raise SessionError(f"cannot save session {self._session.name}: "
                               f"{describe_os_error(exc, folder)}. Nothing was lost") from None
        except WriteFailed as exc:
            raise SessionError(f"cannot save session {self._session.name}: {exc}. Nothing was lost: "
                               "the session keeps its last committed step") from None
        self.new_files.append(path)
        return f"{folder.name}/{path.name}"

    def write_array(self, key: str, value: Any) -> None:
        value = np.asarray(value)
        self._ensure_space(value.nbytes)
        self._remove(key)
        if _split_external({"data": value})[0]:
            rel = self._array_file(key, {"data": value})
            _link(self._f, key, value.shape, value.dtype, [(0, len(value), rel)], "data")
        else:
            _write_array(self._f, key, value)

    def write_arrays(self, group: str, arrays: dict[str, Any]) -> None:
        """Replace ``group`` by ``arrays``; large groups go to one array file together."""
        arrays = {name: np.asarray(value) for name, value in arrays.items()}
        self._ensure_space(sum(a.nbytes for a in arrays.values()))
        self._remove(group)
        external, inline = _split_external(arrays)
        if external:
            rel = self._array_file(group, external)
            for name, value in external.items():
                _link(self._f, f"{group}/{name}", value.shape, value.dtype, [(0, len(value), rel)], name)
        for name, value in inline.items():
            _write_array(self._f, f"{group}/{name}", value)

    def append_rows(self, group: str, start: int, total: int, arrays: dict[str, Any]) -> None:
        """Add rows ``[start, start + n)`` of the row-aligned arrays of ``group`` (each ``total`` rows).

        Each value is an array or a :class:`RowBlocks` of consecutive row blocks.

        The rows go to one new shard file; the virtual datasets are re-pointed to cover every
        shard so far. Earlier shards are never rewritten: ``start == 0`` begins afresh, and a
        resumed run drops only shards past ``start`` (rows a crash left uncommitted).
        """
        arrays = {name: value if isinstance(value, RowBlocks) else np.asarray(value)
                  for name, value in arrays.items()}
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"append_rows: arrays of {group} differ in rows ({sorted(n)})")
        rows = n.pop()
        if start < 0 or start + rows > total:
            raise ValueError(f"append_rows: rows {start}..{start + rows} outside 0..{total} of {group}")
        self._ensure_space(sum(a.nbytes for a in arrays.values()))
        shards: list[tuple[int, int, str]] = []
        if start > 0 and group in self._f:
            raw = self._f[group].attrs.get(SHARDS_ATTR)
            shards = [tuple(x) for x in json.loads(raw)] if raw is not None else []
            shards = [x for x in shards if x[1] <= start]
            if not shards or shards[-1][1] != start:
                raise ValueError(f"append_rows: {group} holds rows up to "
                                 f"{shards[-1][1] if shards else 0}, cannot continue at {start}")
        rel = self._array_file(f"{group}-r{start}", arrays)
        shards.append((start, start + rows, rel))
        self._remove(group)
        grp = self._f.create_group(group)
        for name, value in arrays.items():
            _link(grp, name, (total, *value.shape[1:]), value.dtype, shards, name)
        grp.attrs[SHARDS_ATTR] = json.dumps(shards)

    def create_rows(self, key: str, shape: tuple[int, ...], dtype: Any) -> None:
        """Preallocate a small in-file array filled in row blocks by later transactions."""
        self._ensure_space(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        self._remove(key)
        _create_checked(self._f, key, shape=shape, dtype=dtype)

    def write_rows(self, key: str, start: int, value: np.ndarray) -> None:
        self._f[key][start : start + len(value)] = value

    def write_json(self, key: str, obj: Any) -> None:
        _write_json(self._f, key, obj)

    def update_json(self, key: str, **changes: Any) -> None:
        doc = _read_json(self._f, key, {}) or {}
        doc.update(changes)
        _write_json(self._f, key, doc)

    def delete(self, key: str) -> None:
        self._remove(key)
        self._remove(f"json/{key}")

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
        self.unwritable_reason: str | None = None  # set when the folder cannot hold a lock file
        self.notices: list[str] = []  # things a front should tell the user (a schema migration)

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
        session = cls(path, read_only=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            session._acquire_lock(must_write=True)
        except OSError as exc:
            raise SessionError(describe_os_error(exc, path, "create")) from None
        if overwrite:  # under the lock: another writer of the old session would have refused us
            shutil.rmtree(path.with_name(f"{path.stem}.checkpoints"), ignore_errors=True)
            shutil.rmtree(data_dir(path), ignore_errors=True)
        tmp = session._tmp_path()
        try:
            with h5py.File(tmp, "w", libver=LIBVER) as f:
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
        session = cls(path, read_only)
        _open_checked(path).close()  # validates format and schema before locking
        if not read_only:
            session._acquire_lock()
            if session._lock_fd is not None:
                for stale in path.parent.glob(f".{path.name}.tmp-*"):
                    stale.unlink(missing_ok=True)
                try:
                    _collect_garbage(path)  # array files a crash left behind
                except OSError:
                    pass  # a damaged file is reported by the read that needs it
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

    @property
    def session_id(self) -> str:
        """Unique id of this session (fixed at creation): binds checkpoints beside the file to it."""
        with self.reader() as f:
            sid = f.attrs.get("session_id")
            if sid is None:  # sessions created before ids: their creation time is unique enough
                return f"created-{float(f.attrs.get('created', 0.0))!r}"
            return sid.decode() if isinstance(sid, bytes) else str(sid)

    def _acquire_lock(self, must_write: bool = False) -> None:
        """Take the writer lock. In a folder where no lock file can be created nothing can be
        written either: the handle then reads, and its first transaction says why it cannot save."""
        try:
            fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if must_write or exc.errno not in _UNWRITABLE:
                raise
            self.unwritable_reason = describe_os_error(exc, self._lock_path(), "create the lock file")
            return
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
            shutil.copyfile(self.path, tmp)
            with h5py.File(tmp, "r+", libver=LIBVER) as f:
                tx = Transaction(f, self)
                migrated = _migrate(f, tx)
                yield tx
                f.attrs["updated"] = time.time()
            if tx.repack or tx.freed_bytes > REPACK_MIN_BYTES:
                _repack(tmp)
            fsync_path(tmp)  # array files were fsynced, and their folder, as they were written
            os.replace(tmp, self.path)
            committed = True
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


def _migrate(f: h5py.File, tx: Transaction) -> str | None:
    """Bring a schema-1 file (every array inside) to schema 2 in the transaction ``tx``.

    Large arrays move to array files of their own; returns the message to show, or None.
    """
    version = int(f.attrs.get("schema_version", 1))
    if version >= SCHEMA_VERSION:
        return None
    large: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if (isinstance(obj, h5py.Dataset) and not obj.is_virtual and not name.startswith("json/")
                and obj.dtype.kind in "biuf" and obj.ndim > 0 and obj.size
                and obj.size * obj.dtype.itemsize >= EXTERNAL_MIN_BYTES):
            large.append(name)

    f.visititems(visit)
    groups: dict[str, list[str]] = {}
    for name in large:  # one array file per group, as a new write of the group would make
        groups.setdefault(name.rpartition("/")[0], []).append(name)
    for group, names in groups.items():
        arrays = {name.rpartition("/")[2]: _read_array(f, name) for name in names}
        tx._ensure_space(sum(a.nbytes for a in arrays.values()))
        rel = tx._array_file(group or "root", arrays)
        for name in names:
            value = arrays[name.rpartition("/")[2]]
            tx._remove(name)
            _link(f, name, value.shape, value.dtype, [(0, len(value), rel)], name.rpartition("/")[2])
    f.attrs["schema_version"] = SCHEMA_VERSION
    tx.repack = bool(large)
    path = tx._session.path
    return (f"session {path.name} was migrated from schema {version} to {SCHEMA_VERSION}: "
            f"{len(large)} large array(s) moved to {data_dir(path).name}/ beside it; keep the two "
            "together (older salve-tui versions cannot open it now)")


def _repack(path: Path) -> None:
    """Rewrite ``path`` compactly: HDF5 never returns the space of deleted datasets to the OS."""
    packed = path.with_name(path.name + ".pack")
    try:
        with h5py.File(path, "r") as src, h5py.File(packed, "w", libver=LIBVER) as dst:
            for name, value in src.attrs.items():
                dst.attrs[name] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(packed, path)
    finally:
        packed.unlink(missing_ok=True)


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
                        "failed": {k: v.get("message", "") for k, v in stages.items()
                                   if v.get("state") == "failed"},
                        "updated": float(f.attrs["updated"]),
                        "size_bytes": session_bytes(path),
                        "warnings": len(_read_json(f, "summary", {}).get("warnings") or []),
                        "error": None,
                    }
                )
        except Exception as exc:  # one damaged file never hides the others
            message = str(exc) if isinstance(exc, SessionError) else f"{path}: {type(exc).__name__}: {exc}"
            rows.append({"name": path.stem, "path": str(path), "error": message})
    return rows


def delete_session(path: Path) -> None:
    """Delete a session as one unit (refuses while another process writes it): the file, its
    array folder, checkpoints, job log and lock file.

    The lock is taken without reading the file, so a damaged session can be deleted too, and
    never while another process writes it.
    """
    session = Session(Path(path), read_only=False)
    try:
        session._acquire_lock(must_write=True)  # refuses if in use
    except OSError as exc:
        raise SessionError(describe_os_error(exc, path, "delete")) from None
    try:
        path.unlink()
        shutil.rmtree(path.with_name(f"{path.stem}.checkpoints"), ignore_errors=True)
        shutil.rmtree(data_dir(path), ignore_errors=True)
        path.with_name(f"{path.stem}.joblog.json").unlink(missing_ok=True)  # core.store.joblog
    finally:
        session.close()
        session._lock_path().unlink(missing_ok=True)


def copy_session(src: Path, dst: Path) -> Path:
    """Copy a session as one unit (small file and array files) to ``dst``; the copy gets its own id.

    The copy is assembled under temporary names and renamed into place, folder first, so a crash
    leaves no half copy that opens. Refuses an existing ``dst`` and a disk that cannot hold it.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() or data_dir(dst).exists():
        raise SessionError(f"{dst} already exists; choose another name or delete it first (`salve delete`)")
    with Session.open(src, read_only=True):
        pass  # validates the source
    try:
        check_free_space(dst.parent, session_bytes(src))
    except WriteFailed as exc:
        raise SessionError(f"cannot copy session {src.stem}: {exc}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = dst.parent / f".{data_dir(dst).name}.tmp-{os.getpid()}"
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    try:
        src_folder = data_dir(src)
        if src_folder.is_dir():
            tmp_dir.mkdir()
            for item in src_folder.iterdir():
                if item.suffix == SESSION_SUFFIX:
                    shutil.copyfile(item, tmp_dir / item.name)
                    fsync_path(tmp_dir / item.name)
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "r+", libver=LIBVER) as f:
            _relink(f, data_dir(dst).name)
            f.attrs["session_id"] = uuid.uuid4().hex
        fsync_path(tmp)
        if tmp_dir.exists():
            fsync_dir(tmp_dir)
            os.replace(tmp_dir, data_dir(dst))
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
    except OSError as exc:
        raise SessionError(describe_os_error(exc, dst, "copy the session to")) from None
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dst


def _relink(f: h5py.File, folder_name: str) -> None:
    """Point every virtual dataset of ``f`` at the same files under ``folder_name``."""
    virtual: list[str] = []
    f.visititems(lambda name, obj: virtual.append(name)
                 if isinstance(obj, h5py.Dataset) and obj.is_virtual else None)
    for name in virtual:
        ds = f[name]
        shape, dtype = ds.shape, ds.dtype
        pieces = []
        for vs in ds.virtual_sources():
            start = vs.vspace.get_select_bounds()[0][0] if len(shape) else 0
            stop = vs.vspace.get_select_bounds()[1][0] + 1 if len(shape) else 0
            pieces.append((int(start), int(stop), f"{folder_name}/{Path(vs.file_name).name}", vs.dset_name))
        del f[name]
        dsets = {d for *_, d in pieces}
        if len(dsets) != 1:
            raise SessionCorrupt(f"'{name}' mixes datasets {sorted(dsets)}; this session was not written by salve-tui")
        _link(f, name, shape, dtype, [(a, b, r) for a, b, r, _ in pieces], dsets.pop().lstrip("/"))
    for name in _sharded_groups(f):
        shards = [(a, b, f"{folder_name}/{Path(r).name}") for a, b, r in json.loads(f[name].attrs[SHARDS_ATTR])]
        f[name].attrs[SHARDS_ATTR] = json.dumps(shards)


def _sharded_groups(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda name, obj: out.append(name)
                 if isinstance(obj, h5py.Group) and SHARDS_ATTR in obj.attrs else None)
    return out


def _disk_full(exc: OSError, folder: Path) -> bool:
    """HDF5 reports a failed write without errno: tell a full disk by looking at it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


# --------------------------------------------------------------------------- verification


@dataclass
class VerifyReport:
    """What :func:`verify_session` found: damaged parts and datasets without any checksum."""

    path: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_session(path: str | os.PathLike) -> VerifyReport:
    """Read every dataset of a session in full, checking fletcher32 checksums and stored digests."""
    path = Path(path)
    report = VerifyReport(path)
    try:
        f = _open_checked(path)
    except SessionError as exc:
        report.problems.append(str(exc))
        return report
    except Exception as exc:
        report.problems.append(f"{path} cannot be opened: {type(exc).__name__}: {exc}")
        return report
    try:
        names: list[str] = []
        try:
            f.visit(names.append)
        except Exception as exc:
            report.problems.append(f"the group structure is damaged ({type(exc).__name__}: {exc})")
        for name in names:
            try:
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    continue
                if name.startswith("json/"):
                    _read_json(f, name[5:])
                else:
                    _read_array(f, name)
                report.checked += 1
                if obj.is_virtual:
                    if not _sources_checksummed(f, obj):
                        report.unchecked.append(name)
                elif not obj.fletcher32 and DIGEST_ATTR not in obj.attrs:
                    report.unchecked.append(name)
            except Exception as exc:
                report.problems.append(f"'{name}': {type(exc).__name__}: {exc}")
        try:
            for attr in ("format", "schema_version", "created", "updated"):
                f.attrs[attr]
        except Exception as exc:
            report.problems.append(f"the file's attributes are damaged ({type(exc).__name__}: {exc})")
    finally:
        try:
            f.close()
        except Exception as exc:
            report.problems.append(f"closing failed ({type(exc).__name__}: {exc})")
    return report


def _sources_checksummed(f: h5py.File, ds: h5py.Dataset) -> bool:
    """Whether every array file behind a virtual dataset carries HDF5 checksums."""
    folder = Path(f.filename).parent
    for vs in ds.virtual_sources():
        with h5py.File(folder / vs.file_name, "r") as g:
            if not g[vs.dset_name].fletcher32:
                return False
    return True


def require_intact(session: Session) -> None:
    """Raise :class:`SessionCorrupt` unless every part of ``session`` passes its checksum."""
    report = verify_session(session.path)
    if not report.ok:
        raise SessionCorrupt(
            f"session {session.path} is damaged ({len(report.problems)} part(s), first: "
            f"{report.problems[0]}); nothing was exported. Run `salve verify {session.path}`, then "
            "restore the file from a backup or rerun the damaged stages"
        )


def _without_chunk_cache(f: h5py.File, key: str) -> h5py.Dataset:
    """``f[key]`` opened with no chunk cache, for block reads that touch each chunk once: a
    virtual dataset otherwise keeps one cache (h5py's default, 8 MiB here) per source file a
    read touches, memory that follows no budget (measured: a 15 MiB block read across the
    four shards of a 200,000-row split peaked 47 MiB over the block's size, 20 MiB without)."""
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(0, 0, 0.75)
    return h5py.Dataset(h5py.h5d.open(f.id, key.encode(), dapl))
