"""Sessions are files people send each other: checks that one never makes the tool touch files
outside it.

- No links: the session's array folder, the files in it and its lock file must be what they
  appear to be (not symbolic links), or a writer would delete or overwrite whatever they point
  at. A session file that is itself a link is read through but never written.
- Only its own files: every virtual-dataset source must be a file in ``<name>.data/``, named by
  a relative path without ``..``; external links and external raw storage are refused (HDF5
  would read any file on the machine through them).
- Files that are not plain files (a FIFO named ``x.h5``) are never opened: opening one blocks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

import h5py

from core.store.layout import SHARDS_ATTR, SessionCorrupt, SessionError, data_dir, lock_path
from core.store.limits import loads_bounded


class SessionUnsafe(SessionError):
    """The session refers to files outside itself, or its files are links."""


def is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def is_plain_file(path: Path) -> bool:
    """A regular file (following links): the only kind of file the store ever opens."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _refuse(path: Path, problem: str) -> SessionUnsafe:
    return SessionUnsafe(f"session {path} is refused: {problem}. It may come from someone else or "
                         "have been tampered with; nothing was read or written")


def link_problems(path: Path, writing: bool) -> list[str]:
    """What about the files of the session at ``path`` is a link (empty: nothing)."""
    problems: list[str] = []
    if writing and is_link(path):
        problems.append(f"the session file is a symbolic link to {os.readlink(path)}; open the "
                        "file it points to to change it (a write would replace the link)")
    if writing and is_link(lock_path(path)):
        problems.append(f"its lock file {lock_path(path).name} is a symbolic link; remove it")
    folder = data_dir(path)
    if is_link(folder):
        problems.append(f"its array folder {folder.name}/ is a symbolic link to {os.readlink(folder)}; "
                        "replace it by a real folder (copy the files in)")
    elif folder.is_dir():
        try:
            items = sorted(folder.iterdir())
        except OSError:
            items = []
        for item in items:
            mode = os.lstat(item).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a plain file"
                problems.append(f"{folder.name}/{item.name} is {kind}")
    return problems


def check_links(path: Path, writing: bool) -> None:
    """Raise :class:`SessionUnsafe` when the session at ``path`` has files that are links."""
    problems = link_problems(path, writing)
    if problems:
        raise _refuse(path, "; ".join(problems))


def own_source(session_path: Path, name: str) -> str | None:
    """Why the array-file name ``name`` (as stored) is not one of the session's own files, or None."""
    if name == ".":
        return None  # the small file itself
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or "\\" in name:
        return f"'{name}' is not a relative path inside {data_dir(session_path).name}/"
    if len(pure.parts) != 2 or pure.parts[0] != data_dir(session_path).name:
        return f"'{name}' is not a file of {data_dir(session_path).name}/"
    if is_link(session_path.parent / name):
        return f"'{name}' is a symbolic link"
    return None


def dataset_problems(session_path: Path, key: str, ds: h5py.Dataset) -> list[str]:
    """Foreign files one dataset reads: external raw storage, virtual sources outside the session."""
    if ds.external:
        return [f"'{key}' stores its bytes in the external file {ds.external[0][0]!r}"]
    if not ds.is_virtual:
        return []
    found = (own_source(session_path, vs.file_name) for vs in ds.virtual_sources())
    return [f"'{key}' reads {why}" for why in found if why]


def _link_problem(session_path: Path, f: h5py.File, name: str, link: object) -> list[str]:
    if isinstance(link, h5py.ExternalLink):
        return [f"'{name}' is an external link to {link.filename!r}"]
    if isinstance(link, h5py.SoftLink) or name not in f:
        return []
    obj = f[name]
    problems = dataset_problems(session_path, name, obj) if isinstance(obj, h5py.Dataset) else []
    if isinstance(obj, h5py.Group) and SHARDS_ATTR in obj.attrs:
        problems += shards_problems(session_path, name, obj.attrs[SHARDS_ATTR])
    return problems


def shards_problems(session_path: Path, key: str, raw: object) -> list[str]:
    """The ``shards`` attribute names files too: each must be the session's own."""
    try:
        shards = loads_bounded(raw.decode() if isinstance(raw, bytes) else str(raw), f"'{key}' shards")
        names = [str(entry[2]) for entry in shards]
    except (TypeError, ValueError, IndexError, KeyError, AttributeError):
        return [f"'{key}' has a damaged shards attribute"]
    return [f"'{key}' shards name {why}" for why in (own_source(session_path, n) for n in names) if why]


def reference_problems(f: h5py.File, session_path: Path) -> list[str]:
    """Every place ``f`` reads a file that is not the session's own (empty: none)."""
    problems: list[str] = []

    def visit(name: str, link: object) -> None:
        try:
            problems.extend(_link_problem(session_path, f, name, link))
        except Exception as exc:  # a damaged object: named, and the walk goes on
            problems.append(f"'{name}' cannot be read ({type(exc).__name__}: {exc})")

    try:
        f.visititems_links(visit)
    except Exception as exc:
        problems.append(f"the group structure is damaged ({type(exc).__name__}: {exc})")
    return problems


def check_references(f: h5py.File, session_path: Path) -> None:
    problems = reference_problems(f, session_path)
    damaged = [p for p in problems if "cannot be read" in p or "is damaged" in p]
    if damaged:
        raise SessionCorrupt(f"session {session_path} is damaged: {damaged[0]}. Run `salve verify "
                             f"{session_path}` to list every damaged part")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise _refuse(session_path, f"it reads files that are not its own: {shown}")
