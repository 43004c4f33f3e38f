"""The outcome the defaults are judged by, measured once the rankings are done (issue 19).

Per class (all of them, or :data:`CHECK_MAX_CLASSES` evenly spaced): does the dominant
feature's SALVE sweep (suppression, linear, test split, automatic grid) have a selective window,
and do both controls (the lowest-association feature, a random direction) keep the target at
≥ 50% at the edit's own α50? The numbers are those of ``salve sweep SESSION --class C``
(``core.workflow.selectivity.selectivity_report`` without the train split), computed from the
session's arrays with ``core.control`` alone: the pipeline's quality gates
(``core.workflow.quality``) call this, so it must not import the pipeline or the control inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from core.config import memory_budget
from core.control.alpha_crit import alpha50
from core.control.methods.base import CachedInputs, EditRequest
from core.control.selectivity import control_summary, control_sweeps, selectivity, unedited_accuracy
from core.control.sweep import sweep
from core.store.session import Session

CHECK_MAX_CLASSES = 100
CONTROL_HOLDS = 0.5  # a control "holds" when the target keeps ≥ 50% at the edit's own α50


def check_classes(n_classes: int, limit: int = CHECK_MAX_CLASSES) -> list[int]:
    """All classes, or ``limit`` of them evenly spaced (first and last included)."""
    if n_classes <= limit:
        return list(range(n_classes))
    return sorted({round(i * (n_classes - 1) / (limit - 1)) for i in range(limit)})


def split_inputs(session: Session) -> CachedInputs | None:
    """The test split's cached inputs, or None when its activations take more than half the
    memory budget (a streamed session is checked by ``salve sweep --all-dominant``)."""
    n, d = session.array_shape("activations/test/a")
    if 4 * n * d > memory_budget() // 2:
        return None
    head = session.read_json("backbone/head")
    with session.reader() as f:
        W, b = f[f"backbone/state_dict/{head}.weight"][()], f[f"backbone/state_dict/{head}.bias"][()]
    return CachedInputs(
        torch.from_numpy(np.ascontiguousarray(session.read_array("activations/test/a"), dtype=np.float32)),
        torch.from_numpy(np.asarray(session.read_array("activations/test/labels"), dtype=np.int64)),
        torch.from_numpy(np.asarray(W, dtype=np.float32)), torch.from_numpy(np.asarray(b, dtype=np.float32)),
        torch.from_numpy(np.asarray(session.read_arrays("sae/weights")["decoder.weight"], dtype=np.float32)),
        torch.from_numpy(np.asarray(session.read_array("rankings/class_means"))))


def class_outcome(x: CachedInputs, c: int, baseline: torch.Tensor) -> tuple[bool, str | None, bool]:
    """(has a selective window, why none can exist, both controls hold) for class ``c``."""
    result = sweep("salve", x, EditRequest(c))
    sel = selectivity(result, baseline)
    a50 = alpha50(result.alphas, result.per_class_accuracy[c])
    held = True
    if a50 is not None:
        controls = control_summary(sel, control_sweeps(result, x), [str(k) for k in range(x.W.shape[0])], a50)
        held = all(v["target_accuracy_at_main_alpha50"] is not None
                   and v["target_accuracy_at_main_alpha50"] >= CONTROL_HOLDS for v in controls.values())
    return bool(sel.selective.any()), sel.no_window_reason(), held


def selectivity_check(session: Session, limit: int = CHECK_MAX_CLASSES) -> dict[str, Any] | None:
    """Windows and controls of the checked classes (JSON-ready), or None when not in memory."""
    x = split_inputs(session)
    if x is None:
        return None
    names = [str(c) for c in session.read_json("class_names")]
    dominant = np.asarray(session.read_array("rankings/dominant"))
    present = set(x.labels.unique().tolist())
    checked = [c for c in check_classes(len(names), limit) if c in present and int(dominant[c]) >= 0]
    baseline = unedited_accuracy(x)
    no_window, controls_fail, reasons = [], [], {}
    for c in checked:
        window, reason, held = class_outcome(x, c, baseline)
        if not window:
            no_window.append(names[c])
            if reason:
                reasons[names[c]] = reason
        if not held:
            controls_fail.append(names[c])
    return {"classes": len(names), "checked": len(checked), "windows": len(checked) - len(no_window),
            "no_window": no_window, "no_window_reasons": reasons, "controls_fail": controls_fail,
            "rankings_updated": session.stages()["rankings"].updated}
