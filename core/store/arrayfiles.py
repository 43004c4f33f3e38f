"""Array files: the large arrays of a session, each written once into ``<name>.data/`` and
referred to from the small file by virtual datasets; and their clean-up.

Each array file is written to a temp file that is fsynced and renamed, and never modified.
Array files no committed version of the small file refers to (left by a crash, or replaced) are
deleted by the next writer (:func:`_collect_garbage`).
"""

from __future__ import annotations

import os
import re
import resource
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import WriteFailed, _process_alive, atomic_path
from core.store.h5io import _create_checked
from core.store.layout import LIBVER, SESSION_SUFFIX, data_dir
from core.store.untrusted import SessionUnsafe, is_link

ARRAY_FILE_FORMAT = "salve-tui session arrays"
# arrays (or groups written together) this large live in a file of their own; the environment
# variable exists for tests, which lower it to put every array of a tiny session in array files
EXTERNAL_MIN_BYTES = int(os.environ.get("SALVE_ARRAY_FILE_MIN_BYTES", 1 << 20))


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
    if is_link(folder):
        raise SessionUnsafe(f"the array folder {folder} is a symbolic link; nothing was written through it")
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


def _referenced_files(f: h5py.File) -> set[str]:
    """Names of the array files any virtual dataset of ``f`` refers to."""
    names: set[str] = set()

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.is_virtual:
            names.update(Path(vs.file_name).name for vs in obj.virtual_sources())

    f.visititems(visit)
    return names


ARRAY_FILE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,60}-[0-9a-f]{12}\.h5$")  # what _write_array_file names
_TEMP_NAME = re.compile(r"^\.([A-Za-z0-9_-]{1,60}-[0-9a-f]{12}\.h5)\.(\d+)-[^/]*\.tmp$")  # atomic_path's
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_array_file(item: Path) -> bool:
    """A plain file (not a link) named as this store names array files, holding HDF5 bytes."""
    if not ARRAY_FILE_NAME.match(item.name):
        return False
    try:
        fd = os.open(item, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.pread(fd, 8, 0) == HDF5_SIGNATURE
    finally:
        os.close(fd)


def _is_dead_temp(item: Path) -> bool:
    """A temp array file (atomic_path's name) whose writer process is gone, and not a link."""
    match = _TEMP_NAME.match(item.name)
    return bool(match) and not _process_alive(int(match.group(2))) and stat.S_ISREG(os.lstat(item).st_mode)


def _collect_garbage(path: Path) -> int:
    """Delete array files the committed session no longer refers to; return how many.

    Only the writer calls this (under the lock), after a commit or when it opens the session, so
    no transaction in flight can own one of these files. Only files this store names and writes
    are touched, inside the session's own real folder (never through a link), so a folder that
    also holds other files, or a link to one, loses nothing else.
    """
    folder = data_dir(path)
    if is_link(folder) or not folder.is_dir():
        return 0
    with h5py.File(path, "r") as f:
        keep = _referenced_files(f)
    removed = 0
    for item in folder.iterdir():
        if item.name in keep:
            continue
        if _is_array_file(item) or _is_dead_temp(item):
            item.unlink(missing_ok=True)
            removed += 1
    return removed


def _folder_bytes(folder: Path) -> int:
    try:
        sizes = (os.lstat(p) for p in folder.iterdir())  # links count as nothing: never followed
        return sum(st.st_size for st in sizes if stat.S_ISREG(st.st_mode))
    except OSError:
        return 0


def session_bytes(path: Path) -> int:
    """Disk use of a session as one unit: the small file and its array files."""
    size = path.stat().st_size if path.exists() else 0
    return size + (0 if is_link(data_dir(path)) else _folder_bytes(data_dir(path)))
