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
from core.workflow.inputs import ControlInputs, check_writable, inputs_for


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
    x = inputs_for(session, inputs, split)
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
    result = sweep(
        method, x.cached(), target_class, features, alphas, mode, modulation, n_alphas,
        progress, cancel, chunk_rows=sweep_chunk_rows(x.num_classes, n_alphas), **options,
    )
    if record:
        save_sweep(session, result)
    return result

def sweep_chunk_rows(num_classes: int, n_alphas: int) -> int:
    """Samples per sweep chunk under the memory budget: a sweep holds ~six float64 values per
    sample and class (logits, slopes, margins, crossings) and one per sample and grid value."""
    from core.workflow.outofcore import chunk_rows

    return chunk_rows(48 * num_classes + 8 * n_alphas)


def save_sweep(session: Session, result: SweepResult) -> str:
    """Store a sweep (arrays + index entry); returns its id. Replaces one with the same id."""
    check_writable(session, True)
    index = dict(session.read_json("control/sweep_index", {}) or {})
    with session.transaction() as tx:
        (key,) = write_sweeps(tx, index, [result])
    return key


def write_sweeps(tx: Any, index: dict[str, Any], results: Sequence[SweepResult]) -> list[str]:
    """Write sweeps into an open transaction and ``index`` (the stored sweep index, updated and
    rewritten): several sweeps cost one commit. Returns their ids."""
    keys = []
    for result in results:
        key = sweep_id(result)
        meta = {k: v for k, v in result.to_dict().items() if k not in _SWEEP_ARRAYS}
        meta.update(n_alphas=int(result.alphas.numel()), recorded_at=time.time())
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
