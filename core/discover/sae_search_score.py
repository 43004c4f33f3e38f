"""Held-out scores of many SAE candidates at once: every scoring sweep in a few tensor operations.

Why: the plain scorer (:func:`core.discover.sae_search.score_candidate`) runs one SALVE sweep
per class and candidate, plus two control sweeps per window, each a few dozen small tensor
operations on an N × C block. For the default grid that is ~300 sweeps whose cost is
per-operation overhead, not arithmetic, and on a shared CPU every operation also pays a
thread-pool synchronisation: it was the part of ``--sae-width auto`` over its budget.

Every scoring sweep is SALVE suppression of one direction ``v`` (a dominant feature's
``|D_k|``, a control's) under linear modulation, so its logits are affine in α:
``Z0 − α · A (W ∘ v)ᵀ``. ``Z0``, the unedited accuracy and each class's rows are shared by every
candidate (:class:`Shared`, built once per search); the slopes of all sweeps of a batch are one
batched matmul, their correct-intervals one call of
:func:`core.control.curves.correct_intervals`, their per-class accuracy at every grid point
one count, and the selective-window test one masked minimum.

Same scores as the plain path, not approximately: each number comes from the same
operations on the same inputs (the automatic α range from the same
:func:`~core.control.methods.salve.auto_alpha_max`, the same ``linspace`` grid, the same
interval test at float32 strengths, the same ``alpha50`` and interpolation). The test
``tests/test_sae_search_score.py`` compares the two paths' curves and scores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.control.curves import correct_intervals, curve_chunk_elements, logits
from core.discover.sae_search import (
    CONTROL_KEEP,
    SCORE_POINTS,
    HeldOut,
    SplitStats,
    candidate_basics,
    split_stats,
)
from core.jobs import CancelToken, check_cancel

#: Up to this many unedited test logits (N × C) scoring runs on one intra-op thread. Its blocks
#: are then small (the slopes are N × C per direction), so a second thread's hand-off costs more
#: than it saves, and on a shared machine far more: on 2 cores at load average 5, two threads
#: made the bench's scoring ~8× slower than one (bench/RESULTS.md, "SAE width search").
ONE_THREAD_ELEMENTS = 1 << 20


@dataclass
class Shared:
    """What every candidate's scoring reads and none changes (one per search)."""

    data: HeldOut
    Z0: torch.Tensor  # (N × C) unedited test logits A Wᵀ + b
    baseline: torch.Tensor  # (C,) float64 unedited per-class accuracy (NaN: no samples)
    counts: torch.Tensor  # (C,) float64 samples per class
    chunk_elements: int  # elements of one batch's largest block (memory budget)
    classes: list[tuple[torch.Tensor, torch.Tensor]]  # per class: its test rows A_c and logits A_c Wᵀ + b
    stats: SplitStats  # the EV denominator, class-mean activations


def shared_inputs(data: HeldOut, chunk_elements: int | None = None) -> Shared:
    """The candidate-independent part of scoring, computed once (on the threads of
    :func:`score_candidates`: a parallel sum may round differently on another thread count)."""
    with one_thread_when_small(data.test_a.shape[0] * len(data.class_names)):
        return _shared(data, chunk_elements)


def _shared(data: HeldOut, chunk_elements: int | None) -> Shared:
    from core.control.curves import per_class_accuracy

    C = len(data.class_names)
    Z0 = logits(data.test_a, data.W, data.b)
    baseline = per_class_accuracy(data.test_labels, Z0.argmax(1), C)
    classes = []
    for c in range(C):  # the rows auto_alpha_max reads (the whole split when it is one class)
        mask = data.test_labels == c
        A_c = data.test_a if bool(mask.all()) else data.test_a[mask]
        classes.append((A_c, logits(A_c, data.W, data.b)))
    counts = torch.bincount(data.test_labels.long(), minlength=C).double()
    return Shared(data, Z0, baseline, counts,
                  curve_chunk_elements() if chunk_elements is None else chunk_elements,
                  classes, split_stats(data))


def suppression_slopes(A: torch.Tensor, W: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(J × N × C) ``−A (W ∘ v)ᵀ`` for each direction ``v``: the logits' slope in α.

    One matrix product per direction, the very product the method's sweep computes: a batched
    product (``bmm``) accumulates in another order on some shapes, and the scores must be the
    same numbers, not nearly (the cost is the same; only the call count differs).
    """
    return torch.stack([A @ (W * v).T for v in directions]).neg_()


def auto_ranges(shared: Shared, c: int, directions: torch.Tensor) -> torch.Tensor:
    """(J,) largest α of the automatic grid of class ``c``'s suppression along each direction
    (J × d): :func:`core.control.methods.salve.auto_alpha_max` for one feature under linear
    modulation, for all J at once (its flip-point range, then its doubling test)."""
    from core.control.curves import (
        AUTO_RANGE_FACTOR,
        AUTO_RANGE_MAX_DOUBLINGS,
        AUTO_RANGE_QUANTILE,
        AUTO_RANGE_TARGET_ACC,
        linear_flip_points,
    )

    A_c, Z_c = shared.classes[c]
    if A_c.shape[0] == 0:
        raise ValueError(f"class {c} has no samples: cannot choose an α range for it")
    top = directions.amax(-1)
    if bool((top <= 0).any()):
        raise ValueError("a dominant feature has an all-zero decoder direction: nothing to edit")
    W = shared.data.W
    slope = suppression_slopes(A_c, W, directions)
    Z = Z_c.expand_as(slope)
    flips = linear_flip_points(Z, slope, torch.full((A_c.shape[0],), c, dtype=torch.long))
    finite = torch.where(torch.isfinite(flips), flips.double(), math.nan)
    q = torch.nanquantile(finite, AUTO_RANGE_QUANTILE, dim=-1)  # NaN where none is finite
    fallback = 2.0 / top.double()
    alpha = torch.where(q > 0, AUTO_RANGE_FACTOR * q, fallback)

    def target_accuracy(points: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        block = torch.addcmul(Z[keep], points[keep].to(Z).view(-1, 1, 1), slope[keep])
        return (block.argmax(-1) == c).double().mean(-1)

    doubling = torch.ones_like(alpha, dtype=torch.bool)
    current = target_accuracy(alpha, doubling)
    for _ in range(AUTO_RANGE_MAX_DOUBLINGS):
        doubling &= current > AUTO_RANGE_TARGET_ACC
        if not bool(doubling.any()):
            break
        doubled = torch.full_like(current, math.nan)
        doubled[doubling] = target_accuracy(2.0 * alpha, doubling)
        doubling &= ~(doubled >= current - 0.5 / A_c.shape[0])  # stop on a plateau
        alpha = torch.where(doubling, 2.0 * alpha, alpha)
        current = torch.where(doubling, doubled, current)
    return alpha


def interval_counts(low: torch.Tensor, high: torch.Tensor, points: torch.Tensor, labels: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """(J × G × C) how many samples of each class have ``low < p < high`` at each grid point.

    ``low``, ``high``: (J × N) each sample's open interval; ``points``: (J × G) ascending. A
    sample covers the grid indices ``[first p > low, first p ≥ high)``, so a +1/−1 pair per
    sample in a (J × C × G+1) difference array and a cumulative sum count every grid point in
    O(J·N) instead of the O(J·G·N) interval test; the counts are the same integers.
    """
    J, G = points.shape
    start = torch.searchsorted(points, low, right=True)
    stop = torch.searchsorted(points, high, right=False)
    nonempty = (start < stop).long()
    offset = labels.long().unsqueeze(0) * (G + 1)
    diff = torch.zeros(J, num_classes * (G + 1), dtype=torch.long)
    diff.scatter_add_(1, offset + start, nonempty).scatter_add_(1, offset + stop, -nonempty)
    return diff.view(J, num_classes, G + 1).cumsum(-1)[..., :G].transpose(1, 2)


def sweep_accuracy(shared: Shared, directions: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Per-class test accuracy (J × G × C, float64) of SALVE linear suppression along each of
    ``directions`` (J × d, non-negative) at its own ascending grid ``alphas`` (J × G).

    Batched over J within the memory budget; each sweep's numbers are those of
    :func:`core.control.methods.salve.salve_sweep` (logits ``Z0 + α·slope``, a sample correct
    on its open interval of α, compared at float32 strengths).
    """
    data = shared.data
    N, C = shared.Z0.shape
    step = max(1, shared.chunk_elements // max(1, 2 * N * C))  # slopes and their interval test
    out = []
    for lo in range(0, directions.shape[0], step):
        v = directions[lo:lo + step]
        slope = suppression_slopes(data.test_a, data.W, v)  # (j × N × C)
        low, high = correct_intervals(shared.Z0.expand_as(slope), slope, data.test_labels)
        points = alphas[lo:lo + step].to(shared.Z0).contiguous()
        counts = interval_counts(low, high, points, data.test_labels, C)
        out.append(counts.double() / shared.counts)
    return torch.cat(out, 0)


def selective_any(acc: torch.Tensor, targets: torch.Tensor, shared: Shared) -> torch.Tensor:
    """(J,) whether each sweep has a selective window (the rule of
    :func:`core.control.selectivity.selectivity`, applied to all sweeps at once)."""
    from core.control.selectivity import KEEP_SHARE, TARGET_SUPPRESSED, WINDOW_MARGIN

    base = shared.baseline
    J, _, C = acc.shape
    other = ((shared.counts > 0) & torch.isfinite(base)).expand(J, C).clone()
    other[torch.arange(J), targets] = False
    b = base.unsqueeze(0).unsqueeze(0)
    kept = torch.where(b > 0, acc / b.clamp_min(1e-12), torch.ones_like(acc))
    worst = kept.masked_fill(~other.unsqueeze(1), math.inf).amin(-1)  # (J × G)
    target = acc[torch.arange(J), :, targets]
    meaningful = base[targets] >= TARGET_SUPPRESSED + WINDOW_MARGIN - 1e-12
    selective = (target < TARGET_SUPPRESSED) & (worst >= KEEP_SHARE - 1e-12) & meaningful.unsqueeze(1)
    return selective.any(1)


@dataclass
class _Sweeps:
    """The main sweeps of a batch of candidates: one per (candidate, class)."""

    owner: list[int]  # candidate index
    target: torch.Tensor  # (J,) class
    feature: list[int]  # swept latent
    alphas: torch.Tensor  # (J × G) float64 grid
    acc: torch.Tensor  # (J × G × C)


def _main_sweeps(shared: Shared, bases: list[dict[str, Any]], cancel: CancelToken | None) -> _Sweeps:
    """Each candidate's dominant feature of each class, on its automatic grid (class-major)."""
    owner, target, feature, grids, directions = [], [], [], [], []
    for c in range(len(shared.classes)):
        check_cancel(cancel)
        ks = [int(base["dominant"][c]) for base in bases]
        v = torch.stack([base["D"][:, k].abs() for base, k in zip(bases, ks, strict=True)])
        for i, (k, top) in enumerate(zip(ks, auto_ranges(shared, c, v).tolist(), strict=True)):
            grids.append(torch.linspace(0.0, top, SCORE_POINTS, dtype=torch.float64))
            owner.append(i)
            target.append(c)
            feature.append(k)
        directions.append(v)
    alphas = torch.stack(grids).sort(-1).values
    acc = sweep_accuracy(shared, torch.cat(directions), alphas)
    return _Sweeps(owner, torch.tensor(target), feature, alphas, acc)


def _control_directions(base: dict[str, Any], c: int, k: int) -> list[torch.Tensor]:
    """|low-association feature| and |random direction| for class ``c`` whose dominant is ``k``
    (the controls :func:`core.control.selectivity.control_sweeps` builds)."""
    from core.control.selectivity import low_association_feature, random_direction

    D = base["D"]
    low = low_association_feature(base["M32"], D, exclude=[k])
    return [D[:, low].abs(), random_direction(D, k).to(D).abs()]


@contextmanager
def one_thread_when_small(elements: int) -> Iterator[None]:
    """Run torch on one intra-op thread while blocks hold at most :data:`ONE_THREAD_ELEMENTS`."""
    before = torch.get_num_threads()
    if before == 1 or elements > ONE_THREAD_ELEMENTS:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def score_candidates(weights: Sequence[dict[str, np.ndarray]], data: HeldOut,
                     shared: Shared | None = None, cancel: CancelToken | None = None) -> list[dict[str, Any]]:
    """:func:`core.discover.sae_search.score_candidate` of each SAE in ``weights``, batched
    (on one thread where the blocks are small: :data:`ONE_THREAD_ELEMENTS`)."""
    shared = shared or shared_inputs(data)
    with one_thread_when_small(int(shared.Z0.numel())):
        return _score(weights, data, shared, cancel)


def _score(weights: Sequence[dict[str, np.ndarray]], data: HeldOut, shared: Shared,
           cancel: CancelToken | None) -> list[dict[str, Any]]:
    from core.control.alpha_crit import alpha50
    from core.control.selectivity import _interp
    from core.jsonsafe import json_safe

    bases = [candidate_basics(w, data, shared.stats) for w in weights]
    main = _main_sweeps(shared, bases, cancel)
    windows = selective_any(main.acc, main.target, shared)
    targets = main.target.tolist()
    backed, directions = [], []  # sweeps whose window the controls must back
    for j, c in enumerate(targets):
        a50 = alpha50(main.alphas[j], main.acc[j, :, c])
        if a50 is None or not bool(windows[j]):
            continue
        backed.append((j, a50))
        directions += _control_directions(bases[main.owner[j]], c, main.feature[j])
    check_cancel(cancel)
    controls_ok = [0] * len(bases)
    if backed:
        rows = torch.tensor([j for j, _ in backed for _ in range(2)])
        acc = sweep_accuracy(shared, torch.stack(directions), main.alphas[rows])
        for n, (j, a50) in enumerate(backed):
            c = targets[j]
            kept = [json_safe(_interp(a50, main.alphas[j], acc[2 * n + r, :, c])) for r in range(2)]
            controls_ok[main.owner[j]] += all(k is not None and k >= CONTROL_KEEP for k in kept)
    out = []
    for i, base in enumerate(bases):
        n_windows = int(sum(bool(windows[j]) for j in range(len(targets)) if main.owner[j] == i))
        out.append({**base["row"], "selective_windows": n_windows, "controls_ok": controls_ok[i]})
    return out
