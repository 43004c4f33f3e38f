"""Accuracy curves over a strength parameter, shared by every editing method (SPEC §3, §5).

Only the final layer changes, so the edited logits of every cached sample are ``W' a + b``
and a sweep never re-runs the backbone. This module turns logits into curves:

- affine pieces (logits ``Z0 + p·slope`` on a stretch of the grid): each sample is correct on
  one interval of p (every competitor's margin is affine), so per-class accuracy for the whole
  grid is a count of intervals, with no n × N × C argmax; only the target class's samples are
  evaluated per grid value, for their prediction distribution;
- general logit blocks (n_chunk × N × C), reduced with an argmax per block.

Automatic ranges start from the first-order picture: the strength at which each correctly
classified target sample is first misclassified (:func:`linear_flip_points`), and go to 1.5×
the 95th percentile of those points (:func:`auto_range_from_flips`). Which logits a strength
gives is each method's business (``core.control.methods``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.jsonsafe import json_safe

DEFAULT_N_ALPHAS = 200
# Upper bound on the elements of one (n_α_chunk × N × C) logits block (64 MiB in float32).
DEFAULT_CHUNK_ELEMENTS = 1 << 24
AUTO_RANGE_QUANTILE = 0.95
AUTO_RANGE_FACTOR = 1.5
AUTO_RANGE_TARGET_ACC = 0.05
AUTO_RANGE_MAX_DOUBLINGS = 6


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
            "per_class_accuracy": json_safe(self.per_class_accuracy.tolist()),
            "target_prediction": json_safe(self.target_prediction.tolist()),
            "class_counts": list(self.class_counts),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepResult:
        """The inverse of :meth:`to_dict`; the curves may also be arrays (a stored sweep's)."""
        return cls(
            method=d["method"],
            features=list(d["features"]),
            mode=d["mode"],
            modulation=d["modulation"],
            target_class=d["target_class"],
            param_name=d["param_name"],
            alphas=_float64(d["alphas"]),
            per_class_accuracy=_float64(d["per_class_accuracy"]),
            target_prediction=_float64(d["target_prediction"]),
            class_counts=[int(c) for c in d["class_counts"]],
            extra=dict(d.get("extra", {})),
        )


def _float64(values: Any) -> torch.Tensor:
    """A float64 tensor of a JSON list (``null`` → NaN) or an array."""
    if isinstance(values, list):
        return torch.tensor(none_to_nan(values), dtype=torch.float64)
    return torch.as_tensor(values, dtype=torch.float64)


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


def dominant_features(M: torch.Tensor) -> torch.Tensor:
    """(C,) index of each class's dominant latent: the largest ``|μ_ck|`` (SPEC §2)."""
    if M.ndim != 2:
        raise ValueError(f"class-mean latents M must be C×h, got shape {tuple(M.shape)}")
    return M.abs().argmax(1)


# ----------------------------------------------------------------------------- logit batches


#: Bytes one element of a curve batch costs at its peak (the n × N interval test's gathered
#: bounds, masks and float copy; the target's gathered logits, slopes and their sum).
CURVE_BYTES_PER_ELEMENT = 16


def curve_chunk_elements(budget: int | None = None) -> int:
    """Elements per curve batch: :data:`DEFAULT_CHUNK_ELEMENTS`, fewer when a quarter of the
    memory budget (``core.config.memory_budget``) holds fewer. Curves count exact integers per
    parameter value, so the batch size never changes a result."""
    from core.config import memory_budget

    budget = memory_budget() if budget is None else budget
    return max(1 << 12, min(DEFAULT_CHUNK_ELEMENTS, budget // (4 * CURVE_BYTES_PER_ELEMENT)))


def chunk_size(n_samples: int, n_classes: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, n_samples * n_classes))


# A batch of affine pieces: (Z0 (L×N×C), slope (L×N×C), params (n,), piece index (n,) in 0..L−1).
# For parameter value params[i] the logits are Z0[piece[i]] + params[i]·slope[piece[i]].
AffinePieces = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def single_piece(
    Z0: torch.Tensor, slope: torch.Tensor, params: torch.Tensor, max_run: int
) -> Iterator[AffinePieces]:
    """One affine family over the whole grid, in runs of at most ``max_run`` values (the same
    ``Z0``/``slope`` objects each time, so :func:`curve_from_pieces` solves them once)."""
    family = Z0.unsqueeze(0), slope.unsqueeze(0)
    for s in range(0, params.numel(), max_run):
        run = params[s : s + max_run]
        yield *family, run, torch.zeros_like(run, dtype=torch.long)


def merge_runs(pieces: Iterator[AffinePieces], max_params: int) -> Iterator[AffinePieces]:
    """Consecutive batches of the *same* pieces (same tensors) joined, up to ``max_params``
    values: a count of intervals needs no N × C block per value, so it can take many at once."""
    current: list[Any] | None = None
    for Z0, slope, params, piece in pieces:
        if current is not None and Z0 is current[0] and slope is current[1] \
                and current[4] + params.numel() <= max_params:
            current[2].append(params)
            current[3].append(piece)
            current[4] += params.numel()
            continue
        if current is not None:
            yield current[0], current[1], torch.cat(current[2]), torch.cat(current[3])
        current = [Z0, slope, [params], [piece], params.numel()]
    if current is not None:
        yield current[0], current[1], torch.cat(current[2]), torch.cat(current[3])


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
    chunk_elements: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-class accuracy C×n, target prediction shares n×C) without an n × N × C argmax.

    On each affine piece every sample is correct on one interval of the parameter
    (:func:`correct_intervals`, O(N·C)); accuracy is a count of intervals containing each
    grid value. Only the target class's samples are evaluated per value for their predictions.
    ``chunk_elements`` bounds a batch's n × N and n × N_target × C blocks (default
    :func:`curve_chunk_elements`, from the memory budget).
    """
    chunk_elements = curve_chunk_elements() if chunk_elements is None else chunk_elements
    onehot = torch.nn.functional.one_hot(labels.long(), num_classes).to(torch.float32)
    counts = onehot.sum(0).double().cpu()
    target_mask = None if target_class is None else labels == target_class
    n_target = 0 if target_mask is None else int(target_mask.sum())
    correct_counts, target_preds = [], []
    reporter = ProgressReporter("sweep", n_params, progress)
    done = 0
    # Values per batch: the n × N interval test and the target's n × N_target × C logits.
    per_value = max(labels.numel(), n_target * num_classes, 1)
    solved: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    for Z0, slope, params, piece in merge_runs(pieces, max(1, chunk_elements // per_value)):
        check_cancel(cancel)
        params = params.to(Z0)
        if solved is None or Z0 is not solved[0] or slope is not solved[1]:
            solved = (Z0, slope, *correct_intervals(Z0, slope, labels))
        lo, hi = solved[2], solved[3]  # (L × N)
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
    chunk_elements: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`curve_from_pieces` for logits ``Z0 + p·slope`` over the whole grid ``params``
    (``chunk_elements``: default :func:`curve_chunk_elements`)."""
    chunk_elements = curve_chunk_elements() if chunk_elements is None else chunk_elements
    step = chunk_size(Z0.shape[0], Z0.shape[1], chunk_elements)
    pieces = single_piece(Z0, slope, params.to(Z0), step)
    return curve_from_pieces(
        pieces, labels, num_classes, target_class, params.numel(), progress, cancel, chunk_elements
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


