"""Sweeps of any editing method, and the before/after effect of one edit (SPEC §3, §5).

Everything here goes through the method interface (``core.control.methods``): a sweep is
``get_method(name).sweep(x, request)`` on cached activations, an effect is one applied edit.
Every method gives the same :class:`SweepResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.control.curves import (
    SweepResult,
    check_data,
    confusion_matrix,
    logits,
    per_class_accuracy,
)
from core.control.edit import apply_edit
from core.control.methods.base import CachedInputs, EditMethod, EditRequest
from core.control.methods.registry import get_method
from core.control.spec import EditSpec, check_mode
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.jsonsafe import json_safe


def sweep(
    method: str | EditMethod,
    x: CachedInputs,
    request: EditRequest,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    chunk_rows: int | None = None,
) -> SweepResult:
    """Per-class accuracy vs strength for ``method`` (a registry name or a method object).

    ``chunk_rows``: sweep at most that many samples at a time (the memory budget's share), for
    the methods whose automatic range and edit depend only on the target class's samples
    (:attr:`EditMethod.row_chunked`); the counts are summed, so the curve is the one-pass curve.
    """
    m = get_method(method)
    check_mode(request.mode)
    if chunk_rows is not None and x.A.shape[0] > chunk_rows and m.row_chunked:
        return sweep_in_row_chunks(m, x, request, chunk_rows, progress, cancel)
    return m.sweep(x, request, progress, cancel)


def sweep_in_row_chunks(
    m: EditMethod,
    x: CachedInputs,
    request: EditRequest,
    chunk_rows: int,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """:meth:`EditMethod.sweep` over row chunks of ``x``, equal to the one-pass sweep (see
    :class:`RowChunkedSweep`)."""
    acc = RowChunkedSweep(m, request)
    if acc.needs_grid:
        acc.fix_grid(x.rows(x.labels == request.target_class), cancel)
    n = x.A.shape[0]
    reporter = ProgressReporter("sweep", n, progress)
    for lo in range(0, n, chunk_rows):
        check_cancel(cancel)
        rows = slice(lo, min(lo + chunk_rows, n))
        acc.add(x.rows(rows), cancel)
        reporter.report(rows.stop, f"rows {rows.stop:,}/{n:,}")
    return acc.result()


class RowChunkedSweep:
    """One method's sweep summed over row chunks given in any order (memory or disk).

    The automatic grid and default features depend on the target class's samples only, so a
    sweep of those rows (:meth:`fix_grid`) fixes them; each chunk (:meth:`add`) then gives
    per-class correct counts (accuracy × count, rounded back to the integer it was) and the
    target's prediction counts, summed exactly, so the result is the one-pass curve.
    """

    def __init__(self, m: EditMethod, request: EditRequest) -> None:
        self.m, self.request = m, request
        self.correct: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.target_hits: torch.Tensor | None = None
        self.n_target = 0
        self.part: SweepResult | None = None

    @property
    def target_class(self) -> int | None:
        return self.request.target_class

    @property
    def needs_grid(self) -> bool:
        return self.request.strengths is None or not self.request.features

    def fix_grid(self, target_rows: CachedInputs, cancel: CancelToken | None = None) -> None:
        """Fix the grid and features from a sweep of the target class's rows alone."""
        probe = self.m.sweep(target_rows, self.request, cancel=cancel)
        self.request = self.request.but(strengths=probe.alphas, features=list(probe.features))

    def add(self, chunk: CachedInputs, cancel: CancelToken | None = None) -> None:
        if self.needs_grid:
            raise ValueError("fix the grid (fix_grid on the target class's rows) before adding chunks")
        part = self.m.sweep(chunk, self.request, cancel=cancel)
        k = torch.tensor(part.class_counts, dtype=torch.float64)
        hits = torch.nan_to_num(part.per_class_accuracy.double() * k.unsqueeze(1)).round()
        self.correct = hits if self.correct is None else self.correct + hits
        self.counts = k if self.counts is None else self.counts + k
        n_t = part.class_counts[self.target_class] if self.target_class is not None else 0
        if n_t:
            shares = (part.target_prediction.double() * n_t).round()
            self.target_hits = shares if self.target_hits is None else self.target_hits + shares
            self.n_target += n_t
        self.part = part

    def result(self) -> SweepResult:
        part, correct, counts = self.part, self.correct, self.counts
        if part is None or correct is None or counts is None:
            raise ValueError("no rows were added to the sweep")
        if self.target_hits is None:
            C = len(part.class_counts)
            target_prediction = torch.full((part.alphas.numel(), C), float("nan"), dtype=torch.float64)
        else:
            target_prediction = self.target_hits / self.n_target
        return SweepResult(
            method=part.method, features=list(part.features), mode=part.mode, modulation=part.modulation,
            target_class=part.target_class, param_name=part.param_name, alphas=part.alphas,
            per_class_accuracy=correct / counts.unsqueeze(1), target_prediction=target_prediction,
            class_counts=[int(c) for c in counts.tolist()], extra=dict(part.extra),
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
            "accuracy_before": json_safe(self.accuracy_before.tolist()),
            "accuracy_after": json_safe(self.accuracy_after.tolist()),
            "accuracy_delta": json_safe(self.accuracy_delta.tolist()),
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
