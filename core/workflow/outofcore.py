"""Session arrays read block by block, and the choice between in-memory and chunked compute.

Everything here reads through the Session API (``Session.rows``, ``array_shape``), so it works
on any store layout. The memory budget is ``core.config.memory_budget`` (CLI
``--memory-budget``, ``$SALVE_MEMORY_BUDGET``, default a share of RAM).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from core.config import memory_budget
from core.discover.sae_stream import copy_blocks
from core.store.session import Session, SessionError

#: Rows per chunk for chunked passes (rankings, top samples): bounded by the budget too.
DEFAULT_CHUNK_ROWS = 65_536


class SessionRows:
    """A :class:`core.discover.sae_stream.RowSource` over one array of a session.

    The file is opened once per :meth:`read_blocks` call (a window of blocks), so commits
    between reads (checkpoints) never see a reader holding it open.
    """

    def __init__(self, session: Session, key: str) -> None:
        shape = session.array_shape(key)
        if shape is None:
            raise SessionError(f"session {session.name} has no '{key}' yet; run the stage that produces it")
        self.session, self.key, self.shape = session, key, tuple(shape)

    def read_blocks(self, ranges: Sequence[tuple[int, int]], out: np.ndarray) -> None:
        with self.session.rows(self.key) as ds:
            copy_blocks(ds, ranges, out)


def chunk_rows(row_bytes: int, budget: int | None = None, default: int = DEFAULT_CHUNK_ROWS) -> int:
    """Rows per chunk so that one chunk's working set (``row_bytes`` a row) stays well inside the
    budget: at most :data:`DEFAULT_CHUNK_ROWS`, at most a quarter of the budget."""
    budget = memory_budget() if budget is None else budget
    return max(1, min(default, budget // (4 * max(1, row_bytes))))


def iter_row_chunks(session: Session, keys: Sequence[str], rows: int) -> Iterator[tuple[int, list[np.ndarray]]]:
    """``(start, [key[start:start+rows] for key in keys])`` over arrays with the same row count."""
    shapes = [session.array_shape(k) for k in keys]
    missing = [k for k, s in zip(keys, shapes, strict=True) if s is None]
    if missing:
        raise SessionError(f"session {session.name} has no '{missing[0]}' yet; run the stage that produces it")
    n = shapes[0][0]
    if any(s[0] != n for s in shapes):
        raise SessionError(f"session {session.name}: arrays {', '.join(keys)} have different row counts "
                           f"({', '.join(str(s[0]) for s in shapes)}); rerun the activations stage")
    for start in range(0, n, rows):
        out = []
        for key in keys:
            with session.rows(key) as ds:
                out.append(np.asarray(ds[start : start + rows]))
        yield start, out
