"""Session sweeps: run any editing method's curve on the cached activations, store and load it.

One stored sweep per id (:func:`sweep_id`: method, feature(s), mode, modulation, class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.control.curves import DEFAULT_N_ALPHAS, SweepResult
from core.control.methods.base import CachedInputs, EditMethod, EditRequest
from core.control.methods.registry import get_method
from core.control.spec import check_features, check_mode
from core.control.sweep import RowChunkedSweep, sweep
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.workflow.inputs import ControlInputs, check_writable, row_inputs_for
from core.workflow.results import SWEEPS, NewResult


def sweep_id(result: SweepResult) -> str:
    """Storage key of a sweep (its method's :meth:`~EditMethod.sweep_key`: method, feature(s),
    mode, modulation and target class)."""
    return get_method(result.method).sweep_key(result)


def run_sweep(
    session: Session,
    target_class: int | None = None,
    feature: int | Sequence[int] | None = None,
    mode: str = "suppress",
    method: str | EditMethod | None = None,
    modulation: str = "linear",
    alphas: torch.Tensor | Sequence[float] | None = None,
    n_alphas: int = DEFAULT_N_ALPHAS,
    sample: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> SweepResult:
    """Load → :func:`compute_sweep` → record under ``control/sweeps`` (unless ``record`` is off).

    Give a class (its dominant feature is swept) or a feature (target class: the class whose
    mean latent is largest on it), or both for a cross-class edit. ``alphas`` default to the
    method's automatic range; ``sample``: the sample a method builds its edit from (ROME's key).
    """
    check_writable(session, record)
    x = row_inputs_for(session, inputs, split)
    features = [feature] if isinstance(feature, int) else feature
    request = EditRequest(target_class, features, alphas, mode, modulation, n_alphas,
                          {"sample_index": sample})
    result = compute_sweep(x, method, request, progress, cancel)
    if record:
        save_sweep(session, result, x.computed_from)
    return result


def resolve_request(x: ControlInputs, method: EditMethod, request: EditRequest) -> EditRequest:
    """``request`` checked against ``x`` with its target class filled in (from the first
    feature when only features are given); features are dropped for methods without them."""
    check_mode(request.mode)
    features, c = request.features, request.target_class
    if c is None and not features:
        raise ValueError("give a target class or a feature to sweep")
    if features:
        check_features(x.D, features)
    if c is None:
        c = x.feature_class(features[0])
    if not 0 <= c < x.num_classes:
        raise ValueError(f"target class {c} is out of range (0..{x.num_classes - 1})")
    return request.but(target_class=c, features=features if method.needs_features else None,
                       options=method.request_options(request.options))


def compute_sweep(
    x: ControlInputs,
    method: str | EditMethod | None,
    request: EditRequest,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """Per-class accuracy vs strength of one method on ``x`` (pure: nothing is written).

    In memory the sweep runs in row chunks of :func:`sweep_chunk_rows`; with the activations
    on disk (``x.streamed``) in one pass over the split's blocks, giving the same curve.
    """
    m = get_method(method)
    request = resolve_request(x, m, request)
    if x.streamed:
        (result,) = streamed_sweeps(x, m, [request], progress, cancel)
        return result
    rows = sweep_chunk_rows(x.num_classes, request.n_points, x.A.shape[1])
    return sweep(m, x.cached(), request, progress, cancel, chunk_rows=rows)


def sweep_chunk_rows(num_classes: int, n_alphas: int, dim: int = 0) -> int:
    """Samples per sweep chunk under the memory budget: a sweep holds ~six float64 values per
    sample and class (logits, slopes, margins, crossings), one per sample and grid value, and
    the chunk's float32 activations (``dim`` each) when they are read from disk. In memory and
    streamed sweeps use the same chunks, so they give the same curve bit for bit."""
    from core.workflow.outofcore import chunk_rows

    return chunk_rows(48 * num_classes + 8 * n_alphas + 4 * dim)


def streamed_sweeps(
    x: ControlInputs,
    method: str | EditMethod | None,
    requests: Sequence[EditRequest],
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    class_rows: dict[int, torch.Tensor] | None = None,
) -> list[SweepResult]:
    """Sweeps of ``requests`` (each with a target class) with the activations on disk
    (``x.streamed``): one pass over the split's row blocks serves all of them.

    Each equals the in-memory :func:`compute_sweep` bit for bit: the grid comes from the target
    class's rows (``class_rows`` when given, else read in one pass), then the same row chunks
    (:func:`sweep_chunk_rows`) are summed as :func:`core.control.sweep.sweep_in_row_chunks`
    does. Methods that are not row-chunked and splits of one chunk load the split and sweep
    it whole.
    """
    m = get_method(method)
    source = x.rows
    rows = sweep_chunk_rows(x.num_classes, max(r.n_points for r in requests), source.dim)
    if not m.row_chunked or source.n <= rows:
        from core.workflow.outofcore import warn_if_over_budget

        warn_if_over_budget(f"a {m.label} sweep of the whole split", 4 * source.n * source.dim, source.budget)
        whole = CachedInputs(source.load(), x.labels, x.W, x.b, x.D, x.M)
        return [sweep(m, whole, r, progress, cancel, chunk_rows=rows) for r in requests]
    sweeps = [RowChunkedSweep(m, r) for r in requests]
    need = sorted({int(s.target_class) for s in sweeps if s.needs_grid})
    missing = [c for c in need if class_rows is None or c not in class_rows]
    if missing:
        class_rows = {**(class_rows or {}), **source.class_rows(missing)}
    for s in sweeps:
        if s.needs_grid:
            mask = x.labels == s.target_class
            s.fix_grid(CachedInputs(class_rows[s.target_class], x.labels[mask], x.W, x.b, x.D, x.M), cancel)
    del class_rows  # the grid is fixed: free the rows read here before the pass over the blocks
    reporter = ProgressReporter("sweep", source.n, progress)
    for start, block in source.blocks(rows):
        check_cancel(cancel)
        chunk = CachedInputs(block, x.labels[start : start + len(block)], x.W, x.b, x.D, x.M)
        for s in sweeps:
            s.add(chunk, cancel)
        stop = start + len(block)
        reporter.report(stop, f"rows {stop:,}/{source.n:,} (from disk)")
    return [s.result() for s in sweeps]


def save_sweep(session: Session, result: SweepResult, computed_from: dict[str, float] | None = None) -> str:
    """Store a sweep (arrays + index entry); returns its id. Replaces one with the same id.
    ``computed_from``: the stage runs it read (default the session's current ones)."""
    from core.workflow.provenance import stage_runs

    check_writable(session, True)
    index = SWEEPS.load(session)
    computed_from = stage_runs(session) if computed_from is None else computed_from
    with session.transaction() as tx:
        (key,) = write_sweeps(tx, index, [result], computed_from)
    return key


def write_sweeps(tx: Any, index: dict[str, Any], results: Sequence[SweepResult],
                 computed_from: dict[str, float] | None = None) -> list[str]:
    """Write sweeps into an open transaction and ``index`` (the stored sweep index, updated and
    rewritten): several sweeps cost one commit. Returns their ids. ``computed_from``: the
    stage runs they were computed from (``core.workflow.provenance``)."""
    new = [NewResult(sweep_id(result),
                     {**{k: v for k, v in result.to_dict().items() if k not in _SWEEP_ARRAYS},
                      "n_alphas": int(result.alphas.numel())},
                     {"": {"alphas": result.alphas.double().numpy(),
                           "per_class_accuracy": result.per_class_accuracy.double().numpy(),
                           "target_prediction": result.target_prediction.double().numpy(),
                           "class_counts": np.asarray(result.class_counts, dtype=np.int64)}})
           for result in results]
    SWEEPS.save(tx, index, new, computed_from or {})
    return [r.key for r in new]

_SWEEP_ARRAYS = ("alphas", "per_class_accuracy", "target_prediction", "class_counts")

def list_sweeps(session: Session) -> dict[str, dict[str, Any]]:
    """Stored sweeps: id → metadata (method, features, mode, modulation, target class, ...)."""
    return SWEEPS.load(session)

def load_sweep(session: Session, key: str) -> SweepResult:
    """A stored sweep by id (see :func:`list_sweeps`)."""
    index = list_sweeps(session)
    if key not in index:
        known = ", ".join(sorted(index)) or "none yet"
        raise KeyError(f"session {session.name} has no sweep '{key}' (stored: {known})")
    return SweepResult.from_dict({**index[key], **SWEEPS.read_arrays(session, key)})

def curve_alpha50(result: SweepResult) -> list[float | None]:
    """Per class, the strength at which its accuracy falls to 50% on this curve (None: never)."""
    from core.control.alpha_crit import alpha50

    return [alpha50(result.alphas, result.per_class_accuracy[c]) for c in range(len(result.class_counts))]
