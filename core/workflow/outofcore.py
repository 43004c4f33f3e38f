"""Session arrays read block by block, and the choice between in-memory and chunked compute.

Everything here reads through the Session API (``Session.rows``, ``array_shape``), so it works
on any store layout. The memory budget is ``core.config.memory_budget`` (CLI
``--memory-budget``, ``$SALVE_MEMORY_BUDGET``, default a share of RAM).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.config import memory_budget
from core.discover.sae_stream import copy_blocks
from core.store.session import Session, SessionError

if TYPE_CHECKING:
    import torch

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


#: Bytes one (row, latent) cell of a column block costs in an AUROC pass: the float64 latent,
#: its float64 rank, the sort's int64 order and the sorted float64 copy.
AUROC_CELL_BYTES = 32
#: Rows encoded together at least (see :meth:`LatentColumns._encode`).
MIN_ENCODE_ROWS = 64


class LatentColumns:
    """SAE latents ``u`` of chosen rows of a split, served a block of columns at a time.

    When every column of the chosen rows fits the memory budget, the rows are encoded once and
    kept (the in-memory path); otherwise each request re-encodes the split in row chunks and
    keeps only the requested columns, so at most ``rows × columns`` latents are ever held.
    Both paths encode the split in the same row chunks (sized by the budget, at least
    :data:`MIN_ENCODE_ROWS` rows), so they give the same latents bit for bit; chunks of other
    sizes agree to float32 rounding (bit for bit with this machine's BLAS, as the rankings'
    chunked pass also relies on).
    """

    def __init__(self, session: Session, sae, key: str, rows: np.ndarray | None = None,
                 budget: int | None = None, cancel=None) -> None:
        self.session, self.sae, self.key, self.cancel = session, sae, key, cancel
        n, self.dim = SessionRows(session, key).shape
        self.rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        if np.any(np.diff(self.rows) <= 0):
            raise ValueError("rows must be sorted and distinct")
        self.hidden = int(sae.encoder.weight.shape[0])
        self.budget = memory_budget() if budget is None else budget
        self.passes = 0  # encoding passes over the split so far (a cost the bench reads)
        self._all: np.ndarray | None = None

    @property
    def block_columns(self) -> int:
        """Columns per block so that one block's AUROC working set fits the budget."""
        return max(1, min(self.hidden, self.budget // (AUROC_CELL_BYTES * max(1, len(self.rows)))))

    @property
    def in_memory(self) -> bool:
        return self.block_columns >= self.hidden

    def columns(self, columns: Sequence[int] | slice) -> np.ndarray:
        """``u[rows][:, columns]`` as float64 (``len(rows) × len(columns)``)."""
        if self.in_memory:
            if self._all is None:
                self._all = self._encode(slice(None))
            return self._all[:, columns]
        return self._encode(columns)

    def subset(self, positions: np.ndarray) -> LatentColumns:
        """The same latents restricted to ``rows[positions]`` (sharing what is already encoded)."""
        part = LatentColumns.__new__(LatentColumns)
        part.__dict__.update(self.__dict__)
        part.rows = self.rows[np.asarray(positions, dtype=np.int64)]
        part._all = None if self._all is None else self._all[positions]
        return part

    def column_blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first column, block)`` over all latents, each block at most :attr:`block_columns` wide."""
        step = self.block_columns
        for start in range(0, self.hidden, step):
            yield start, self.columns(slice(start, min(start + step, self.hidden)))

    def _encode(self, columns: Sequence[int] | slice) -> np.ndarray:
        import torch

        from core.discover.sae import encode
        from core.jobs import check_cancel

        width = len(range(self.hidden)[columns]) if isinstance(columns, slice) else len(columns)
        out = np.empty((len(self.rows), width), dtype=np.float64)
        # never fewer than MIN_ENCODE_ROWS rows a chunk: a one-row product takes another BLAS
        # path whose float32 rounding differs from the batched one
        rows_per_chunk = max(MIN_ENCODE_ROWS, chunk_rows(4 * (self.dim + self.hidden), self.budget))
        n = self.session.array_shape(self.key)[0]
        filled = 0
        for start in range(0, n, rows_per_chunk):
            stop = min(start + rows_per_chunk, n)
            lo, hi = np.searchsorted(self.rows, [start, stop])  # rows are sorted
            if lo == hi:
                continue
            check_cancel(self.cancel)
            with self.session.rows(self.key) as ds:
                a = np.asarray(ds[start:stop])[self.rows[lo:hi] - start]
            with torch.no_grad():
                u = encode(self.sae, torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))).cpu().numpy()
            out[filled : filled + len(u)] = u[:, columns]
            filled += len(u)
        self.passes += 1
        return out


def latent_aurocs(latents: LatentColumns, positives: np.ndarray) -> np.ndarray:
    """``auroc_matrix(u[rows], positives)`` ``(h, n)``, one block of latent columns at a time.

    A column's AUROC depends on that column only, and the rank sums it is built from are sums
    of half-integers (exact in float64), so the blocks give the one-pass table bit for bit.
    """
    from core.validate.groundtruth import auroc_matrix

    positives = np.asarray(positives).astype(bool)
    positives = positives[:, None] if positives.ndim == 1 else positives
    table = np.empty((latents.hidden, positives.shape[1]), dtype=np.float64)
    for start, block in latents.column_blocks():
        table[start : start + block.shape[1]] = auroc_matrix(block, positives)
    return table


class SplitRows:
    """One split's activations ``A`` (N×d) left in the session: row blocks and the rows of
    chosen classes read on demand (float32 tensors), for sweeps and α_crit past the budget."""

    def __init__(self, session: Session, key: str, labels: np.ndarray, budget: int | None = None) -> None:
        self.session, self.key = session, key
        self.n, self.dim = SessionRows(session, key).shape
        self.labels = np.asarray(labels, dtype=np.int64)
        self.budget = memory_budget() if budget is None else budget
        self.passes = 0  # reads of the whole split so far

    def blocks(self, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, A[start:start+rows])`` over the split, in row order.

        Every block is read into the same buffer (``read_direct``), so a pass holds one block,
        not the one in use plus the next: a block is valid until the next one is requested.
        """
        import torch

        self.passes += 1
        buffer = np.empty((min(rows, self.n), self.dim), dtype=np.float32)
        for start in range(0, self.n, rows):
            block = self._read(start, min(start + rows, self.n), buffer)
            yield start, torch.from_numpy(block)

    def class_rows(self, classes: Sequence[int]) -> dict[int, torch.Tensor]:
        """``{c: A[labels == c]}`` for each class, in one pass over the split (blocks of a
        quarter of the budget; a class whose rows alone pass the budget is warned about)."""
        import torch

        wanted = {int(c): np.flatnonzero(self.labels == c) for c in classes}
        for c, idx in wanted.items():
            warn_if_over_budget(f"class {c}", len(idx) * 4 * self.dim, self.budget)
        out = {c: np.empty((len(idx), self.dim), dtype=np.float32) for c, idx in wanted.items()}
        filled = dict.fromkeys(wanted, 0)
        rows = chunk_rows(4 * self.dim, self.budget)
        buffer = np.empty((min(rows, self.n), self.dim), dtype=np.float32)
        self.passes += 1
        for start in range(0, self.n, rows):
            stop = min(start + rows, self.n)
            picks = {c: idx[(idx >= start) & (idx < stop)] - start for c, idx in wanted.items()}
            if not any(len(p) for p in picks.values()):
                continue
            block = self._read(start, stop, buffer)
            for c, p in picks.items():
                np.take(block, p, axis=0, out=out[c][filled[c] : filled[c] + len(p)])
                filled[c] += len(p)
        return {c: torch.from_numpy(a) for c, a in out.items()}

    def _read(self, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        """``A[start:stop]`` read into the first rows of ``buffer`` (no other copy)."""
        block = buffer[: stop - start]
        with self.session.rows(self.key) as ds:
            if ds.dtype == np.float32:
                ds.read_direct(block, np.s_[start:stop], np.s_[0 : stop - start])
            else:
                block[...] = ds[start:stop]
        return block

    def load(self) -> torch.Tensor:
        """The whole split (for methods that cannot run in row chunks)."""
        import torch

        self.passes += 1
        with self.session.rows(self.key) as ds:
            return torch.from_numpy(np.ascontiguousarray(ds[()], dtype=np.float32))


class MemoryBudgetWarning(UserWarning):
    """Work that has to hold more than the memory budget at once (it still runs)."""


def warn_if_over_budget(what: str, nbytes: int, budget: int) -> bool:
    """Warn (:class:`MemoryBudgetWarning`, with the numbers) when ``what`` must be held whole
    and takes more than ``budget`` bytes; True when it did."""
    if nbytes <= budget:
        return False
    import warnings

    warnings.warn(
        f"{what}: its activations ({nbytes / 2**20:,.0f} MiB) are held whole and exceed the memory "
        f"budget ({budget / 2**20:,.0f} MiB), so peak memory will pass the budget; raise the budget "
        "(--memory-budget / $SALVE_MEMORY_BUDGET) if the machine has the memory",
        MemoryBudgetWarning, stacklevel=3,
    )
    return True


def split_fits(session: Session, key: str, budget: int | None = None) -> bool:
    """Do a split's activations (``key``) take at most half the budget (the rest: the work on them)?"""
    shape = session.array_shape(key)
    budget = memory_budget() if budget is None else budget
    return shape is None or 4 * int(np.prod(shape)) <= budget // 2


def class_batches(labels: np.ndarray, classes: Sequence[int], row_bytes: int, budget: int | None = None,
                  class_bytes: int = 0) -> Iterator[list[int]]:
    """``classes`` in order, grouped so that one group's rows (``row_bytes`` each) plus
    ``class_bytes`` a class take at most a quarter of the budget (a class too large alone
    still forms its own group)."""
    budget = memory_budget() if budget is None else budget
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=max(classes, default=-1) + 1)
    group: list[int] = []
    used = 0
    for c in classes:
        cost = int(counts[c]) * row_bytes + class_bytes
        if group and used + cost > budget // 4:
            yield group
            group, used = [], 0
        group.append(int(c))
        used += cost
    if group:
        yield group
