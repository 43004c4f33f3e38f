"""The activations stage: stream both splits' activations, logits and labels into the session as
row shards, committed as they come so a cancelled or killed run resumes by row."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import RowBlocks, Session
from core.workflow.readers import load_data, load_model
from core.workflow.stage_order import _mark_downstream_stale

COMMIT_INTERVAL_S = 20.0  # streaming stages commit at most this often (resume granularity)
COMMIT_MAX_BYTES = 256 << 20  # ... and at least every this many extracted bytes (see commit_bytes)
COMMIT_MIN_BYTES = 16 << 20

def run_activations(session: Session, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None, batch_size: int = 128) -> None:
    """Stream activations/logits/labels of both splits into the session, resumable by row."""
    config = session.config
    bundle = load_data(config)
    check_cancel(cancel)
    model = load_model(session)
    check_cancel(cancel)
    device = next(model.parameters()).device
    stages = session.stages()
    progress_info = session.read_json("activations/progress", {}) or {}
    splits = {"train": bundle.train, "test": bundle.test}
    total = sum(len(s) for s in splits.values())
    resumed = sum(min(int(progress_info.get(split, 0)), len(source)) for split, source in splits.items())
    reporter = ProgressReporter("activations", total, progress, start=resumed)
    done_before = 0
    for split, source in splits.items():
        stream_activations(session, split, model, source, device, batch_size, progress_info, cancel,
                           lambda rows, text, base=done_before: reporter.report(base + rows, text))
        done_before += len(source)
    finish_activations(session, stages)


def commit_bytes(budget: int | None = None) -> int:
    """Extracted bytes after which the activation stage commits a shard, whatever the time.

    Without it a fast model piles up rows between two timed commits (20 s of a cheap backbone
    is gigabytes) and the last commit writes them all after the forward passes are over, so
    nothing overlaps. A sixteenth of the memory budget, clamped to [16 MiB, 256 MiB]: at most
    two such blocks are held (one being written, one filling).
    """
    from core.config import memory_budget

    budget = memory_budget() if budget is None else budget
    return int(min(COMMIT_MAX_BYTES, max(COMMIT_MIN_BYTES, budget // 16)))


def stream_activations(session: Session, split: str, model: Any, source: Any, device: Any, batch_size: int,
                       progress_info: dict[str, int], cancel: CancelToken | None = None,
                       report: Callable[[int, str], None] | None = None,
                       commit_interval_s: float | None = None, max_pending_bytes: int | None = None) -> None:
    """Extract one split's rows from ``progress_info[split]`` on and commit them as row shards.

    A commit (one new shard file plus a small transaction) happens every ``commit_interval_s``
    seconds or every ``max_pending_bytes`` extracted bytes (default :func:`commit_bytes`),
    whichever comes first, so a crash loses at most that much work, memory stays bounded and no
    commit copies earlier rows. ``progress_info`` is updated in place with the committed row count.
    """
    from core.discover.activations import iter_activations

    interval = COMMIT_INTERVAL_S if commit_interval_s is None else commit_interval_s
    max_bytes = commit_bytes() if max_pending_bytes is None else max_pending_bytes
    pending_bytes = 0
    n = len(source)
    start = int(progress_info.get(split, 0))
    if start >= n:
        return
    pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    last_commit = time.monotonic()

    commit = partial(_commit_rows, session, split, n, progress_info)

    # Commits run on one background thread while extraction goes on (HDF5 writes release the
    # GIL), one at a time and in row order; an error in one surfaces at the next commit or the end.
    from concurrent.futures import Future, ThreadPoolExecutor

    in_flight: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="activation-commit") as pool:
        try:
            for row, a, logits, labels in iter_activations(model, source, device, batch_size, start, cancel):
                pending.append((row, a, logits, labels))
                pending_bytes += a.nbytes + logits.nbytes + labels.nbytes
                if report is not None:
                    report(row + len(a), f"{split} {row + len(a)}/{n}")
                if pending_bytes >= max_bytes or time.monotonic() - last_commit > interval:
                    if in_flight is not None:
                        in_flight.result()  # back-pressure: one block written while the next fills
                    in_flight = pool.submit(commit, pending)
                    pending, pending_bytes, last_commit = [], 0, time.monotonic()
        finally:  # a cancel (or any error) still keeps every row extracted so far
            if in_flight is not None:
                in_flight.result()
            commit(pending)


def _commit_rows(session: Session, split: str, n: int, progress_info: dict[str, int],
                 rows: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Commit consecutive extracted batches ``(first row, a, logits, labels)`` of ``split`` (``n``
    rows in all) as one new shard file (earlier rows are never rewritten) and note the progress."""
    if not rows:
        return
    first = rows[0][0]
    count = sum(len(r[1]) for r in rows)

    def blocks(i: int, dtype: Any) -> RowBlocks:
        return RowBlocks(tuple(np.asarray(r[i], dtype=dtype) for r in rows))

    with session.transaction() as tx:
        tx.append_rows(f"activations/{split}", first, n,
                       {"a": blocks(1, np.float32), "logits": blocks(2, np.float32),
                        "labels": blocks(3, np.int64)})
        progress_info[split] = first + count
        tx.write_json("activations/progress", progress_info)
        tx.set_stage("activations", "partial", f"{split}: {first + count}/{n} rows",
                     rows=dict(progress_info))


def finish_activations(session: Session, stages: dict) -> None:
    """Mark the activations stage done once every row of both splits is in the session."""
    test = session.read_arrays("activations/test")
    acc = float((test["logits"].argmax(1) == test["labels"]).mean())
    with session.transaction() as tx:
        tx.update_json("summary", activation_dim=int(test["a"].shape[1]), cached_test_accuracy=acc)
        tx.set_stage("activations", "done", f"d={test['a'].shape[1]}, test acc from cache {acc:.3f}")
        tx.delete("activations/progress")
        _mark_downstream_stale(tx, "activations", stages)
