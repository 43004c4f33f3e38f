"""Maintenance of whole sessions: list a folder, delete and copy a session as one unit.

These work on the files of a session (small file, array folder, lock) and never on its
contents beyond what they need, so a damaged session can still be listed and deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import h5py

from core.atomic import WriteFailed, check_free_space, describe_os_error, fsync_dir, fsync_path
from core.store import lock as writer_lock
from core.store.arrayfiles import _link, session_bytes
from core.store.h5io import _open_checked, _read_json
from core.store.layout import (
    LIBVER,
    SESSION_SUFFIX,
    SHARDS_ATTR,
    SessionCorrupt,
    SessionError,
    data_dir,
    lock_path,
    sessions_dir,
)


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
    path = Path(path)
    try:
        held = writer_lock.acquire(path, must_write=True)  # refuses if in use
    except OSError as exc:
        raise SessionError(describe_os_error(exc, path, "delete")) from None
    try:
        path.unlink()
        shutil.rmtree(path.with_name(f"{path.stem}.checkpoints"), ignore_errors=True)
        shutil.rmtree(data_dir(path), ignore_errors=True)
        path.with_name(f"{path.stem}.joblog.json").unlink(missing_ok=True)  # core.store.joblog
    finally:
        held.release()
        lock_path(path).unlink(missing_ok=True)


def copy_session(src: Path, dst: Path) -> Path:
    """Copy a session as one unit (small file and array files) to ``dst``; the copy gets its own id.

    The copy is assembled under temporary names and renamed into place, folder first, so a crash
    leaves no half copy that opens. Refuses an existing ``dst`` and a disk that cannot hold it.
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() or data_dir(dst).exists():
        raise SessionError(f"{dst} already exists; choose another name or delete it first (`salve delete`)")
    _open_checked(src).close()  # validates the source
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

