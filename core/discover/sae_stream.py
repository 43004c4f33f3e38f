"""Out-of-core SAE training: shuffled row blocks streamed from disk under a memory budget.

When the activations (plus the trainer's per-sample buffers) do not fit the memory budget
(``core.config.memory_budget``), :func:`train_sae_streamed` trains on them without loading
them: the rows are cut into contiguous **blocks** (cheap sequential reads), each epoch visits
the blocks in a shuffled order, a **window** of several blocks is held in memory at a time and
its rows are shuffled per seed. A background thread reads the next window while the current
one trains (the compiled kernel and torch release the GIL), so the disk and the CPU overlap.
Batches run on across window boundaries (the rows left over at the end of a window lead the
next one), so every batch but the epoch's last is full, as in memory.

Shuffling draws only from the seeds' generators (rows within a window) and from a generator
seeded by (first seed, epoch) (the block order), so a checkpointed state resumes exactly and
either trainer can resume the other's checkpoints. With one block covering all rows the
streamed epoch *is* the in-memory one (same permutation, same steps): tested bit for bit.

Epoch metrics are the in-memory ones accumulated window by window, with one difference:
``top5_share`` is estimated on the first :data:`TOP_SHARE_SAMPLES` rows of the first window.
The explained variance's denominator and the normalisation scale come from one streaming pass
(:func:`row_moments`, per-block float64 moments merged with Chan's formula).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from core.config import SAEConfig
from core.discover.sae import TOP_SHARE_SAMPLES, active_latents, sparsity_from_abs
from core.discover.sae_train import (
    DataParallel,
    EpochRunner,
    EpochStats,
    FastSAETrainer,
    SAEResult,
    SAETrainState,
    _check_settings,
    _start_state,
    run_training,
)
from core.jobs import CancelToken, ProgressFn, check_cancel

#: Blocks per window: how many far-apart stretches of the data one shuffle mixes.
BLOCKS_PER_WINDOW = 16
#: Smallest block worth a separate read (rows).
MIN_BLOCK_ROWS = 256
#: Rows per step of the metric reductions (bounds their temporaries).
STATS_ROWS = 8192
#: Share of the budget the plan fills (the rest: reader temporaries, allocator slack).
BUDGET_FILL = 0.85
#: Held back from the budget before filling it: HDF5's chunk caches (one per row-shard file
#: the reader opens) and torch's allocator do not scale with the window. Measured: 31 MiB over
#: a 256 MiB budget without it (bench/RESULTS.md).
FIXED_RESERVE_BYTES = 48 << 20


class RowSource(Protocol):
    """Rows of an (n × d) array that live elsewhere (a session file, an HDF5 dataset)."""

    shape: tuple[int, ...]

    def read_blocks(self, ranges: Sequence[tuple[int, int]], out: np.ndarray) -> None:
        """Fill ``out`` (float32, Σ(hi − lo) × d) with rows ``[lo, hi)`` of each range, in order."""


class ArrayRows:
    """A :class:`RowSource` over anything sliceable by rows (numpy array, h5py dataset)."""

    def __init__(self, array) -> None:
        self.array = array
        self.shape = tuple(array.shape)

    def read_blocks(self, ranges: Sequence[tuple[int, int]], out: np.ndarray) -> None:
        copy_blocks(self.array, ranges, out)


def copy_blocks(rows, ranges: Sequence[tuple[int, int]], out: np.ndarray) -> None:
    """``out[...] = concatenation of rows[lo:hi]`` for each range (one block in flight at a time)."""
    position = 0
    for lo, hi in ranges:
        out[position : position + hi - lo] = rows[lo:hi]
        position += hi - lo


@dataclass(frozen=True)
class StreamPlan:
    """How an epoch is cut: ``block_rows`` per read, ``blocks_per_window`` per shuffled window."""

    block_rows: int
    blocks_per_window: int

    @property
    def window_rows(self) -> int:
        return self.block_rows * self.blocks_per_window


def streamed_bytes_per_row(d: int, hidden: int, n_seeds: int) -> int:
    """Memory per window row: the window and the one being read (float32 d each), plus each
    seed's latents and residual norm for the metrics."""
    return 2 * 4 * d + n_seeds * (4 * hidden + 4)


def in_memory_bytes(n: int, d: int, hidden: int, n_seeds: int = 1, normalize: bool = False) -> int:
    """What :func:`core.discover.sae_train.train_sae` holds for ``n`` rows: the activations (twice
    when they are rescaled), each seed's latents, their |u| and activity mask for the metrics."""
    data = 4 * d * (2 if normalize else 1)
    return n * (data + n_seeds * (4 * hidden * 2 + hidden + 8))


def plan_stream(n: int, d: int, hidden: int, n_seeds: int, budget_bytes: int) -> StreamPlan:
    """The largest window the budget allows, in :data:`BLOCKS_PER_WINDOW` blocks."""
    usable = budget_bytes - FIXED_RESERVE_BYTES if budget_bytes > 4 * FIXED_RESERVE_BYTES else budget_bytes * 0.75
    rows = int(BUDGET_FILL * usable) // streamed_bytes_per_row(d, hidden, n_seeds)
    if rows < MIN_BLOCK_ROWS * 2:
        need = MIN_BLOCK_ROWS * 2 * streamed_bytes_per_row(d, hidden, n_seeds) / BUDGET_FILL / 0.75
        raise ValueError(
            f"a memory budget of {budget_bytes / 2**20:.0f} MiB is too small to stream {d}-dimensional "
            f"activations into a {hidden}-latent SAE; allow at least {need / 2**20:.0f} MiB "
            "(--memory-budget or $SALVE_MEMORY_BUDGET)"
        )
    block = max(MIN_BLOCK_ROWS, rows // BLOCKS_PER_WINDOW)
    per_window = max(2, min(BLOCKS_PER_WINDOW, rows // block))
    block = min(block, max(1, math.ceil(n / per_window)))  # small data: still several blocks
    return StreamPlan(block_rows=block, blocks_per_window=per_window)


# --------------------------------------------------------------------------- moments pass


@dataclass(frozen=True)
class RowMoments:
    """Float64 statistics of all rows: count, mean ||a||², Σ ||a − mean(a)||²."""

    n: int
    mean_sq_norm: float
    centred_energy: float

    def normalization_scale(self, d: int) -> float:
        """``s`` with ``mean ||s·a||² = d`` (as :func:`core.discover.sae.normalization_scale`)."""
        if not self.mean_sq_norm > 0:
            raise ValueError("the activations are all zero: they cannot be normalised")
        return math.sqrt(d / self.mean_sq_norm)


def row_moments(source: RowSource, block_rows: int, cancel: CancelToken | None = None) -> RowMoments:
    """One pass over ``source`` in blocks; rejects NaN/inf rows like the in-memory trainer."""
    n, d = _check_shape(source.shape)
    count, mean, m2, sq_norm = 0, np.zeros(d), 0.0, 0.0
    buffer = np.empty((min(block_rows, n), d), dtype=np.float32)
    for lo in range(0, n, block_rows):
        check_cancel(cancel)
        hi = min(lo + block_rows, n)
        block = buffer[: hi - lo]
        source.read_blocks([(lo, hi)], block)
        if not np.isfinite(block).all():
            raise ValueError(f"activations contain NaN or inf values (rows {lo}..{hi - 1}); re-extract them "
                             "(check the backbone)")
        x = block.astype(np.float64)
        block_mean = x.mean(0)
        block_m2 = float(np.square(x - block_mean).sum())
        sq_norm += float(np.square(x).sum())
        m = hi - lo
        delta = block_mean - mean
        total = count + m
        m2 += block_m2 + float(delta @ delta) * count * m / total  # Chan et al.'s pairwise merge
        mean += delta * (m / total)
        count = total
    return RowMoments(n=n, mean_sq_norm=sq_norm / n, centred_energy=m2)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"activations must be a (samples × features) matrix, got shape {tuple(shape)}; "
                         "extract activations first")
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------- the streamed epoch


def block_ranges(n: int, block_rows: int) -> list[tuple[int, int]]:
    return [(lo, min(lo + block_rows, n)) for lo in range(0, n, block_rows)]


def block_order(n_blocks: int, first_seed: int, epoch: int) -> list[int]:
    """The epoch's block order: a function of (seed, epoch) only, so resuming needs no state."""
    generator = torch.Generator().manual_seed(first_seed * 1_000_003 + epoch)
    return torch.randperm(n_blocks, generator=generator).tolist()


class _EpochTotals:
    """The in-memory epoch metrics, accumulated over the windows' training steps."""

    def __init__(self, n_seeds: int, hidden: int, exact_zero: bool, device: torch.device) -> None:
        zeros = lambda: torch.zeros(n_seeds, dtype=torch.float64, device=device)  # noqa: E731
        self.sq_err, self.active, self.abs_sum = zeros(), zeros(), zeros()
        self.ever_active = torch.zeros(n_seeds, hidden, dtype=torch.bool, device=device)
        self.top5_share: Tensor | None = None
        self.exact_zero, self.rows, self.hidden = exact_zero, 0, hidden

    def add(self, latents: Tensor, err_norm: Tensor) -> None:
        self.sq_err += err_norm.double().square().sum(1)
        if self.top5_share is None:
            first = latents[:, :TOP_SHARE_SAMPLES].abs()
            self.top5_share = sparsity_from_abs(first, self.exact_zero)["top5_share"]
        for lo in range(0, latents.shape[1], STATS_ROWS):
            part = latents[:, lo : lo + STATS_ROWS].abs()
            active = active_latents(part, self.exact_zero)
            self.active += active.sum((-2, -1)).double()
            self.ever_active |= active.any(-2)
            self.abs_sum += part.sum((-2, -1)).double()
        self.rows += latents.shape[1]

    def stats(self) -> EpochStats:
        rows = max(1, self.rows)
        top5 = self.top5_share if self.top5_share is not None else torch.full_like(self.sq_err, math.nan)
        return EpochStats(
            sq_err=self.sq_err, l0=self.active / rows, top5_share=top5,
            dead=(~self.ever_active).sum(-1).double(), mean_abs=self.abs_sum / (rows * self.hidden),
        )


def window_orders(generators: list[torch.Generator], carried: int, new: int) -> Tensor:
    """Each seed's row order in a window (K × (carried + new)): seed s first takes its own
    ``carried`` rows left over from the last window (rows ``s·carried …``), then the window's
    ``new`` rows (after the K·carried carried ones) in its own random order."""
    K = len(generators)
    return torch.stack([
        torch.cat([torch.arange(s * carried, (s + 1) * carried),
                   torch.randperm(new, generator=g) + K * carried])
        for s, g in enumerate(generators)
    ])


def _train_rows(trainer: FastSAETrainer, data: Tensor, orders: Tensor, config: SAEConfig, lr: float,
                totals: _EpochTotals) -> None:
    """One pass of every seed over ``data`` in its order, adding the latents to ``totals``."""
    K, n_train = orders.shape
    latents = torch.empty(K, n_train, config.hidden, device=data.device)
    err_norm = torch.empty(K, n_train, device=data.device)
    trainer.train_epoch(data, orders, config.batch_size, lr, latents, err_norm)
    totals.add(latents, err_norm)


def streamed_epoch(
    source: RowSource, plan: StreamPlan, config: SAEConfig, first_seed: int, scale: float = 1.0,
    device: torch.device | str = "cpu", on_window: Callable[[int, int], None] | None = None,
) -> EpochRunner:
    """An :data:`~core.discover.sae_train.EpochRunner` reading ``source`` window by window.

    ``scale`` multiplies every row as it is read (the SAE normalisation); ``on_window(i, of)``
    is told each finished window (tests, progress).
    """
    n, d = _check_shape(source.shape)
    device = torch.device(device)
    blocks = block_ranges(n, plan.block_rows)

    def read(window: list[tuple[int, int]], spare: int) -> np.ndarray:
        """The window's rows after ``spare`` free rows (where the carried rows go: no copy)."""
        out = np.empty((spare + sum(hi - lo for lo, hi in window), d), dtype=np.float32)
        source.read_blocks(window, out[spare:])
        return out

    def run(trainer: FastSAETrainer, generators: list[torch.Generator], lr: float, epoch: int) -> EpochStats:
        K = len(generators)
        order = block_order(len(blocks), first_seed, epoch)
        windows = [[blocks[i] for i in order[j : j + plan.blocks_per_window]]
                   for j in range(0, len(order), plan.blocks_per_window)]
        totals = _EpochTotals(K, config.hidden, config.kind == "topk", device)
        carried: Tensor | None = None  # rows each seed has not trained on yet (K·r × d, seed-major)
        spare = K * config.batch_size  # carried rows are fewer than a batch per seed
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sae-reader") as pool:
            pending = pool.submit(read, windows[0], spare)
            for index in range(len(windows)):
                rows = pending.result()
                if index + 1 < len(windows):
                    pending = pool.submit(read, windows[index + 1], spare)
                window = torch.from_numpy(rows)
                if scale != 1.0:
                    window[spare:].mul_(scale)
                r = 0 if carried is None else carried.shape[0] // K
                if r:
                    window[spare - K * r : spare] = carried
                data = window[spare - K * r :].to(device)
                del window, rows
                m = data.shape[0] - K * r
                orders = window_orders(generators, r, m).to(device)
                last = index == len(windows) - 1
                n_train = r + m if last else (r + m) // config.batch_size * config.batch_size
                if n_train:
                    _train_rows(trainer, data, orders[:, :n_train].contiguous(), config, lr, totals)
                carried = None if last else data[orders[:, n_train:].reshape(-1)]
                del data
                if on_window is not None:
                    on_window(index + 1, len(windows))
        return totals.stats()

    return run


def train_sae_streamed(
    source: RowSource,
    config: SAEConfig,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    budget_bytes: int,
    n_seeds: int = 1,
    resume: SAETrainState | None = None,
    on_checkpoint: Callable[[SAETrainState], None] | None = None,
    device: torch.device | str | None = None,
    native: bool | None = None,
    scale: float = 1.0,
    moments: RowMoments | None = None,
    plan: StreamPlan | None = None,
    data_parallel: DataParallel | None = None,
) -> SAEResult:
    """:func:`core.discover.sae_train.train_sae` on rows read from ``source`` under ``budget_bytes``.

    Same schedule, checkpoints, cancellation (between epochs) and resume as the in-memory
    trainer; ``scale`` rescales rows as they are read (pass
    ``moments.normalization_scale(d)`` for the SAE normalisation). ``moments`` (else computed
    by one pass) gives the explained variance's denominator; ``plan`` overrides the block
    layout the budget implies. ``data_parallel``: one rank of a torch.distributed group; every
    rank reads the same windows in the same order and computes its share of each batch (the
    gradients are all-reduced), so each holds at most the budget, not the activations.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    _check_settings(config, n_seeds)
    n, d = _check_shape(source.shape)
    k = n_seeds if resume is None else len(resume.seeds)
    plan = plan or plan_stream(n, d, config.hidden, k, budget_bytes)
    state = _start_state(config, n_seeds, n, d, resume)
    moments = moments or row_moments(source, plan.block_rows, cancel)
    runner = streamed_epoch(source, plan, config, state.seeds[0], scale, device)
    return run_training(
        config, state, runner, moments.centred_energy * scale * scale, progress, cancel,
        resumed=resume is not None, on_checkpoint=on_checkpoint, device=device,
        native=False if data_parallel is not None else native, data_parallel=data_parallel,
    )
