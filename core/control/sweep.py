"""Sweeps of any editing method, and the before/after effect of one edit (SPEC §3, §5).

Everything here goes through the method interface (``core.control.methods``): a sweep is
``get_method(name).sweep(...)`` on cached activations, an effect is one applied edit. The
default method is SALVE; ROME and steering give the same :class:`SweepResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.control.curves import (
    DEFAULT_N_ALPHAS,
    SweepResult,
    check_data,
    confusion_matrix,
    dominant_features,
    logits,
    nan_to_none,
    per_class_accuracy,
)
from core.control.edit import apply_edit
from core.control.methods.base import CachedInputs, EditMethod
from core.control.methods.registry import get_method
from core.control.spec import EditSpec, check_mode
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel


def sweep(
    method: str | EditMethod,
    x: CachedInputs,
    target_class: int,
    features: Sequence[int] | None = None,
    strengths: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    n_points: int = DEFAULT_N_ALPHAS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    **options: Any,
) -> SweepResult:
    """Per-class accuracy vs strength for ``method`` (a registry name or a method object)."""
    m = get_method(method) if isinstance(method, str) else method
    check_mode(mode)
    return m.sweep(
        x, target_class, features, strengths, mode, modulation, n_points, progress, cancel,
        **options,
    )


def edited_logits(
    A: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
) -> torch.Tensor:
    """Logits of the cached activations under one edit of any method."""
    W_new, b_new = apply_edit(W, b, D, spec)
    return logits(A, W_new, b_new)


@dataclass
class EditEffect:
    """Before/after view of one edit: per-class accuracy, Δ and confusion matrices."""

    spec: EditSpec
    accuracy_before: torch.Tensor
    accuracy_after: torch.Tensor
    confusion_before: torch.Tensor
    confusion_after: torch.Tensor

    @property
    def accuracy_delta(self) -> torch.Tensor:
        return self.accuracy_after - self.accuracy_before

    def to_dict(self) -> dict[str, Any]:
        return {
            "edit": self.spec.to_dict(),
            "accuracy_before": nan_to_none(self.accuracy_before.tolist()),
            "accuracy_after": nan_to_none(self.accuracy_after.tolist()),
            "accuracy_delta": nan_to_none(self.accuracy_delta.tolist()),
            "confusion_before": self.confusion_before.tolist(),
            "confusion_after": self.confusion_after.tolist(),
        }


def edit_effect(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    spec: EditSpec,
) -> EditEffect:
    """Per-class accuracy deltas and confusion matrices for any edit (cross-class included)."""
    check_data(A, labels, W)
    C = W.shape[0]
    before = logits(A, W, b).argmax(1)
    after = edited_logits(A, W, b, D, spec).argmax(1)
    return EditEffect(
        spec,
        per_class_accuracy(labels, before, C),
        per_class_accuracy(labels, after, C),
        confusion_matrix(labels, before, C),
        confusion_matrix(labels, after, C),
    )


def sweep_dominant(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    M: torch.Tensor,
    target_class: int,
    **kwargs: Any,
) -> SweepResult:
    """Sweep of ``target_class``'s dominant feature (the default suppression curve)."""
    feature = int(dominant_features(M)[target_class])
    method = kwargs.pop("method", "salve")
    strengths = kwargs.pop("alphas", None)
    if "n_alphas" in kwargs:
        kwargs["n_points"] = kwargs.pop("n_alphas")
    return sweep(
        method, CachedInputs(A, labels, W, b, D, M), target_class, [feature], strengths, **kwargs
    )


def sweep_all_dominant(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    M: torch.Tensor,
    alphas: dict[int, torch.Tensor] | torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    **kwargs: Any,
) -> list[SweepResult]:
    """One dominant-feature sweep per class. ``alphas``: one grid for all, or per class."""
    C = W.shape[0]
    reporter = ProgressReporter("sweep all classes", C, progress)
    results = []
    for c in range(C):
        check_cancel(cancel)
        grid = alphas.get(c) if isinstance(alphas, dict) else alphas
        results.append(
            sweep_dominant(A, labels, W, b, D, M, c, alphas=grid, cancel=cancel, **kwargs)
        )
        reporter.report(c + 1, f"class {c}")
    return results


