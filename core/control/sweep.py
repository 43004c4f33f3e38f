"""Suppression / enhancement sweeps on cached activations (SPEC §3, §5).

Only the final layer changes, so the edited logits of every cached sample are ``W' a + b``
and a sweep never re-runs the backbone. Fast paths exploit linearity in α:

- ``linear`` modulation of one feature: ``logits(α) = Z0 ∓ α·A(W∘|D_k|)ᵀ`` (two matmuls).
  Each sample is then correct on one interval of α (every competitor's margin is affine),
  so per-class accuracy for the whole grid is a count of intervals — no n_α × N × C argmax.
  Only the target class's samples are evaluated per α, for their prediction distribution.
- ``clamped`` suppression of one feature is piecewise affine with the same breakpoints
  ``1/|D_jk|`` for every sample: one affine piece per switch-off point inside the grid.
- Several features multiply their factors (not piecewise affine): batched general path,
  one ``(n_α×C×d)`` stack of edited weights and one batched matmul per chunk.

Automatic α range (used when no grid is given): take the first-order (linear) picture of the
edit, compute for each correctly classified sample of the target class the α at which it is
first misclassified (exact for linear single-feature edits), and go to 1.5× the 95th
percentile of those points; then check with the exact modulation and double the range (at
most 6 times) while the target accuracy is above 5% and doubling still lowers it (samples the
edit can never flip would otherwise stretch the range for nothing). Enhancement uses the
suppression range of the same feature so both curves share an x-axis scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.control.edit import (
    MODES,
    EditSpec,
    apply_edit,
    check_features,
    check_weight,
    modulation_factors_grid,
)
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel

DEFAULT_N_ALPHAS = 200
# Upper bound on the elements of one (n_α_chunk × N × C) logits block (64 MiB in float32).
DEFAULT_CHUNK_ELEMENTS = 1 << 24
AUTO_RANGE_QUANTILE = 0.95
AUTO_RANGE_FACTOR = 1.5
AUTO_RANGE_TARGET_ACC = 0.05
AUTO_RANGE_MAX_DOUBLINGS = 6


def nan_to_none(values: list) -> list:
    return [nan_to_none(v) if isinstance(v, list) else (None if v != v else v) for v in values]


def none_to_nan(values: list) -> list:
    return [
        none_to_nan(v) if isinstance(v, list) else (math.nan if v is None else v) for v in values
    ]


@dataclass
class SweepResult:
    """A curve of per-class accuracy against a method's strength parameter.

    ``per_class_accuracy`` is C × n_α (NaN for classes without samples); ``target_prediction``
    is n_α × C: the share of the target class's samples predicted as each class (paper Fig. 4b).
    ``alphas`` holds α (SALVE), β (steering) or the target value (ROME), named by ``param_name``.
    """

    method: str
    features: list[int]
    mode: str
    modulation: str
    target_class: int | None
    param_name: str
    alphas: torch.Tensor
    per_class_accuracy: torch.Tensor
    target_prediction: torch.Tensor
    class_counts: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target_accuracy(self) -> torch.Tensor:
        if self.target_class is None:
            raise ValueError("this sweep has no target class")
        return self.per_class_accuracy[self.target_class]

    @property
    def others_mean_accuracy(self) -> torch.Tensor:
        """Mean accuracy of the non-target classes that have samples, per α."""
        keep = [c for c, n in enumerate(self.class_counts) if n > 0 and c != self.target_class]
        return self.per_class_accuracy[keep].mean(0)

    @property
    def overall_accuracy(self) -> torch.Tensor:
        counts = torch.tensor(self.class_counts, dtype=torch.float64)
        acc = torch.nan_to_num(self.per_class_accuracy.double(), nan=0.0)
        return (counts.unsqueeze(1) * acc).sum(0) / counts.sum()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN (class without samples) becomes ``null``."""
        return {
            "method": self.method,
            "features": list(self.features),
            "mode": self.mode,
            "modulation": self.modulation,
            "target_class": self.target_class,
            "param_name": self.param_name,
            "alphas": self.alphas.tolist(),
            "per_class_accuracy": nan_to_none(self.per_class_accuracy.tolist()),
            "target_prediction": nan_to_none(self.target_prediction.tolist()),
            "class_counts": list(self.class_counts),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepResult:
        return cls(
            method=d["method"],
            features=list(d["features"]),
            mode=d["mode"],
            modulation=d["modulation"],
            target_class=d["target_class"],
            param_name=d["param_name"],
            alphas=torch.tensor(d["alphas"], dtype=torch.float64),
            per_class_accuracy=torch.tensor(
                none_to_nan(d["per_class_accuracy"]), dtype=torch.float64
            ),
            target_prediction=torch.tensor(
                none_to_nan(d["target_prediction"]), dtype=torch.float64
            ),
            class_counts=list(d["class_counts"]),
            extra=dict(d.get("extra", {})),
        )


# ----------------------------------------------------------------------------- basic metrics


def check_data(A: torch.Tensor, labels: torch.Tensor, W: torch.Tensor) -> None:
    if A.ndim != 2 or A.shape[1] != W.shape[1]:
        raise ValueError(
            f"activations must be N×{W.shape[1]} to match the classifier, got {tuple(A.shape)}"
        )
    if labels.shape != (A.shape[0],):
        raise ValueError(f"labels must have shape ({A.shape[0]},), got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= W.shape[0]):
        raise ValueError(
            f"labels must lie in 0..{W.shape[0] - 1} (the classifier has {W.shape[0]} classes)"
        )


def logits(A: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    out = A @ W.T
    return out if b is None else out + b


def per_class_accuracy(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) accuracy per true class; NaN where a class has no samples."""
    correct = torch.zeros(num_classes, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    labels, preds = labels.cpu().long(), preds.cpu().long()
    counts.scatter_add_(0, labels, torch.ones_like(labels, dtype=torch.float64))
    correct.scatter_add_(0, labels, (preds == labels).double())
    return correct / counts  # 0/0 → NaN on purpose


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts, rows = true class, columns = predicted class."""
    flat = labels.cpu().long() * num_classes + preds.cpu().long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
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


def dominant_features(M: torch.Tensor) -> torch.Tensor:
    """(C,) index of each class's dominant latent: the largest ``|μ_ck|`` (SPEC §2)."""
    if M.ndim != 2:
        raise ValueError(f"class-mean latents M must be C×h, got shape {tuple(M.shape)}")
    return M.abs().argmax(1)


# ----------------------------------------------------------------------------- logit batches


def _chunk_size(n_samples: int, n_classes: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, n_samples * n_classes))


def affine_family(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    mode: str,
    modulation: str,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(Z0, slope)`` with edited logits ``Z0 + α·slope`` when the edit is affine in α, else None.

    One feature under linear modulation (or any enhancement, which is never clamped):
    ``A (W∘(1 ∓ α|D_k|))ᵀ + b = Z0 ∓ α·A(W∘|D_k|)ᵀ`` — two matmuls for the whole grid.
    """
    if len(features) != 1 or (modulation != "linear" and mode != "enhance"):
        return None
    slope = A @ (W * D.to(W)[:, features[0]].abs()).T
    return logits(A, W, b), (slope if mode == "enhance" else -slope)


# A batch of affine pieces: (Z0 (L×N×C), slope (L×N×C), params (n,), piece index (n,) in 0..L−1).
# For parameter value params[i] the logits are Z0[piece[i]] + params[i]·slope[piece[i]].
AffinePieces = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _single_piece(
    Z0: torch.Tensor, slope: torch.Tensor, params: torch.Tensor, max_run: int
) -> Iterator[AffinePieces]:
    """One affine family over the whole grid, in runs of at most ``max_run`` values."""
    for s in range(0, params.numel(), max_run):
        run = params[s : s + max_run]
        yield Z0.unsqueeze(0), slope.unsqueeze(0), run, torch.zeros_like(run, dtype=torch.long)


def clamped_pieces(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    d_abs: torch.Tensor,
    alphas: torch.Tensor,
    max_run: int | None = None,
) -> Iterator[AffinePieces]:
    """Clamped suppression of one feature as affine pieces over an ascending α grid.

    Coordinate j is switched off (factor 0) once ``α|D_jk| ≥ 1`` and is affine before, so
    between two switch-off points — the same for every sample, they depend on D only — the
    logits are ``(Z − P) − α (G − Q) + b`` where P, Q sum the switched-off coordinates'
    contributions. Those sets only grow with α: sort coordinates by |D_jk| (largest first)
    and accumulate P, Q with one small matmul per block of newly switched-off coordinates.
    Yields batches of pieces (:data:`AffinePieces`) holding at most ``max_run`` α values.
    """
    if alphas.numel() > 1 and not bool((alphas[1:] >= alphas[:-1]).all()):
        raise ValueError("clamped_pieces needs an ascending α grid")
    order = torch.argsort(d_abs, descending=True)
    A_sorted, d_sorted = A[:, order], d_abs[order]
    W_sorted = W[:, order]
    Wd_sorted = W_sorted * d_sorted
    Z = logits(A, W, b)
    G = A @ (W * d_abs).T
    n_off = ((alphas.unsqueeze(1) * d_sorted.unsqueeze(0)) >= 1.0).sum(1)  # non-decreasing
    levels, counts = torch.unique_consecutive(n_off, return_counts=True)
    max_run = max_run or alphas.numel()
    Zs, slopes, runs, pieces = [], [], [], []
    done, start, pending = 0, 0, 0
    for upto, count in zip(levels.tolist(), counts.tolist(), strict=True):
        if upto > done:
            Z = Z - A_sorted[:, done:upto] @ W_sorted[:, done:upto].T
            G = G - A_sorted[:, done:upto] @ Wd_sorted[:, done:upto].T
            done = upto
        for run in range(start, start + count, max_run):
            stop = min(run + max_run, start + count)
            if pending + stop - run > max_run:  # flush: bound the batch's size
                yield torch.stack(Zs), torch.stack(slopes), torch.cat(runs), torch.cat(pieces)
                Zs, slopes, runs, pieces, pending = [], [], [], [], 0
            pieces.append(torch.full((stop - run,), len(Zs), dtype=torch.long, device=Z.device))
            Zs.append(Z)
            slopes.append(-G)
            runs.append(alphas[run:stop])
            pending += stop - run
        start += count
    if Zs:
        yield torch.stack(Zs), torch.stack(slopes), torch.cat(runs), torch.cat(pieces)


def salve_pieces(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    alphas: torch.Tensor,
    mode: str,
    modulation: str,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Iterator[AffinePieces] | None:
    """The edit over the grid as affine pieces (one feature), or None when it is not piecewise
    affine in α (several features multiply their factors)."""
    D = D.to(W)
    alphas = torch.as_tensor(alphas, dtype=W.dtype, device=W.device)
    max_run = _chunk_size(A.shape[0], W.shape[0], chunk_elements)
    family = affine_family(A, W, b, D, features, mode, modulation)
    if family is not None:
        return _single_piece(*family, alphas, max_run)
    ascending = alphas.numel() < 2 or bool((alphas[1:] >= alphas[:-1]).all())
    if len(features) == 1 and ascending:
        return clamped_pieces(A, W, b, D[:, features[0]].abs(), alphas, max_run)
    return None


def salve_logit_chunks(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    alphas: torch.Tensor,
    mode: str = "suppress",
    modulation: str = "linear",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Iterator[torch.Tensor]:
    """Edited logits for every α of the grid, in (n_chunk × N × C) blocks, in grid order."""
    D = D.to(W)
    alphas = torch.as_tensor(alphas, dtype=W.dtype, device=W.device)
    pieces = salve_pieces(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
    if pieces is not None:
        for Z0, slope, params, piece in pieces:
            yield torch.addcmul(Z0[piece], params.view(-1, 1, 1).to(Z0), slope[piece])
        return
    # General path (several features): (n×C×d) stack of edited weights, one batched matmul.
    step = _chunk_size(A.shape[0], W.shape[0], chunk_elements)
    for start in range(0, alphas.shape[0], step):
        F = modulation_factors_grid(D, features, alphas[start : start + step], mode, modulation)
        W_stack = W.unsqueeze(0) * F.unsqueeze(1)
        out = torch.matmul(A, W_stack.transpose(1, 2))
        yield out if b is None else out + b


def correct_intervals(
    Z0: torch.Tensor, slope: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For logits ``Z0 + p·slope``, the open interval ``(lo, hi)`` of p where each sample is right.

    Every competitor c gives one affine margin ``m_c + p·r_c > 0``, i.e. a half-line; their
    intersection is an interval (empty when ``lo ≥ hi``). Exact ties, a measure-zero event,
    count as wrong here while ``argmax`` would keep the lower class index.
    """
    idx = labels.long().view(-1, 1).expand(*Z0.shape[:-1], 1)  # leading batch dims allowed
    m = Z0.neg().add_(Z0.gather(-1, idx))  # m_c = z_y − z_c, 0 for the true class
    r = slope.neg().add_(slope.gather(-1, idx))
    # A competitor that does not move relative to y blocks the sample for every p if it is
    # ahead or tied; the true class itself (m = r = 0) is the one such entry every row has.
    never = ((r == 0) & (m <= 0)).sum(-1) > 1
    crossing = m.div_(r).neg_()  # where m_c + p·r_c = 0 (in place; r = 0 entries are masked)
    lo = torch.where(r > 0, crossing, -math.inf).amax(-1)
    hi = torch.where(r < 0, crossing, math.inf).amin(-1).masked_fill_(never, -math.inf)
    return lo, hi


def _prediction_shares(
    target_preds: torch.Tensor | None, rows: int, num_classes: int
) -> torch.Tensor:
    """Share of the target class's samples predicted as each class, one row per parameter value
    (``rows × C`` float64 on the CPU) from their predictions (``rows × N_target``); all NaN
    when there is no target class or it has no samples, so curves stay aligned."""
    if target_preds is None or target_preds.shape[1] == 0:
        return torch.full((rows, num_classes), math.nan, dtype=torch.float64)
    hist = torch.zeros(target_preds.shape[0], num_classes, device=target_preds.device)
    hist.scatter_add_(1, target_preds, torch.ones_like(target_preds, dtype=hist.dtype))
    return (hist.double() / target_preds.shape[1]).cpu()


def curve_from_pieces(
    pieces: Iterator[AffinePieces],
    labels: torch.Tensor,
    num_classes: int,
    target_class: int | None,
    n_params: int,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-class accuracy C×n, target prediction shares n×C) without an n × N × C argmax.

    On each affine piece every sample is correct on one interval of the parameter
    (:func:`correct_intervals`, O(N·C)); accuracy is a count of intervals containing each
    grid value. Only the target class's samples are evaluated per value for their predictions.
    """
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)
    counts = onehot.sum(0).double().cpu()
    target_mask = None if target_class is None else labels == target_class
    n_target = 0 if target_mask is None else int(target_mask.sum())
    correct_counts, target_preds = [], []
    reporter = ProgressReporter("sweep", n_params, progress)
    done = 0
    for Z0, slope, params, piece in pieces:
        check_cancel(cancel)
        params = params.to(Z0)
        lo, hi = correct_intervals(Z0, slope, labels)  # (L × N)
        p = params.unsqueeze(1)
        inside = ((lo[piece] < p) & (p < hi[piece])).to(torch.float32)  # (n × N)
        correct_counts.append((inside @ onehot).double().cpu())
        preds = None
        if n_target > 0:
            Z_t, slope_t = Z0[:, target_mask][piece], slope[:, target_mask][piece]
            preds = torch.addcmul(Z_t, p.unsqueeze(2), slope_t).argmax(-1)  # (n × N_target)
        target_preds.append(_prediction_shares(preds, params.numel(), num_classes))
        done += params.numel()
        reporter.report(done)
    per_class = (torch.cat(correct_counts, 0) / counts).T.contiguous()  # NaN for empty classes
    return per_class, torch.cat(target_preds, 0)


def affine_curve(
    Z0: torch.Tensor,
    slope: torch.Tensor,
    params: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    target_class: int | None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`curve_from_pieces` for logits ``Z0 + p·slope`` over the whole grid ``params``."""
    step = _chunk_size(Z0.shape[0], Z0.shape[1], chunk_elements)
    pieces = _single_piece(Z0, slope, params.to(Z0), step)
    return curve_from_pieces(
        pieces, labels, num_classes, target_class, params.numel(), progress, cancel
    )


def curve_from_logit_chunks(
    chunks: Iterator[torch.Tensor],
    labels: torch.Tensor,
    num_classes: int,
    target_class: int | None,
    n_params: int,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce logit blocks to (per-class accuracy C×n, target prediction shares n×C)."""
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)
    counts = onehot.sum(0).double().cpu()
    target_mask = None if target_class is None else labels == target_class
    accs, target_preds = [], []
    reporter = ProgressReporter("sweep", n_params, progress)
    done = 0
    for block in chunks:
        check_cancel(cancel)
        preds = block.argmax(-1)  # (n_chunk × N)
        correct = (preds == labels.unsqueeze(0)).to(torch.float32)
        accs.append((correct @ onehot).double().cpu())
        t_preds = None if target_mask is None else preds[:, target_mask]
        target_preds.append(_prediction_shares(t_preds, preds.shape[0], num_classes))
        done += preds.shape[0]
        reporter.report(done)
    per_class = (torch.cat(accs, 0) / counts).T.contiguous()  # C × n_α, NaN for empty classes
    return per_class, torch.cat(target_preds, 0)


# ----------------------------------------------------------------------------- automatic range


def linear_flip_points(Z0: torch.Tensor, slope: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """For logits ``Z0 + p·slope`` (p ≥ 0), the p at which each sample stops being correct.

    ``inf`` if the sample is never misclassified, NaN if it is already wrong at p = 0.
    """
    lo, hi = correct_intervals(Z0, slope, labels)
    correct0 = (lo < 0) & (hi > 0)
    return torch.where(correct0, hi, torch.full_like(hi, math.nan))


def auto_range_from_flips(flips: torch.Tensor, fallback: float) -> float:
    """1.5 × the 95th percentile of the finite flip points, or ``fallback`` if there are none."""
    finite = flips[torch.isfinite(flips)].double()
    if finite.numel() == 0:
        return float(fallback)
    top = float(torch.quantile(finite, AUTO_RANGE_QUANTILE))
    return AUTO_RANGE_FACTOR * top if top > 0 else float(fallback)


def auto_alpha_max(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    target_class: int,
    modulation: str = "linear",
) -> float:
    """Largest α of the automatic suppression grid (see the module docstring for the rule)."""
    D = D.to(W)
    strength = D[:, list(features)].abs().sum(1)  # first-order factor: 1 − α Σ_k |D_jk|
    if float(strength.max()) <= 0:
        raise ValueError(
            f"feature(s) {list(features)} have an all-zero decoder direction: nothing to edit"
        )
    mask = labels == target_class
    if not bool(mask.any()):
        raise ValueError(f"class {target_class} has no samples: cannot choose an α range for it")
    A_t, y_t = A[mask], labels[mask]
    Z0 = logits(A_t, W, b)
    slope = -(A_t @ (W * strength).T)
    fallback = 2.0 / float(strength.max())  # the strongest coordinate's weight is zeroed twice over
    alpha_max = auto_range_from_flips(linear_flip_points(Z0, slope, y_t), fallback)

    def target_accuracy(alpha: float) -> float:
        grid = torch.tensor([alpha])
        block = next(salve_logit_chunks(A_t, W, b, D, features, grid, "suppress", modulation))
        return float((block[0].argmax(1) == y_t).double().mean())

    # The first-order estimate is exact for one feature under linear modulation; otherwise
    # (clamped, several features) extend the range while doing so still suppresses more.
    current = target_accuracy(alpha_max)
    for _ in range(AUTO_RANGE_MAX_DOUBLINGS):
        if current <= AUTO_RANGE_TARGET_ACC:
            break
        doubled = target_accuracy(2.0 * alpha_max)
        if doubled >= current - 0.5 / y_t.numel():  # plateau: samples this edit cannot flip
            break
        alpha_max, current = 2.0 * alpha_max, doubled
    return alpha_max


# ----------------------------------------------------------------------------- sweeps


def salve_sweep(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int] | int,
    target_class: int | None = None,
    alphas: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    n_alphas: int = DEFAULT_N_ALPHAS,
    M: torch.Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """Per-class accuracy vs α for a SALVE edit of ``features`` (any feature: cross-class too).

    ``target_class`` defaults to the class with the largest ``|μ_ck|`` of the first feature
    when ``M`` is given. ``alphas`` defaults to the automatic range with ``n_alphas`` points.
    """
    features = (features,) if isinstance(features, int) else tuple(int(k) for k in features)
    check_weight(W, D)
    check_features(D, features)
    check_data(A, labels, W)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if target_class is None and M is not None:
        target_class = int(M[:, features[0]].abs().argmax())
    if alphas is None:
        if target_class is None:
            raise ValueError("an automatic α range needs a target class (pass target_class or M)")
        alpha_max = auto_alpha_max(A, labels, W, b, D, features, target_class, modulation)
        alphas = torch.linspace(0.0, alpha_max, n_alphas, dtype=torch.float64)
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    if bool((alphas < 0).any()):
        raise ValueError("α values must be ≥ 0 (use mode='enhance' to amplify)")
    alphas = alphas.sort().values  # ascending: curves read left to right, clamped path needs it
    pieces = salve_pieces(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
    if pieces is not None:
        per_class, target_pred = curve_from_pieces(
            pieces, labels, W.shape[0], target_class, alphas.numel(), progress, cancel
        )
    else:
        chunks = salve_logit_chunks(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
        per_class, target_pred = curve_from_logit_chunks(
            chunks, labels, W.shape[0], target_class, alphas.numel(), progress, cancel
        )
    return SweepResult(
        method="salve",
        features=list(features),
        mode=mode,
        modulation=modulation,
        target_class=target_class,
        param_name="alpha",
        alphas=alphas,
        per_class_accuracy=per_class,
        target_prediction=target_pred,
        class_counts=torch.bincount(labels.cpu().long(), minlength=W.shape[0]).tolist(),
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
    return salve_sweep(A, labels, W, b, D, feature, target_class=target_class, **kwargs)


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
