"""What a session is on disk: file names, format constants, errors and stage states.

A session is ``<name>.h5`` (small: JSON documents, small arrays, links) plus the folder
``<name>.data/`` holding its large arrays; ``<name>.h5.lock`` is the writer's lock file. Every
other module of the store builds on these names.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT_NAME = "salve-tui session"
SCHEMA_VERSION = 2  # 2: large arrays in files of their own under <name>.data/
SESSION_SUFFIX = ".h5"
DATA_SUFFIX = ".data"  # folder beside the session holding its large arrays
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



def lock_path(session_path: Path) -> Path:
    """The writer's lock file beside the session: ``<name>.h5.lock``."""
    return session_path.with_name(session_path.name + ".lock")


def tmp_path(session_path: Path, pid: int | None = None) -> Path:
    """The hidden temp file a writer (pid) assembles the next committed small file in."""
    return session_path.with_name(f".{session_path.name}.tmp-{os.getpid() if pid is None else pid}")
