"""A transaction: the changes of one commit, applied to a temporary copy of the small file.

:meth:`core.store.session.Session.transaction` copies the small file, hands a
:class:`Transaction` over the copy to the caller, then fsyncs and renames it over the original.
Large arrays go to new array files (never modified once written); activations grow as row
shards, each commit adding one shard file and re-pointing the virtual dataset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from core.atomic import WriteFailed, check_free_space, describe_os_error
from core.store.arrayfiles import RowBlocks, _link, _split_external, _write_array_file
from core.store.h5io import (
    _create_checked,
    _delete,
    _read_json,
    _read_shards,
    _write_array,
    _write_json,
    _write_shards,
)
from core.store.layout import SHARDS_ATTR, STAGE_STATES, SessionError, StageState, data_dir


class Transaction:
    """Changes applied to a temporary copy; committed atomically when the block exits cleanly."""

    def __init__(self, f: h5py.File, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._f = f
        self.path = Path(path)  # the session file this transaction commits to
        self._clock = clock  # stage timestamps (the session passes its own, which tests freeze)
        self.freed_bytes = 0  # space left unused by deletions; the commit repacks when it is large
        self.new_files: list[Path] = []  # array files written by this transaction (removed on abort)
        self.links_changed = False  # the commit may have left array files unreferenced
        self.repack = False  # compact the small file on commit whatever was freed (migration)

    def _ensure_space(self, nbytes: int) -> None:
        """Refuse a write the disk cannot hold: HDF5 does not survive running out of space."""
        try:
            check_free_space(self.path.parent, int(nbytes))
        except WriteFailed as exc:
            raise SessionError(f"cannot save session {self.path.stem}: {exc}") from None

    def _remove(self, key: str) -> None:
        if key in self._f:
            self.links_changed = True
            self.freed_bytes += _delete(self._f, key)

    def _array_file(self, stem: str, arrays: dict[str, np.ndarray]) -> str:
        """Write a new array file; return its name relative to the session's folder."""
        folder = data_dir(self.path)
        try:
            path = _write_array_file(folder, stem, arrays)
        except OSError as exc:  # HDF5's own failures (atomic_path reports the others as WriteFailed)
            raise SessionError(f"cannot save session {self.path.stem}: "
                               f"{describe_os_error(exc, folder)}. Nothing was lost") from None
        except WriteFailed as exc:
            raise SessionError(f"cannot save session {self.path.stem}: {exc}. Nothing was lost: "
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
            shards = _read_shards(self._f, group) if SHARDS_ATTR in self._f[group].attrs else []
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
        _write_shards(grp, shards)

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
        stages[stage] = StageState(state, message, self._clock(), info).to_dict()
        _write_json(self._f, "stages", stages)

