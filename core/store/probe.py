"""The first open of a session this process did not write happens in a child process.

A damaged small file can crash the HDF5 library itself (one flipped bit in a virtual dataset's
mapping makes it segfault), which would end the process without a word. So before a session
file is used here for the first time, a child process opens it and walks every object the
in-process checks will touch; a child killed by a signal means the file is damaged. Files this
process wrote itself (created, committed, copied) or already probed are trusted by the SHA-256 of
their bytes (a byte copy of a trusted file needs no probe); files past ``HASH_MAX_BYTES`` by
their inode, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.store.layout import SessionCorrupt

PROBE_TIMEOUT_S = 300.0
HASH_MAX_BYTES = 64 << 20  # small files are hashed (milliseconds); larger ones keyed by stat
_trusted: set[tuple[object, ...]] = set()


def _key(path: Path) -> tuple[object, ...] | None:
    try:
        st = os.stat(path)
        if st.st_size > HASH_MAX_BYTES:
            return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with open(path, "rb") as handle:
            return (st.st_size, hashlib.sha256(handle.read()).hexdigest())
    except OSError:
        return None


def trust(path: Path) -> None:
    """Remember ``path`` as written by this process: its next open needs no probe."""
    key = _key(path)
    if key is not None:
        _trusted.add(key)


def probe(path: Path) -> None:
    """Open ``path`` once in a child process unless trusted; raise :class:`SessionCorrupt` when
    that crashes. Ordinary problems are left to the in-process checks, which name them."""
    key = _key(path)
    if key is None or key in _trusted:
        return
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run([sys.executable, "-m", "core.store.probe", str(path)], capture_output=True,
                              env=env, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SessionCorrupt(f"opening {path} did not finish in {PROBE_TIMEOUT_S:.0f} s; the file is damaged "
                             "or not a session") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise SessionCorrupt(f"opening {path} crashed the HDF5 library ({name}): the file is damaged and cannot "
                             "be used; restore it from a backup or recreate the session")
    _trusted.add(key)


def _walk(path: str) -> None:
    """What the child does: the open and the walk over every object's links and sources."""
    import h5py

    from core.store.untrusted import reference_problems

    try:
        with h5py.File(path, "r") as f:
            reference_problems(f, Path(path))
            f.attrs.items()
    except Exception:
        pass  # reported by the parent's own checks


if __name__ == "__main__":
    _walk(sys.argv[1])
