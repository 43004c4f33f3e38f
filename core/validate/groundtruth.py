"""Ground-truth scores on the Shapes dataset (SPEC §8): do latents and maps find the concepts?

Three questions the paper can only illustrate, measured here with the dataset's concept masks:

* **Latent ↔ concept**: for each concept, the latent whose value best separates images with the
  concept from images without (AUROC). Latents are signed, so a latent that goes *down* when the
  concept is present is as good a detector: we rank by ``|AUROC − 0.5|`` and report the sign.
* **Localisation**: the pointing game (is the map's maximum on the concept, within a tolerance of
  15 px at 224 px, scaled to the image size?) against its chance rate (the share of the image the
  tolerant mask covers), and the share of the map's energy inside the undilated mask.
* **Shared part**: for a part drawn in two classes, does one latent track the part *within each
  class* (AUROC computed separately per class)? The latent is chosen by its worse class, since a
  latent that merely encodes "class A vs class B" looks good when both are pooled but scores
  about 0.5 inside each.

Everything is numpy on plain arrays: maps ``(N, H, W)``, masks ``(N, H, W)`` bool, latents
``(N, h)``, concept presence ``(N, n_concepts)`` bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

POINTING_TOLERANCE_AT_224 = 15.0


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along axis 0, ties sharing the mean of their ranks (columns independent)."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    ranks = np.empty_like(flat)
    for column in range(flat.shape[1]):
        order = np.argsort(flat[:, column], kind="mergesort")
        sorted_values = flat[order, column]
        # Start of each run of equal values; a run spanning ranks i..j gets (i + j) / 2.
        starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
        ends = np.r_[starts[1:], len(sorted_values)]
        run_rank = (starts + ends + 1) / 2.0  # mean of (start+1 .. end), 1-based
        ranks[order, column] = np.repeat(run_rank, ends - starts)
    return ranks.reshape(values.shape)


def auroc_matrix(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """AUROC of every score column ``(N, h)`` for every label column ``(N, n)`` → ``(h, n)``.

    Mann–Whitney: ``(R⁺ − n⁺(n⁺+1)/2) / (n⁺·n⁻)`` with ``R⁺`` the rank sum of the positives, so
    ties count one half. A label column without positives or without negatives gives NaN.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positives).astype(bool)
    if scores.ndim == 1:
        scores = scores[:, None]
    if labels.ndim == 1:
        labels = labels[:, None]
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores but {labels.shape[0]} labels: one per sample")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity; AUROC needs finite values")
    ranks = average_ranks(scores)  # (N, h)
    n_pos = labels.sum(axis=0).astype(np.float64)  # (n,)
    n_neg = labels.shape[0] - n_pos
    rank_sums = ranks.T @ labels.astype(np.float64)  # (h, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    result[:, (n_pos == 0) | (n_neg == 0)] = np.nan
    return result


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``positives`` (ties averaged)."""
    return float(auroc_matrix(np.ravel(scores), np.ravel(positives))[0, 0])


@dataclass
class ConceptMatch:
    """The latent that best detects one concept; ``auroc`` is raw, ``strength`` sign-free."""

    concept: int
    name: str
    latent: int
    auroc: float
    sign: int  # +1: latent rises with the concept, −1: it falls
    strength: float  # max(auroc, 1 − auroc): AUROC of the latent oriented by its sign

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def best_latent_per_concept(
    latents: np.ndarray, presence: np.ndarray, concept_names: Sequence[str] | None = None
) -> list[ConceptMatch]:
    """For each concept, the latent with the largest ``|AUROC − 0.5|`` for concept presence."""
    latents = np.asarray(latents, dtype=np.float64)
    presence = np.asarray(presence).astype(bool)
    if presence.ndim != 2 or latents.ndim != 2:
        raise ValueError("latents must be (N, h) and presence (N, n_concepts)")
    names = list(concept_names) if concept_names is not None else None
    if names is not None and len(names) != presence.shape[1]:
        raise ValueError(f"{len(names)} concept names for {presence.shape[1]} concepts")
    return concept_matches(auroc_matrix(latents, presence), names)


def concept_matches(table: np.ndarray, concept_names: Sequence[str] | None = None) -> list[ConceptMatch]:
    """:func:`best_latent_per_concept` from a latent × concept AUROC table ``(h, n)`` (however
    it was computed: in one pass or in column blocks)."""
    names = list(concept_names) if concept_names is not None else None
    matches = []
    for concept in range(table.shape[1]):
        column = table[:, concept]
        name = names[concept] if names is not None else f"concept {concept}"
        if np.isnan(column).all():
            matches.append(ConceptMatch(concept, name, -1, float("nan"), 0, float("nan")))
            continue
        latent = int(np.nanargmax(np.abs(column - 0.5)))
        value = float(column[latent])
        sign = 1 if value >= 0.5 else -1
        matches.append(ConceptMatch(concept, name, latent, value, sign, max(value, 1 - value)))
    return matches


def tolerance_pixels(image_size: int) -> float:
    """Pointing-game tolerance: 15 px at 224 px, scaled linearly (≈4.3 px at 64 px)."""
    return POINTING_TOLERANCE_AT_224 * image_size / 224.0


def dilate(masks: np.ndarray, radius: float) -> np.ndarray:
    """Grow boolean masks ``(N, H, W)`` by every pixel within Euclidean distance ``radius``."""
    masks = np.asarray(masks).astype(bool)
    reach = int(np.floor(radius))
    grown = masks.copy()
    height, width = masks.shape[-2:]
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if (dy or dx) and dy * dy + dx * dx <= radius * radius:
                target = grown[
                    ..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)
                ]
                target |= masks[
                    ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
                ]
    return grown


@dataclass
class PointingResult:
    """Pointing game over the samples whose concept mask is not empty."""

    hits: np.ndarray  # (N,) bool; False for skipped samples
    evaluated: np.ndarray  # (N,) bool: mask non-empty and map not constant
    coverage: np.ndarray  # (N,) share of the image the tolerant mask covers
    tolerance_px: float

    @property
    def n_evaluated(self) -> int:
        return int(self.evaluated.sum())

    @property
    def hit_rate(self) -> float:
        return float(self.hits[self.evaluated].mean()) if self.n_evaluated else float("nan")

    @property
    def chance_rate(self) -> float:
        """Hit rate of a map whose maximum lands uniformly at random."""
        return float(self.coverage[self.evaluated].mean()) if self.n_evaluated else float("nan")

    @property
    def ratio_to_chance(self) -> float:
        chance = self.chance_rate
        return self.hit_rate / chance if chance and np.isfinite(chance) else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "hit_rate": self.hit_rate,
            "chance_rate": self.chance_rate,
            "ratio_to_chance": self.ratio_to_chance,
            "n_evaluated": self.n_evaluated,
            "n_skipped": int((~self.evaluated).sum()),
            "tolerance_px": self.tolerance_px,
        }


def _check_maps_and_masks(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(
            f"maps and masks must both be (N, H, W) of the same shape, got {maps.shape} and "
            f"{masks.shape}"
        )
    return maps, masks


def pointing_game(
    maps: np.ndarray, masks: np.ndarray, tolerance_px: float | None = None
) -> PointingResult:
    """Hit when the map's maximum lies within ``tolerance_px`` of the concept mask.

    The default tolerance is :func:`tolerance_pixels` of the image side. The maximum is the
    first in raster order (ties are rare for upsampled continuous maps). Samples with an empty
    mask, or a constant map (which points nowhere), are not evaluated.
    """
    maps, masks = _check_maps_and_masks(maps, masks)
    n, height, width = maps.shape
    tolerance = tolerance_pixels(max(height, width)) if tolerance_px is None else tolerance_px
    tolerant = dilate(masks, tolerance)
    flat = maps.reshape(n, -1)
    peak = flat.argmax(axis=1)
    hits = tolerant.reshape(n, -1)[np.arange(n), peak]
    informative = flat.max(axis=1) > flat.min(axis=1)
    evaluated = masks.reshape(n, -1).any(axis=1) & informative
    coverage = tolerant.reshape(n, -1).mean(axis=1)
    return PointingResult(hits & evaluated, evaluated, coverage, float(tolerance))


def energy_inside_mask(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each (non-negative) map's total inside its undilated mask, ``(N,)``.

    NaN where the map sums to zero or the mask is empty. Compare with the mask's area share,
    which is what a uniform map would score.
    """
    maps, masks = _check_maps_and_masks(maps, masks)
    if (maps < 0).any():
        raise ValueError("energy needs non-negative maps (normalised saliency maps are in [0, 1])")
    total = maps.sum(axis=(1, 2))
    inside = (maps * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = inside / total
    share[(total <= 0) | ~masks.any(axis=(1, 2))] = np.nan
    return share


@dataclass
class SharedPartTracking:
    """How well one latent follows a part drawn in two classes, judged inside each class."""

    concept: int
    classes: tuple[int, int]
    latent: int
    sign: int
    auroc_overall: float  # raw AUROC over the samples of both classes
    auroc_per_class: tuple[float, float]  # oriented by ``sign``: 1 = perfect detector
    threshold: float

    @property
    def tracks_both(self) -> bool:
        """True when the oriented AUROC reaches ``threshold`` inside each class."""
        return all(np.isfinite(v) and v >= self.threshold for v in self.auroc_per_class)

    def to_dict(self) -> dict[str, object]:
        return {**self.__dict__, "tracks_both": self.tracks_both}


def within_class_aurocs(
    latents: np.ndarray, presence: np.ndarray, labels: np.ndarray, concept: int,
    classes: tuple[int, int],
) -> np.ndarray:
    """Raw AUROC of every latent for ``concept`` inside each of ``classes`` → ``(2, h)``.

    NaN for a class without samples or where the concept is always or never present.
    """
    latents = np.asarray(latents, dtype=np.float64)
    present = np.asarray(presence).astype(bool)[:, concept]
    labels = np.asarray(labels)
    rows = []
    for cls in classes:
        inside = labels == cls
        if inside.any():
            rows.append(auroc_matrix(latents[inside], present[inside])[:, 0])
        else:
            rows.append(np.full(latents.shape[1], np.nan))
    return np.stack(rows)


def best_shared_part_latent(
    latents: np.ndarray, presence: np.ndarray, labels: np.ndarray, concept: int,
    classes: tuple[int, int],
) -> tuple[int, int]:
    """``(latent, sign)`` that tracks ``concept`` best *in both* classes: the largest worst-class
    AUROC, oriented by whichever sign gives the larger worst case.

    Why not the AUROC over both classes pooled: the part is drawn at different rates in the
    two classes, so a latent that only tells the classes apart scores well pooled (0.75 for a
    perfect class detector at rates 0.8 / 0.3) while tracking the part in neither.
    """
    return shared_part_choice(within_class_aurocs(latents, presence, labels, concept, classes), concept, classes)


def shared_part_choice(per_class: np.ndarray, concept: int, classes: tuple[int, int]) -> tuple[int, int]:
    """:func:`best_shared_part_latent` from the within-class AUROCs ``(2, h)``."""
    if np.isnan(per_class).any(axis=0).all():
        raise ValueError(
            f"concept {concept} is present in all or none of the samples of one of classes "
            f"{classes}; the shared part cannot be scored within each class"
        )
    rising = per_class.min(axis=0)
    falling = (1.0 - per_class).min(axis=0)
    worst = np.where(np.isnan(rising), -np.inf, np.maximum(rising, falling))
    chosen = int(np.argmax(worst))
    return chosen, (1 if rising[chosen] >= falling[chosen] else -1)


def shared_part_tracking(
    latents: np.ndarray,
    presence: np.ndarray,
    labels: np.ndarray,
    concept: int,
    classes: tuple[int, int],
    latent: int | None = None,
    threshold: float = 0.75,
    sign: int | None = None,
) -> SharedPartTracking:
    """Does a latent track the shared part ``concept`` in both ``classes``?

    ``latent=None`` picks :func:`best_shared_part_latent` on these samples (choose it on other
    samples, e.g. the train split, and pass ``latent`` and ``sign`` to score it without selection
    bias). The AUROC is computed within each class separately and oriented by ``sign`` (default:
    the latent's sign over both classes pooled); NaN for a class where the part is always or
    never present.
    """
    latents = np.asarray(latents, dtype=np.float64)
    present = np.asarray(presence).astype(bool)[:, concept]
    labels = np.asarray(labels)
    in_pair = np.isin(labels, classes)
    if not in_pair.any():
        raise ValueError(f"no samples of classes {classes}")
    if latent is None:
        latent, sign = best_shared_part_latent(latents, presence, labels, concept, classes)
    chosen = int(latent)
    overall = auroc(latents[in_pair, chosen], present[in_pair])
    if not np.isfinite(overall):
        raise ValueError(
            f"concept {concept} is present in all or none of the samples of classes {classes}; "
            "the shared part cannot be scored"
        )
    if sign is None:
        sign = 1 if overall >= 0.5 else -1
    per_class = within_class_aurocs(latents[:, [chosen]], presence, labels, concept, classes)[:, 0]
    oriented = per_class if sign > 0 else 1.0 - per_class
    return SharedPartTracking(
        concept=concept,
        classes=(int(classes[0]), int(classes[1])),
        latent=chosen,
        sign=int(sign),
        auroc_overall=float(overall),
        auroc_per_class=(float(oriented[0]), float(oriented[1])),
        threshold=threshold,
    )


@dataclass
class LocalisationScores:
    """Pointing game and energy of one saliency method, per class and pooled over classes."""

    method: str
    layer: str
    per_class: dict[str, dict[str, float]]
    overall: dict[str, float]

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _localisation_summary(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    pointing = pointing_game(maps, masks)
    energy = energy_inside_mask(maps, masks)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    finite = np.isfinite(energy)
    return {
        **pointing.summary(),
        "energy_inside": float(energy[finite].mean()) if finite.any() else float("nan"),
        "mask_area_share": float(area[finite].mean()) if finite.any() else float("nan"),
    }


def _saliency_maps(model: Any, encoder: Any, load: Any, labels: np.ndarray, dominant_per_image: np.ndarray,
                   shape: tuple[int, ...], layer: str, batch_size: int, progress: Any, cancel: Any,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-FAM (of each image's dominant feature) and Grad-CAM (of its label) maps of every
    image, ``batch_size`` images at a time."""
    import torch

    from core.jobs import ProgressReporter, check_cancel
    from core.validate.saliency import grad_cam, grad_fam

    n = len(labels)
    features = torch.as_tensor(dominant_per_image)
    fam_maps = np.empty(shape, dtype=np.float32)
    cam_maps = np.empty(shape, dtype=np.float32)
    reporter = ProgressReporter("saliency localisation", n, progress)
    for start in range(0, n, batch_size):
        check_cancel(cancel)
        idx = np.arange(start, min(start + batch_size, n))
        batch = load(idx)
        fam = grad_fam(model, encoder, batch, features[idx], layer)
        cam = grad_cam(model, batch, torch.as_tensor(labels[idx]), layer)
        fam_maps[idx], cam_maps[idx] = fam.cpu().numpy(), cam.cpu().numpy()
        reporter.report(idx[-1] + 1, f"{idx[-1] + 1}/{n} images")
    return fam_maps, cam_maps


def saliency_localisation(
    model: Any,
    encoder: Any,
    images: Any,
    labels: np.ndarray,
    masks: np.ndarray,
    dominant: Sequence[int],
    class_names: Sequence[str],
    layer: str | None = None,
    batch_size: int = 64,
    progress: Any = None,
    cancel: Any = None,
) -> dict[str, LocalisationScores]:
    """Grad-FAM of each image's class-dominant feature and Grad-CAM of its true class, scored
    against the class concept's mask (Shapes: the class shape).

    ``images``: normalised ``(N, 3, H, W)`` tensor, or a callable ``indices → tensor`` so large
    splits are loaded batch by batch. ``masks``: ``(N, H, W)`` bool, the mask of the concept
    each image's class stands for. ``dominant[c]``: the dominant feature of class ``c``.
    Returns ``{"grad_fam": ..., "grad_cam": ...}`` at the same layer.
    """
    import torch

    from core.validate.saliency import default_target_layer

    labels = np.asarray(labels, dtype=np.int64)
    masks = np.asarray(masks).astype(bool)
    n = len(labels)
    if masks.shape[0] != n:
        raise ValueError(f"{masks.shape[0]} masks for {n} labels: one mask per image")
    if len(dominant) != len(class_names):
        raise ValueError(f"{len(dominant)} dominant features for {len(class_names)} classes")
    load = images if callable(images) else (lambda idx: images[torch.as_tensor(idx)])
    layer = layer or default_target_layer(model, masks.shape[-1])
    fam_maps, cam_maps = _saliency_maps(model, encoder, load, labels, np.asarray(dominant)[labels], masks.shape,
                                        layer, batch_size, progress, cancel)
    results = {}
    for key, method, maps in (
        ("grad_fam", "Grad-FAM (class-dominant feature)", fam_maps),
        ("grad_cam", "Grad-CAM (true class)", cam_maps),
    ):
        per_class = {
            name: _localisation_summary(maps[labels == c], masks[labels == c])
            for c, name in enumerate(class_names)
            if (labels == c).any()
        }
        results[key] = LocalisationScores(
            method, layer, per_class, _localisation_summary(maps, masks)
        )
    return results
