"""Schema and migration: bring an older session to the current schema inside a transaction, and
compact the small file (HDF5 never returns the space of deleted datasets).

Schema 1 kept every array inside the one file; such sessions are read as they are and migrated
on their first write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py

from core.store import arrayfiles
from core.store.arrayfiles import _link
from core.store.h5io import _read_array
from core.store.layout import LIBVER, SCHEMA_VERSION, data_dir
from core.store.transaction import Transaction


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
                and obj.size * obj.dtype.itemsize >= arrayfiles.EXTERNAL_MIN_BYTES):
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
    path = tx.path
    return (f"session {path.name} was migrated from schema {version} to {SCHEMA_VERSION}: "
            f"{len(large)} large array(s) moved to {data_dir(path).name}/ beside it; keep the two "
            "together (older salve-tui versions cannot open it now)")


def _repack(path: Path) -> None:
    """Rewrite ``path`` compactly: HDF5 never returns the space of deleted datasets to the OS."""
    packed = path.with_name(path.name + ".pack")
    packed.unlink(missing_ok=True)  # a stale one, or a link placed there: removed, never followed
    try:
        with h5py.File(path, "r") as src, h5py.File(packed, "w-", libver=LIBVER) as dst:
            for name, value in src.attrs.items():
                dst.attrs[name] = value
            for name in src:
                src.copy(src[name], dst, name=name)
        os.replace(packed, path)
    finally:
        packed.unlink(missing_ok=True)

