"""Maintenance of whole sessions: list a folder, delete and copy a session as one unit.

These work on the files of a session (small file, array folder, lock) and never on its
contents beyond what they need, so a damaged session can still be listed and deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
from pathlib import Path
from typing import Any

import h5py

from core.atomic import (
    WriteFailed,
    _process_alive,
    check_free_space,
    copy_exclusive,
    describe_os_error,
    fsync_dir,
    fsync_path,
)
from core.store import lock as writer_lock
from core.store.arrayfiles import (
    _TEMP_NAME,
    HDF5_SIGNATURE,
    _is_array_file,
    _link,
    _referenced_files,
    session_bytes,
)
from core.store.exports_cleanup import plan_exports, remove_exports
from core.store.h5io import _open_checked, _read_json, _read_shards, _write_shards
from core.store.layout import (
    LIBVER,
    SESSION_SUFFIX,
    SHARDS_ATTR,
    SessionCorrupt,
    SessionError,
    data_dir,
    exports_dir,
    lock_path,
    log,
    resolve_session_path,
    sessions_dir,
)
from core.store.probe import probe, trust
from core.store.untrusted import (
    SessionUnsafe,
    check_links,
    check_references,
    is_link,
    is_plain_file,
)

_DEAD_COPY = re.compile(r"^\.(.+(?:\.h5|\.data))\.tmp-(\d+)$")  # copy_session's and a transaction's temps
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_problems(name: str) -> list[str]:
    """Why ``name`` cannot name a session file (empty: it can)."""
    if _CONTROL.search(name):
        return [f"the name {name!r} contains control characters (a newline, tab, ...); choose a plain name"]
    return []


def _shown(name: str) -> str:
    """A file name as one printable line (control characters escaped)."""
    return name.encode("unicode_escape").decode() if _CONTROL.search(name) else name


def remove_tree(path: Path) -> None:
    """Remove a folder, or only the link when ``path`` is one (never what it points at)."""
    if is_link(path) or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def remove_dead_copies(folder: Path) -> list[str]:
    """Remove the temp files and folders of copies and writers that were killed (their pid is
    gone) from ``folder``; return one note per removed item."""
    notes: list[str] = []
    try:
        items = list(folder.iterdir())
    except OSError:
        return notes
    for item in items:
        match = _DEAD_COPY.match(item.name)
        if match is None or _process_alive(int(match.group(2))):
            continue
        remove_tree(item)
        notes.append(f"removed {item.name} in {folder}, left by a copy or write that was killed "
                     f"(process {match.group(2)} is gone)")
    for note in notes:
        log.warning(note)
    return notes


def _list_row(path: Path) -> dict[str, Any]:
    with _open_checked(path) as f:
        config = _read_json(f, "config", {})
        stages = _read_json(f, "stages", {})
        return {
            "name": path.stem,
            "path": str(path),
            "model": config.get("backbone", {}).get("arch", "?"),
            "dataset": config.get("data", {}).get("kind", "?"),
            "stages": {k: v.get("state", "pending") for k, v in stages.items()},
            "failed": {k: v.get("message", "") for k, v in stages.items() if v.get("state") == "failed"},
            "updated": float(f.attrs["updated"]),
            "size_bytes": session_bytes(path),
            "warnings": len(_read_json(f, "summary", {}).get("warnings") or []),
            "error": None,
        }


def list_sessions(folder: Path | None = None) -> list[dict[str, Any]]:
    """Short description of each session file in ``folder``; unreadable files are listed with the
    error. Only plain files are opened (a FIFO named ``x.h5`` would block); temp files of killed
    copies are removed."""
    folder = folder or sessions_dir()
    rows: list[dict[str, Any]] = []
    if not folder.is_dir():
        return rows
    remove_dead_copies(folder)
    for path in sorted(folder.glob(f"*{SESSION_SUFFIX}")):
        if not is_plain_file(path):
            continue
        try:
            rows.append(_list_row(path))
        except Exception as exc:  # one damaged file never hides the others
            message = str(exc) if isinstance(exc, SessionError) else f"{path}: {type(exc).__name__}: {exc}"
            rows.append({"name": path.stem, "path": str(path), "error": message})
        rows[-1]["name"] = _shown(path.stem)
    return rows


def _refuse_non_session(path: Path) -> None:
    """Refuse to delete anything but a salve session: a link, a non-HDF5 file, or an HDF5 file
    without the session marker. A session too damaged to open may still be deleted."""
    if is_link(path):
        raise SessionUnsafe(f"{path} is a symbolic link to {os.readlink(path)}; delete the file it "
                            "points to, or remove the link with `rm`")
    if path.suffix != SESSION_SUFFIX or not is_plain_file(path):
        raise SessionError(f"{path} is not a session file (sessions are plain *{SESSION_SUFFIX} files); "
                           "nothing was deleted")
    with open(path, "rb") as handle:
        if handle.read(8) != HDF5_SIGNATURE:
            raise SessionError(f"{path} is not an HDF5 session file; nothing was deleted")
    try:
        _open_checked(path).close()
    except SessionError as exc:  # a damaged or newer session may be deleted; a foreign file not
        if "not a salve-tui session" in str(exc):
            raise SessionError(f"{path} is an HDF5 file but not a salve-tui session; nothing was deleted") from None


def _leftovers(path: Path) -> list[Path]:
    """What an interrupted delete of ``path`` left, when it is surely the session's own: a lock
    file, an array folder holding only array files, a checkpoint folder holding only checkpoints."""
    found: list[Path] = []
    lock = lock_path(path)
    if is_link(lock) or lock.is_file():
        found.append(lock)
    folder = data_dir(path)
    if folder.is_dir() and not is_link(folder) and all(_is_array_file(p) or _TEMP_NAME.match(p.name)
                                                       for p in folder.iterdir()):
        found.append(folder)
    checkpoints = path.with_name(f"{path.stem}.checkpoints")
    if checkpoints.is_dir() and not is_link(checkpoints) and all(
            p.name == "backbone.pt" or (p.name.startswith(".backbone.pt.") and p.name.endswith(".tmp"))
            for p in checkpoints.iterdir()):
        found.append(checkpoints)
    if plan_exports(exports_dir(path)).owned:
        found.append(exports_dir(path))
    return found


def delete_session(path: Path) -> list[Path]:
    """Delete a session as one unit (refuses while another process writes it): its array folder,
    checkpoints, job log, the files it wrote in its exports folder, the file itself and last the
    lock file; return what was removed (:func:`plan_exports` then says what was kept and why).

    The lock is taken without reading the file, so a damaged session can be deleted too, and
    never while another process writes it. The session file goes last, so a delete that was
    interrupted is finished by running it again; links are removed, never followed.
    """
    path = Path(path)
    exists = path.exists() or is_link(path)
    if exists:
        _refuse_non_session(path)
    targets = [data_dir(path), path.with_name(f"{path.stem}.checkpoints"), exports_dir(path),
               path.with_name(f"{path.stem}.joblog.json")] if exists else _leftovers(path)
    if not exists and not targets:
        raise SessionError(f"session file {path} does not exist; list sessions with `salve list`")
    if is_link(lock_path(path)):
        lock_path(path).unlink()  # a link placed as the lock: removed, never written through
    try:
        held = writer_lock.acquire(path, must_write=True)  # refuses if in use
    except OSError as exc:
        raise SessionError(describe_os_error(exc, path, "delete")) from None
    removed: list[Path] = []
    try:
        for target in [*targets, *([path] if exists else [])]:
            if target == exports_dir(path):
                removed += remove_exports(plan_exports(target))  # only what the tool wrote
            elif target != lock_path(path) and (target.exists() or is_link(target)):
                remove_tree(target)
                removed.append(target)
    finally:
        held.release()
        lock_path(path).unlink(missing_ok=True)  # core.store.joblog's file went with the targets
    return removed


def _copy_plain(src: Path, dst: Path) -> None:
    """Copy an array file that must be a plain file (a link or device is refused, not followed)."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SessionUnsafe(f"{src} is not a plain file; the session was not copied")
    finally:
        os.close(fd)
    copy_exclusive(src, dst)
    fsync_path(dst)


def copy_target(src: Path, target: str, folder: Path) -> Path:
    """Where ``salve copy SRC TARGET`` writes: a bare name goes to ``folder``; a folder (existing,
    or written with a trailing slash) gets the source's file name; a path without the session
    suffix gets it (``runs/v1.2`` → ``runs/v1.2.h5``), so `list` and `info` find the copy."""
    if "/" not in target and os.sep not in target:
        return resolve_session_path(target, folder)
    dst = Path(target)
    if target.endswith(("/", os.sep)) or dst.is_dir():
        return dst / Path(src).name
    return dst if dst.suffix == SESSION_SUFFIX else dst.with_name(dst.name + SESSION_SUFFIX)


def _check_copy_target(src: Path, dst: Path) -> list[str]:
    problems = name_problems(dst.name)
    if problems:
        raise SessionError(f"cannot copy to {dst}: {problems[0]}")
    if dst.suffix != SESSION_SUFFIX:
        raise SessionError(f"cannot copy to {dst}: session files end in {SESSION_SUFFIX}, or `salve list` "
                           f"and `salve info` do not find them; copy to {dst.with_name(dst.name + SESSION_SUFFIX)}")
    for target in (dst, data_dir(dst)):
        if target.exists() or is_link(target):
            raise SessionError(f"{target} already exists; choose another name or delete it first (`salve delete`)")
    check_links(src, writing=False)
    if is_plain_file(src):
        probe(src)  # a file that crashes HDF5 is refused as damaged, in a child process
    with _open_checked(src) as f:  # validates the source
        check_references(f, src)
        return sorted(_referenced_files(f))


def copy_session(src: Path, dst: Path) -> Path:
    """Copy a session as one unit (small file and the array files it refers to) to ``dst``; the
    copy gets its own id. Links are never followed: a source with links is refused.

    The copy is assembled under temporary names and renamed into place, folder first, so a crash
    leaves no half copy that opens (and the next copy, list or writer removes its temp files).
    Refuses an existing ``dst`` and a disk that cannot hold it.
    """
    src, dst = Path(src), Path(dst)
    if dst.parent.is_dir():
        remove_dead_copies(dst.parent)
    files = _check_copy_target(src, dst)
    try:
        check_free_space(dst.parent if dst.parent.exists() else Path("."), session_bytes(src))
    except WriteFailed as exc:
        raise SessionError(f"cannot copy session {src.stem}: {exc}") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = dst.parent / f".{data_dir(dst).name}.tmp-{os.getpid()}"
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    try:
        if files:
            tmp_dir.mkdir()
            for name in files:
                _copy_plain(data_dir(src) / name, tmp_dir / name)
        tmp.unlink(missing_ok=True)
        copy_exclusive(src, tmp)
        with h5py.File(tmp, "r+", libver=LIBVER) as f:
            _relink(f, data_dir(dst).name)
            f.attrs["session_id"] = uuid.uuid4().hex
        fsync_path(tmp)
        if tmp_dir.exists():
            fsync_dir(tmp_dir)
            os.replace(tmp_dir, data_dir(dst))
        os.replace(tmp, dst)
        trust(dst)
        fsync_dir(dst.parent)
    except OSError as exc:
        raise SessionError(describe_os_error(exc, dst, "copy the session to")) from None
    finally:
        tmp.unlink(missing_ok=True)
        remove_tree(tmp_dir)
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
        shards = [(a, b, f"{folder_name}/{Path(r).name}") for a, b, r in _read_shards(f, name)]
        _write_shards(f[name], shards)


def _sharded_groups(f: h5py.File) -> list[str]:
    out: list[str] = []
    f.visititems(lambda name, obj: out.append(name)
                 if isinstance(obj, h5py.Group) and SHARDS_ATTR in obj.attrs else None)
    return out

