"""Session sweeps: run any editing method's curve on the cached activations, store and load it.

One stored sweep per id (:func:`sweep_id`: method, feature(s), mode, modulation, class).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.control.curves import DEFAULT_N_ALPHAS, SweepResult
from core.control.spec import MODES, check_features
from core.control.sweep import sweep
from core.jobs import CancelToken, ProgressFn
from core.store.session import Session
from core.workflow.inputs import ControlInputs, check_writable, row_inputs_for


def sweep_id(result: SweepResult) -> str:
    """Storage key of a sweep: method, feature(s), mode, modulation and target class."""
    target = "none" if result.target_class is None else str(result.target_class)
    if result.method == "rome":
        source = str(result.extra.get("key_source", "class_mean")).replace(":", "")
        return f"rome-c{target}-{source}"
    feats = "+".join(str(k) for k in result.features)
    tail = result.modulation if result.method == "salve" else "beta"
    return f"{result.method}-f{feats}-{result.mode}-{tail}-c{target}"

def run_sweep(
    session: Session,
    target_class: int | None = None,
    feature: int | Sequence[int] | None = None,
    mode: str = "suppress",
    method: str = "salve",
    modulation: str = "linear",
    alphas: torch.Tensor | Sequence[float] | None = None,
    n_alphas: int = DEFAULT_N_ALPHAS,
    rome_sample: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> SweepResult:
    """Per-class accuracy vs strength for one method, recorded under ``control/sweeps``.

    Give a class (its dominant feature is swept) or a feature (target class: the class whose
    mean latent is largest on it), or both for a cross-class edit. ``alphas`` default to the
    automatic range (``core.control.sweep``). ROME sweeps the class logit's target value, steering β.
    """
    check_writable(session, record)
    x = row_inputs_for(session, inputs, split)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    features = None if feature is None else ([feature] if isinstance(feature, int) else feature)
    features = None if features is None else [int(k) for k in features]
    if target_class is None and not features:
        raise ValueError("give a target class or a feature to sweep")
    if features:
        check_features(x.D, features)
    if target_class is None:
        target_class = x.feature_class(features[0])
    if not 0 <= target_class < x.num_classes:
        raise ValueError(f"target class {target_class} is out of range (0..{x.num_classes - 1})")
    options = {"sample_index": rome_sample} if method == "rome" else {}
    if x.streamed:
        (result,) = streamed_sweeps(x, [(target_class, features)], method, alphas, mode, modulation,
                                    n_alphas, progress, cancel, **options)
    else:
        result = sweep(
            method, x.cached(), target_class, features, alphas, mode, modulation, n_alphas,
            progress, cancel, chunk_rows=sweep_chunk_rows(x.num_classes, n_alphas, x.A.shape[1]),
            **options,
        )
    if record:
        save_sweep(session, result, x.computed_from)
    return result

def sweep_chunk_rows(num_classes: int, n_alphas: int, dim: int = 0) -> int:
    """Samples per sweep chunk under the memory budget: a sweep holds ~six float64 values per
    sample and class (logits, slopes, margins, crossings), one per sample and grid value, and
    the chunk's float32 activations (``dim`` each) when they are read from disk. In memory and
    streamed sweeps use the same chunks, so they give the same curve bit for bit."""
    from core.workflow.outofcore import chunk_rows

    return chunk_rows(48 * num_classes + 8 * n_alphas + 4 * dim)


def streamed_sweeps(
    x: ControlInputs,
    targets: Sequence[tuple[int, Sequence[int] | None]],
    method: str = "salve",
    alphas: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    n_alphas: int = DEFAULT_N_ALPHAS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    class_rows: dict[int, torch.Tensor] | None = None,
    **options: Any,
) -> list[SweepResult]:
    """Sweeps of ``targets`` (``(class, features or None)``) with the activations on disk
    (``x.streamed``): one pass over the split's row blocks serves all of them.

    Each equals the in-memory ``run_sweep`` bit for bit: the grid comes from the target
    class's rows (``class_rows`` when given, else read in one pass), then the same row chunks
    (:func:`sweep_chunk_rows`) are summed as :func:`core.control.sweep.sweep_in_row_chunks`
    does. ROME (not row-chunked) and splits of one chunk load the split and sweep it whole.
    """
    from core.control.methods.base import CachedInputs
    from core.control.methods.registry import get_method
    from core.control.spec import check_mode
    from core.control.sweep import ROW_CHUNKED_METHODS, RowChunkedSweep
    from core.jobs import ProgressReporter, check_cancel

    m = get_method(method)
    check_mode(mode)
    source = x.rows
    rows = sweep_chunk_rows(x.num_classes, n_alphas, source.dim)
    if m.name not in ROW_CHUNKED_METHODS or source.n <= rows:
        from core.workflow.outofcore import warn_if_over_budget

        warn_if_over_budget(f"a {m.label} sweep of the whole split", 4 * source.n * source.dim, source.budget)
        whole = CachedInputs(source.load(), x.labels, x.W, x.b, x.D, x.M)
        return [sweep(m, whole, c, list(f) if f else None, alphas, mode, modulation, n_alphas, progress,
                      cancel, chunk_rows=rows, **options) for c, f in targets]
    sweeps = [RowChunkedSweep(m, c, list(f) if f else None, alphas, mode, modulation, n_alphas, options)
              for c, f in targets]
    need = sorted({s.target_class for s in sweeps if s.needs_grid})
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
    index = dict(session.read_json("control/sweep_index", {}) or {})
    computed_from = stage_runs(session) if computed_from is None else computed_from
    with session.transaction() as tx:
        (key,) = write_sweeps(tx, index, [result], computed_from)
    return key


def write_sweeps(tx: Any, index: dict[str, Any], results: Sequence[SweepResult],
                 computed_from: dict[str, float] | None = None) -> list[str]:
    """Write sweeps into an open transaction and ``index`` (the stored sweep index, updated and
    rewritten): several sweeps cost one commit. Returns their ids. ``computed_from``: the
    stage runs they were computed from (``core.workflow.provenance``)."""
    keys = []
    for result in results:
        key = sweep_id(result)
        meta = {k: v for k, v in result.to_dict().items() if k not in _SWEEP_ARRAYS}
        meta.update(n_alphas=int(result.alphas.numel()), recorded_at=time.time())
        if computed_from:
            meta["computed_from"] = dict(computed_from)
        index[key] = meta
        tx.write_arrays(
            f"control/sweeps/{key}",
            {
                "alphas": result.alphas.double().numpy(),
                "per_class_accuracy": result.per_class_accuracy.double().numpy(),
                "target_prediction": result.target_prediction.double().numpy(),
                "class_counts": np.asarray(result.class_counts, dtype=np.int64),
            },
        )
        keys.append(key)
    tx.write_json("control/sweep_index", index)
    return keys

_SWEEP_ARRAYS = ("alphas", "per_class_accuracy", "target_prediction", "class_counts")

def list_sweeps(session: Session) -> dict[str, dict[str, Any]]:
    """Stored sweeps: id → metadata (method, features, mode, modulation, target class, ...)."""
    return dict(session.read_json("control/sweep_index", {}) or {})

def load_sweep(session: Session, key: str) -> SweepResult:
    """A stored sweep by id (see :func:`list_sweeps`)."""
    index = list_sweeps(session)
    if key not in index:
        known = ", ".join(sorted(index)) or "none yet"
        raise KeyError(f"session {session.name} has no sweep '{key}' (stored: {known})")
    arrays = session.read_arrays(f"control/sweeps/{key}")
    meta = index[key]
    return SweepResult(
        method=meta["method"],
        features=list(meta["features"]),
        mode=meta["mode"],
        modulation=meta["modulation"],
        target_class=meta["target_class"],
        param_name=meta["param_name"],
        alphas=torch.from_numpy(arrays["alphas"]),
        per_class_accuracy=torch.from_numpy(arrays["per_class_accuracy"]),
        target_prediction=torch.from_numpy(arrays["target_prediction"]),
        class_counts=[int(c) for c in arrays["class_counts"]],
        extra=dict(meta.get("extra", {})),
    )

def curve_alpha50(result: SweepResult) -> list[float | None]:
    """Per class, the strength at which its accuracy falls to 50% on this curve (None: never)."""
    from core.control.alpha_crit import alpha50

    return [alpha50(result.alphas, result.per_class_accuracy[c]) for c in range(len(result.class_counts))]
