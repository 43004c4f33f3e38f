"""Rank SAE latents per class (SPEC §2): class means, dominant features, top-activating samples.

Pure functions on numpy arrays or torch tensors (converted to numpy; results are numpy). Ties are
broken deterministically by the lower index, so rankings are stable across runs and platforms.
A class with no samples gets a NaN row in ``M``; it ranks no feature first and its dominant
feature is -1, so small test splits do not crash the whole ranking.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

#: Dominant-feature value for a class without samples.
NO_FEATURE = -1


def _numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_means(u: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """``M`` (C × h): ``M[c] = mean of u_n over samples n of class c`` (NaN row for an empty class)."""
    return ClassMeans(num_classes).add(u, labels).result()


class ClassMeans:
    """:func:`class_means` over row chunks: per-class sums (float64) and counts, added in row
    order, so any chunking gives the in-memory result bit for bit."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.sums: np.ndarray | None = None
        self.counts = np.zeros(num_classes, dtype=np.int64)

    def add(self, u: ArrayLike, labels: ArrayLike) -> ClassMeans:
        u_np, labels_np = _numpy(u).astype(np.float64), _numpy(labels).astype(np.int64)
        if u_np.ndim != 2 or labels_np.shape != (u_np.shape[0],):
            raise ValueError(
                f"need latents (n × h) and one label per sample, got {u_np.shape} and {labels_np.shape}"
            )
        if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), found {labels_np.min()}..{labels_np.max()}; "
                "check the class count of the dataset"
            )
        if self.sums is None:
            self.sums = np.zeros((self.num_classes, u_np.shape[1]))
        np.add.at(self.sums, labels_np, u_np)
        self.counts += np.bincount(labels_np, minlength=self.num_classes)
        return self

    def result(self) -> np.ndarray:
        sums = self.sums if self.sums is not None else np.zeros((self.num_classes, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / self.counts.astype(np.float64)[:, None]


def rank_features(M: ArrayLike) -> np.ndarray:
    """(C × h) feature indices per class, by decreasing ``|μ_ck|`` (ties: lower index first)."""
    magnitude = np.abs(_numpy(M).astype(np.float64))
    magnitude = np.where(np.isnan(magnitude), -np.inf, magnitude)
    return np.argsort(-magnitude, axis=1, kind="stable")


def dominant_features(M: ArrayLike) -> np.ndarray:
    """(C,) each class's top-ranked feature, or :data:`NO_FEATURE` for a class without samples."""
    M_np = _numpy(M)
    dominant = rank_features(M_np)[:, 0]
    return np.where(np.isnan(M_np).all(axis=1), NO_FEATURE, dominant)


def dominant_signs(M: ArrayLike, features: ArrayLike | None = None) -> np.ndarray:
    """(C,) ``sign(μ_c,k)`` of each class's dominant (or given) feature: steering direction.

    0 where the class has no samples or the mean is exactly 0.
    """
    M_np = _numpy(M)
    chosen = dominant_features(M_np) if features is None else _numpy(features).astype(np.int64)
    values = M_np[np.arange(M_np.shape[0]), np.clip(chosen, 0, None)]
    return np.where((chosen < 0) | np.isnan(values), 0, np.sign(values)).astype(np.int64)


def top_activating(u: ArrayLike, k: int = 16) -> dict[str, np.ndarray]:
    """Per feature, the sample indices with the largest (``pos``) and most negative (``neg``) u.

    Returns ``{"pos": (h × k'), "neg": (h × k')}`` with ``k' = min(k, n)``, most extreme first
    (ties: the lower sample index first).
    """
    u_np = _numpy(u)
    if u_np.ndim != 2:
        raise ValueError(f"latents must be (samples × features), got shape {u_np.shape}")
    return TopActivating(k).add(u_np).result()


class TopActivating:
    """:func:`top_activating` over row chunks given in row order.

    Each chunk is sorted (stably) together with the k best rows so far, which all have lower
    sample indices, so ties resolve exactly as in one stable sort of every row: the merged
    result equals the in-memory one bit for bit.
    """

    def __init__(self, k: int = 16) -> None:
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        self.k = k
        self.rows = 0
        self._best: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # sign → (values k×h, indices k×h)

    def add(self, u: ArrayLike) -> TopActivating:
        """The next ``rows`` × h chunk of latents (sample indices continue from the last chunk)."""
        u_np = _numpy(u)
        if u_np.ndim != 2:
            raise ValueError(f"latents must be (samples × features), got shape {u_np.shape}")
        index = np.broadcast_to(np.arange(self.rows, self.rows + u_np.shape[0])[:, None], u_np.shape)
        for sign, key in ((-1, "pos"), (1, "neg")):
            values = sign * u_np
            if key in self._best:
                values = np.concatenate([self._best[key][0], values])
                idx = np.concatenate([self._best[key][1], index])
            else:
                idx = index
            order = np.argsort(values, axis=0, kind="stable")[: self.k]
            self._best[key] = (np.take_along_axis(values, order, 0), np.take_along_axis(idx, order, 0))
        self.rows += u_np.shape[0]
        return self

    def result(self) -> dict[str, np.ndarray]:
        if not self._best:
            raise ValueError("no latents were given")
        return {key: np.ascontiguousarray(self._best[key][1].T) for key in ("pos", "neg")}


def feature_class_matrix(M: ArrayLike, mode: str = "feature") -> np.ndarray:
    """``M`` scaled to [-1, 1] for display, keeping signs.

    ``feature``: each column divided by its largest |μ| (which classes use this feature);
    ``class``: each row by its largest |μ| (which features this class uses); ``global``: by the
    overall max; ``none``: unchanged. All-zero or empty lines stay 0 / NaN.
    """
    M_np = _numpy(M).astype(np.float64)
    if mode == "none":
        return M_np.copy()
    scale = display_scale(M_np, mode)
    return np.divide(M_np, scale, out=np.zeros_like(M_np), where=scale > 0)


def display_scale(M: ArrayLike, mode: str = "feature") -> np.ndarray:
    """The divisor :func:`feature_class_matrix` uses, broadcastable to ``M``: (1 × h) per
    feature, (C × 1) per class, (1 × 1) global. Lets a viewer scale only the cells it draws."""
    return display_scales(M, (mode,))[mode]


def display_scales(M: ArrayLike, modes: tuple[str, ...] = ("class", "feature", "global")) -> dict[str, np.ndarray]:
    """:func:`display_scale` of several modes from one pass over ``|M|`` (NaN ignored)."""
    axes = {"feature": 0, "class": 1, "global": None}
    bad = [m for m in modes if m not in axes]
    if bad:
        raise ValueError(f"mode must be feature, class, global or none, got '{bad[0]}'")
    M_np = _numpy(M)

    def largest_magnitude(axis: int | None) -> np.ndarray:
        # max |x| = max(max x, −min x): two reductions, no |M|-sized temporary (C × h can be 10⁷)
        flat = M_np.reshape(-1) if axis is None else M_np
        high = np.fmax.reduce(flat, axis=0 if axis is None else axis, initial=0.0)
        low = np.fmin.reduce(flat, axis=0 if axis is None else axis, initial=0.0)
        scale = np.fmax(high, -low).astype(np.float64)
        return scale.reshape(1, 1) if axis is None else np.expand_dims(scale, axis)

    return {mode: largest_magnitude(axes[mode]) for mode in modes}


def distinct_dominants(M: ArrayLike) -> bool:
    """Does every class (with samples) get a different dominant feature? (a clean class basis)"""
    dominant = dominant_features(M)
    present = dominant[dominant != NO_FEATURE]
    return len(np.unique(present)) == len(present)
