"""The numbers of an image feature card (sae_vis / Neuronpedia style, for one SAE feature).

:func:`feature_card` is pure (numpy in, numpy out) so every number the TUI's feature card shows
can be checked by hand: the histogram of ``u_k`` over the test split split by class, the top,
bottom and quantile samples, the class association ``μ_ck``, the feature's direct effect on every
class logit ``W · D[:, k]`` (the logit change per unit of ``u_k``: what the SALVE edit scales
down) and the nearest features by decoder cosine. :func:`load_card_inputs` gathers the
inputs from a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.store.session import Session

DEFAULT_BINS = 24
DEFAULT_SAMPLES = 8  # per row of the card: top, bottom, quantiles
DEFAULT_NEAREST = 8


@dataclass
class FeatureCard:
    """Everything a feature card draws about feature ``feature``; arrays index test samples."""

    feature: int
    values: np.ndarray  # (N,) u_k per test sample
    labels: np.ndarray  # (N,) true class per test sample
    bin_edges: np.ndarray  # (B + 1,)
    histogram: np.ndarray  # (C, B) samples of class c with u_k in bin b
    top: np.ndarray  # indices of the highest u_k, highest first
    bottom: np.ndarray  # indices of the lowest u_k, lowest first
    quantile_levels: np.ndarray  # (Q,) in (0, 1), increasing
    quantile_values: np.ndarray  # (Q,) u_k at those levels
    quantile_samples: np.ndarray  # (Q,) the sample whose u_k is closest to each level's value
    class_means: np.ndarray  # (C,) μ_ck
    direct_effect: np.ndarray  # (C,) Σ_j W_cj D_jk
    nearest: np.ndarray  # feature indices, most similar decoder direction first (|cos|)
    nearest_cosine: np.ndarray  # their signed cosine with D[:, k]

    @property
    def num_classes(self) -> int:
        return int(self.histogram.shape[0])


def quantile_levels(n: int) -> np.ndarray:
    """``n`` levels at the centres of ``n`` equal-probability bins: (i + ½) / n."""
    return (np.arange(n) + 0.5) / n


def class_histogram(values: np.ndarray, labels: np.ndarray, num_classes: int,
                    n_bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(edges (B+1,), counts (C, B)): one shared set of equal-width bins over ``values``'
    range, counted per class (the last bin includes the maximum, as ``np.histogram``)."""
    if n_bins < 1:
        raise ValueError(f"the histogram needs at least one bin, got {n_bins}")
    values = np.asarray(values, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    if high <= low:  # a constant feature: one bin around its value
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, n_bins + 1)
    counts = np.stack([np.histogram(values[labels == c], bins=edges)[0]
                       for c in range(num_classes)]) if num_classes else np.zeros((0, n_bins))
    return edges, counts.astype(np.int64)


def decoder_cosine(D: np.ndarray, feature: int) -> np.ndarray:
    """(h,) cosine between decoder column ``feature`` and every column (0 for a zero column)."""
    D = np.asarray(D, dtype=np.float64)
    norms = np.linalg.norm(D, axis=0)
    target = D[:, feature]
    dots = target @ D
    denom = norms * norms[feature]
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)


def nearest_features(D: np.ndarray, feature: int, n: int = DEFAULT_NEAREST) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` other features whose decoder direction is closest to ``feature``'s, by |cosine|
    (latents are signed, so an opposite direction is the same axis); ties: lower index first."""
    cosine = decoder_cosine(D, feature)
    order = [int(j) for j in np.argsort(-np.abs(cosine), kind="stable") if j != feature][:n]
    return np.asarray(order, dtype=np.int64), cosine[order]


def quantile_samples(values: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u at each level (linear-interpolated quantile), the sample closest to it; ties: lower index)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return np.zeros(len(levels)), np.zeros(0, dtype=np.int64)
    at = np.quantile(values, levels)
    samples = np.asarray([int(np.argmin(np.abs(values - q))) for q in at], dtype=np.int64)
    return at, samples


def _feature_values(latents: np.ndarray | None, values: np.ndarray | None, n: int, h: int, k: int) -> np.ndarray:
    """The column ``u[:, k]`` as float64: ``values`` when given, else taken from ``latents``;
    refuses shapes that do not match the ``n`` labels and ``h`` features."""
    if values is None:
        if latents is None:
            raise ValueError("feature_card needs the latents or the feature's column of them")
        latents = np.asarray(latents, dtype=np.float64)
        if latents.shape != (n, h):
            raise ValueError(f"latents have shape {latents.shape}, expected ({n}, {h})")
        values = latents[:, k]
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"the feature's values have shape {values.shape}, expected ({n},)")
    return values


def feature_card(
    latents: np.ndarray | None,
    labels: np.ndarray,
    W: np.ndarray,
    D: np.ndarray,
    feature: int,
    class_means: np.ndarray | None = None,
    *,
    values: np.ndarray | None = None,
    n_bins: int = DEFAULT_BINS,
    n_samples: int = DEFAULT_SAMPLES,
    n_nearest: int = DEFAULT_NEAREST,
) -> FeatureCard:
    """The card of ``feature`` from test latents ``u`` (N×h), labels, the head ``W`` (C×d) and the
    decoder ``D`` (d×h). ``class_means`` (C×h, the session's rankings) defaults to the test
    split's class means of ``u``. ``values`` (N,), the column ``u[:, feature]`` alone, replaces
    ``latents`` when the whole matrix does not fit in memory (:func:`latent_column`)."""
    labels = np.asarray(labels, dtype=np.int64)
    W = np.asarray(W, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    h = D.shape[1]
    if not 0 <= int(feature) < h:
        raise ValueError(f"feature {feature} is out of range: the SAE has {h} features (0..{h - 1})")
    k = int(feature)
    values = _feature_values(latents, values, len(labels), h, k)
    C = W.shape[0]
    edges, histogram = class_histogram(values, labels, C, n_bins)
    order = np.argsort(-values, kind="stable")
    levels = quantile_levels(n_samples)
    q_values, q_samples = quantile_samples(values, levels)
    if class_means is None:
        means = np.asarray([values[labels == c].mean() if (labels == c).any() else np.nan
                            for c in range(C)])
    else:
        means = np.asarray(class_means, dtype=np.float64)[:, k]
    nearest, cosine = nearest_features(D, k, n_nearest)
    return FeatureCard(
        feature=k,
        values=values,
        labels=labels,
        bin_edges=edges,
        histogram=histogram,
        top=order[:n_samples],
        bottom=np.argsort(values, kind="stable")[:n_samples],
        quantile_levels=levels,
        quantile_values=q_values,
        quantile_samples=q_samples,
        class_means=means,
        direct_effect=W @ D[:, k],
        nearest=nearest,
        nearest_cosine=cosine,
    )


@dataclass
class FeatureCardInputs:
    """What every card of one session needs, loaded once (the screen steps features on it)."""

    latents: np.ndarray | None  # None: over the memory budget, ``column`` computes one at a time
    labels: np.ndarray
    W: np.ndarray
    D: np.ndarray
    class_means: np.ndarray
    class_names: list[str]
    dominant: np.ndarray
    column: Callable[[int], np.ndarray] | None = None

    def card(self, feature: int, **options: int) -> FeatureCard:
        if self.latents is None and self.column is not None:
            if not 0 <= int(feature) < self.D.shape[1]:
                raise ValueError(f"feature {feature} is out of range: the SAE has {self.D.shape[1]} features "
                                 f"(0..{self.D.shape[1] - 1})")
            return feature_card(None, self.labels, self.W, self.D, feature, self.class_means,
                                values=self.column(int(feature)), **options)
        return feature_card(self.latents, self.labels, self.W, self.D, feature, self.class_means,
                            **options)


def encode(a: np.ndarray, weights: dict[str, np.ndarray], kind: str, k: int,
           input_norm: str = "none") -> np.ndarray:
    """``u`` (rows×h) of activations ``a`` in float64 (TopK keeps each row's k largest |u|);
    imported kinds and input normalisations follow :mod:`core.discover.sae_kinds`."""
    a = np.asarray(a, dtype=np.float64)
    if kind not in ("l1", "topk") or input_norm != "none":
        import torch

        from core.discover.sae_kinds import encode_latents

        tensors = {name: torch.from_numpy(np.asarray(value, dtype=np.float64)) for name, value in weights.items()}
        return encode_latents(torch.from_numpy(a), tensors, kind, k, input_norm).numpy()
    u = a @ np.asarray(weights["encoder.weight"], dtype=np.float64).T + weights["encoder.bias"]
    if kind == "topk":
        keep = np.argsort(-np.abs(u), axis=1)[:, :k]
        mask = np.zeros_like(u, dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        u = np.where(mask, u, 0.0)
    return u


def split_latents(session: Session, split: str = "test") -> np.ndarray:
    """``u`` (N×h) of a split with the stored SAE weights, in numpy (TopK keeps its k largest)."""
    from core.workflow.pipeline import load_activations, load_sae_arrays, sae_options

    return encode(load_activations(session, split)["a"], load_sae_arrays(session), **sae_options(session))


def latent_column(session: Session, feature: int, split: str = "test", budget: int | None = None,
                  weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """``u[:, feature]`` (N,) of a split, encoded in row blocks that fit the memory budget:
    the same numbers as ``split_latents(session, split)[:, feature]`` without the N×h matrix."""
    from core.workflow.outofcore import chunk_rows, iter_row_chunks
    from core.workflow.pipeline import activations_key, load_sae_arrays, sae_options

    weights = load_sae_arrays(session) if weights is None else weights
    options = sae_options(session)
    h, d = np.asarray(weights["encoder.weight"]).shape
    rows = chunk_rows(8 * (int(h) + int(d)), budget)
    parts = [encode(block, weights, **options)[:, feature]
             for _, (block,) in iter_row_chunks(session, [activations_key(session, split, "a")], rows)]
    return np.concatenate(parts) if parts else np.zeros(0)


def load_card_inputs(session: Session, budget: int | None = None) -> FeatureCardInputs:
    """Latents, labels, head, decoder and rankings of ``session``'s test split.

    The test latents (N×h, float64) are kept when they take at most a quarter of the memory
    budget (``core.config.memory_budget``); larger ones (ImageNet's 50k test images × 16k
    features is 6.5 GB) are computed one feature column at a time, in row blocks, per card.
    """
    from core.config import memory_budget
    from core.workflow.pipeline import (
        activations_key,
        load_classifier_head,
        load_sae_arrays,
        sae_options,
    )

    W, _ = load_classifier_head(session)
    budget = memory_budget() if budget is None else budget
    weights = load_sae_arrays(session)
    shape = session.array_shape(activations_key(session, "test", "a")) or (0, 0)
    h = int(np.asarray(weights["encoder.weight"]).shape[0])
    fits = 8 * int(shape[0]) * h <= budget // 4
    latents = None
    if fits:  # the weights are loaded already: encode here rather than through split_latents
        latents = encode(session.read_array(activations_key(session, "test", "a")), weights,
                         **sae_options(session))
    return FeatureCardInputs(
        latents=latents,
        column=None if fits else (lambda k: latent_column(session, k, budget=budget, weights=weights)),
        labels=np.asarray(session.read_array(activations_key(session, "test", "labels")), dtype=np.int64),
        W=np.asarray(W, dtype=np.float64),
        D=np.asarray(weights["decoder.weight"], dtype=np.float64),
        class_means=np.asarray(session.read_array("rankings/class_means"), dtype=np.float64),
        class_names=[str(c) for c in session.read_json("class_names")],
        dominant=np.asarray(session.read_array("rankings/dominant"), dtype=np.int64),
    )
