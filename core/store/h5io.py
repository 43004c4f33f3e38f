"""HDF5 reads and writes of the small session file: checked opens, JSON documents, inline arrays
and their checksums.

Every dataset carries a checksum HDF5 verifies on read (fletcher32) or, where the filter cannot
apply (scalars, strings, JSON), a SHA-256 digest attribute checked here on every read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.config import memory_budget
from core.store.layout import (
    DIGEST_ATTR,
    FORMAT_NAME,
    SCHEMA_VERSION,
    SHARDS_ATTR,
    SessionCorrupt,
    SessionError,
    SessionTooNew,
    data_dir,
)
from core.store.limits import (
    DECLARED_TO_STORED,
    declared_bytes,
    implausible_declaration,
    loads_bounded,
)
from core.store.untrusted import SessionUnsafe, dataset_problems, is_plain_file


def _open_checked(path: Path, mode: str = "r") -> h5py.File:
    """Open an HDF5 file and verify it is a session of a schema we understand.

    Only plain files are opened (a FIFO named ``x.h5`` would block the open forever), and the
    root attributes are parsed defensively: a damaged file gets a message, never a traceback.
    """
    if not path.exists():
        raise SessionError(
            f"session file {path} does not exist; create it with `salve new` or list sessions with `salve list`"
        )
    if not is_plain_file(path):
        raise SessionCorrupt(f"{path} is not a plain file (a folder, device or pipe); it is not a session")
    try:
        f = h5py.File(path, mode)
    except OSError as exc:
        raise SessionCorrupt(
            f"{path} is not a readable HDF5 file ({exc.__class__.__name__}: {exc}). It may be truncated or "
            "not a session; move it aside and recreate the session with `salve new`."
        ) from exc
    try:
        _check_marker(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _check_marker(f: h5py.File, path: Path) -> None:
    try:
        fmt = f.attrs.get("format")
        fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
        version = int(f.attrs.get("schema_version", 0))
    except Exception as exc:  # a damaged attribute of any type
        raise SessionCorrupt(f"{path}: the session's attributes are damaged ({type(exc).__name__}: {exc}); "
                             f"run `salve verify {path}`") from None
    if fmt != FORMAT_NAME:
        raise SessionCorrupt(
            f"{path} is an HDF5 file but not a salve-tui session (no '{FORMAT_NAME}' marker); "
            "pass a session created by `salve new`"
        )
    if version > SCHEMA_VERSION:
        raise SessionTooNew(
            f"{path} uses session schema {version}, newer than this salve-tui understands "
            f"({SCHEMA_VERSION}); upgrade salve-tui to open it"
        )


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
    try:
        link = f.get(name, getlink=True)
    except (OSError, KeyError, RuntimeError) as exc:
        raise _corrupt(f, name, exc) from None
    if link is None:
        return default
    if not isinstance(link, h5py.HardLink):  # an external or soft link: another file's document
        raise SessionUnsafe(f"session {f.filename} is refused: '{name}' is a link, not a document of "
                            "its own; nothing was read")
    try:
        raw = f[name][()]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        _check_digest(f, name, text.encode())
        return loads_bounded(text, f"'{name}'")
    except SessionCorrupt:
        raise
    except (OSError, ValueError, UnicodeError, TypeError, RecursionError) as exc:
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
        _check_declared_size(f, key, ds)
        data = ds[()]
    except (OSError, RuntimeError, KeyError, ValueError, MemoryError) as exc:
        raise _corrupt(f, key, exc) from None
    if ds.dtype.kind == "O":
        data = np.array([x.decode() if isinstance(x, bytes) else x for x in np.atleast_1d(data)])
    if DIGEST_ATTR in ds.attrs:
        _check_digest(f, key, _array_bytes(data))
    return data

def _sources(f: h5py.File, ds: h5py.Dataset) -> list[Path]:
    """The array files a virtual dataset reads from."""
    folder = Path(f.filename).parent
    return sorted({folder / vs.file_name for vs in ds.virtual_sources()})


def _check_sources(f: h5py.File, key: str, ds: h5py.Dataset) -> None:
    """Refuse a dataset that reads files not the session's own, and a missing source file (HDF5
    reads one as zeros without a word)."""
    foreign = dataset_problems(Path(f.filename), key, ds)
    if foreign:
        raise SessionUnsafe(f"session {f.filename} is refused: {foreign[0]}; only files in its own "
                            f"{data_dir(Path(f.filename)).name}/ folder are read")
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

def _check_declared_size(f: h5py.File, key: str, ds: h5py.Dataset) -> None:
    """Refuse a whole read whose declared shape is past the memory budget and far past the bytes
    its files hold, before anything is allocated (a shape can claim terabytes)."""
    declared = declared_bytes(ds.shape or (), ds.dtype.itemsize)
    if ds.is_virtual:
        stored = sum(p.stat().st_size for p in _sources(f, ds) if p.exists())
    else:
        stored = ds.id.get_storage_size()
    if declared <= DECLARED_TO_STORED * max(stored, 1):
        return  # the common case: never looks at the budget
    budget = memory_budget()
    if implausible_declaration(declared, stored, budget):
        raise SessionCorrupt(
            f"session {f.filename}: '{key}' declares {declared / 1e9:.1f} GB but its files hold "
            f"{stored / 1e6:.1f} MB; it is damaged or not written by salve-tui, and was not read "
            f"(memory budget {budget / 1e9:.1f} GB)")


SHARDS_DIGEST_ATTR = "shards_sha256"  # the shards attribute names files: it is checksummed too


def _write_shards(grp: h5py.Group, shards: list[tuple[int, int, str]]) -> None:
    text = json.dumps([list(x) for x in shards])
    grp.attrs[SHARDS_ATTR] = text
    grp.attrs[SHARDS_DIGEST_ATTR] = _digest(text.encode())


def _read_shards(f: h5py.File, key: str) -> list[tuple[int, int, str]]:
    """The ``[start, stop, file]`` shards of a row-sharded group, checked against their digest."""
    attrs = f[key].attrs
    try:
        raw = attrs[SHARDS_ATTR]
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        stored = attrs.get(SHARDS_DIGEST_ATTR)
        if stored is not None and (stored.decode() if isinstance(stored, bytes) else str(stored)) != _digest(
                text.encode()):
            raise ValueError("its checksum does not match")
        return [(int(a), int(b), str(r)) for a, b, r in loads_bounded(text, f"'{key}' shards")]
    except (KeyError, OSError, TypeError, ValueError, RecursionError) as exc:
        raise _corrupt(f, f"{key} (shards attribute)", exc) from None


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

def _disk_full(exc: OSError, folder: Path) -> bool:
    """HDF5 reports a failed write without errno: tell a full disk by looking at it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False

def _without_chunk_cache(f: h5py.File, key: str) -> h5py.Dataset:
    """``f[key]`` opened with no chunk cache, for block reads that touch each chunk once: a
    virtual dataset otherwise keeps one cache (h5py's default, 8 MiB here) per source file a
    read touches, memory that follows no budget (measured: a 15 MiB block read across the
    four shards of a 200,000-row split peaked 47 MiB over the block's size, 20 MiB without)."""
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(0, 0, 0.75)
    return h5py.Dataset(h5py.h5d.open(f.id, key.encode(), dapl))
