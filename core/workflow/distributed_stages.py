"""Pipeline stages under ``torchrun``: every rank computes its shard, rank 0 commits.

``torchrun --nproc-per-node N --no-python salve run SESSION activations``: each rank opens the
session read-only, extracts the activations of its shard of whole batches
(:func:`core.discover.distributed.batch_shard`) and writes them to a shard file next to the
session (temp file, fsync, rename, so a killed rank leaves no half shard and a rerun reuses the
shards already written). After a barrier rank 0 alone takes the session's write lock and commits
the shards in row order; the rows are those a single-process run computes, batch for batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.atomic import atomic_write
from core.discover.distributed import DistContext, barrier, batch_shard
from core.jobs import CancelToken, ProgressFn, ProgressReporter
from core.store.session import Session
from core.workflow.pipeline import _check_requirements, load_data, load_model, run_sae
from core.workflow.stage_activations import finish_activations

SPLITS = ("train", "test")


def shard_path(session_path: Path, split: str, ctx: DistContext) -> Path:
    return session_path.with_name(f".{session_path.name}.shard-{split}-{ctx.rank}-of-{ctx.world_size}.npz")


def _write_shard(path: Path, start: int, stop: int, rows: list) -> None:
    arrays = {"start": np.int64(start), "stop": np.int64(stop)}
    if rows:
        arrays.update(a=np.concatenate([r[1] for r in rows]), logits=np.concatenate([r[2] for r in rows]),
                      labels=np.concatenate([r[3] for r in rows]))
    with atomic_write(path, "wb", overwrite=True) as handle:  # a killed rank leaves no half shard
        np.savez(handle, **arrays)


def _shard_is_complete(path: Path, start: int, stop: int) -> bool:
    try:
        with np.load(path) as z:
            return int(z["start"]) == start and int(z["stop"]) == stop and (
                stop == start or z["a"].shape[0] == stop - start)
    except (OSError, KeyError, ValueError):
        return False


def extract_shards(session_path: Path, ctx: DistContext, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None, batch_size: int = 128) -> list[Path]:
    """This rank's part of the activations stage: its shard of each split, as files."""
    from core.discover.activations import iter_activations

    with Session.open(session_path, read_only=True) as reader:
        _check_requirements(reader, "activations")
        config = reader.config
        model = load_model(reader, ctx.device(config.device))
    bundle = load_data(config)
    device = next(model.parameters()).device
    sources = {"train": bundle.train, "test": bundle.test}
    bounds = {s: batch_shard(len(src), batch_size, ctx.rank, ctx.world_size) for s, src in sources.items()}
    reporter = ProgressReporter(f"activations (rank {ctx.rank})", sum(b - a for a, b in bounds.values()), progress)
    written, done = [], 0
    for split, source in sources.items():
        start, stop = bounds[split]
        path = shard_path(session_path, split, ctx)
        if not _shard_is_complete(path, start, stop):
            rows = list(iter_activations(model, source, device, batch_size, start, cancel, stop))
            _write_shard(path, start, stop, rows)
        done += stop - start
        reporter.report(done, f"{split} rows {start}–{stop}")
        written.append(path)
    return written


def commit_shards(session: Session, world_size: int) -> None:
    """Rank 0: write every rank's shards into the session in row order, then finish the stage."""
    stages = session.stages()
    for split in SPLITS:
        parts = []
        for rank in range(world_size):
            path = shard_path(session.path, split, DistContext(rank, world_size))
            with np.load(path) as z:
                parts.append({k: z[k] for k in z.files})
        filled = [p for p in parts if "a" in p]
        n = max(int(p["stop"]) for p in parts)
        with session.transaction() as tx:
            for p in sorted(filled, key=lambda p: int(p["start"])):  # one shard file per rank
                tx.append_rows(f"activations/{split}", int(p["start"]), n,
                               {"a": p["a"].astype(np.float32), "logits": p["logits"].astype(np.float32),
                                "labels": p["labels"].astype(np.int64)})
            tx.set_stage("activations", "partial", f"{split}: {n}/{n} rows from {world_size} ranks")
    finish_activations(session, stages)


def run_activations_distributed(session_path: Path, ctx: DistContext, progress: ProgressFn | None = None,
                                cancel: CancelToken | None = None, batch_size: int = 128) -> None:
    """The activations stage across ``ctx.world_size`` processes (call on every rank)."""
    shards = extract_shards(session_path, ctx, progress, cancel, batch_size)
    barrier(ctx)
    if ctx.is_main:
        with Session.open(session_path) as session:
            commit_shards(session, ctx.world_size)
    barrier(ctx)
    for path in shards:  # each rank removes its own shards once they are committed
        path.unlink(missing_ok=True)


def run_sae_distributed(session_path: Path, ctx: DistContext, progress: ProgressFn | None = None,
                        cancel: CancelToken | None = None) -> None:
    """The SAE stage data-parallel (call on every rank): each rank computes its share of every
    batch, gradients are summed across ranks, rank 0 writes checkpoints and the result."""
    from core.discover.sae_train import DataParallel

    parallel = DataParallel(ctx.rank, ctx.world_size)
    with Session.open(session_path, read_only=not ctx.is_main) as session:
        _check_requirements(session, "sae")
        run_sae(session, progress, cancel, data_parallel=parallel, device=ctx.device(session.config.device))
    barrier(ctx)
