"""Faithfulness of saliency maps: deletion and insertion curves against a random order.

Deletion: replace pixels by a baseline in the map's order (most salient first) and track the
score (``u_k`` for Grad-FAM, the class logit for Grad-CAM); a faithful map makes it fall fast,
so its area under the curve (AUC) is *below* that of a random order. Insertion: start from the
baseline and reveal pixels in the same order; a faithful map makes the score rise fast (AUC
above random). Curves are on the fraction of pixels changed, 0 → 1, with ``steps + 1`` points;
scores are divided by the score of the intact image so AUCs compare across samples (a value of
1 means the score stayed where it started). The baseline is the image's per-channel mean, so
no new colour is introduced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) → (B,) scores
DEFAULT_STEPS = 20
DEFAULT_RANDOM_ORDERS = 3


def saliency_order(heat: torch.Tensor) -> torch.Tensor:
    """Pixel indices (flattened H·W) from the most to the least salient (stable for ties)."""
    return torch.argsort(heat.flatten().double(), descending=True, stable=True)


def counts(n_pixels: int, steps: int) -> torch.Tensor:
    """How many pixels are changed at each of the ``steps + 1`` points (0 … all)."""
    return torch.round(torch.linspace(0, n_pixels, steps + 1, dtype=torch.float64)).long()


def perturbed(
    image: torch.Tensor, baseline: torch.Tensor, order: torch.Tensor, steps: int, mode: str
) -> torch.Tensor:
    """The ``steps + 1`` images of one curve (``mode``: ``deletion`` or ``insertion``)."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got '{mode}'")
    _, H, W = image.shape
    ranks = torch.empty(H * W, dtype=torch.long, device=order.device)
    ranks[order] = torch.arange(H * W, device=order.device)
    n = counts(H * W, steps).to(order.device)
    changed = (ranks.unsqueeze(0) < n.unsqueeze(1)).reshape(steps + 1, 1, H, W)  # (S+1, 1, H, W)
    start, end = (image, baseline) if mode == "deletion" else (baseline, image)
    return torch.where(changed, end.unsqueeze(0), start.unsqueeze(0))


def auc(curve: torch.Tensor) -> float:
    """Trapezoidal area under a curve sampled evenly on [0, 1]."""
    y = curve.double()
    return float(((y[1:] + y[:-1]) / 2).mean())


@dataclass
class FaithfulnessCurves:
    """Deletion and insertion curves of one sample: the map's order and random orders (mean)."""

    fractions: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor
    deletion_random: torch.Tensor
    insertion_random: torch.Tensor
    score: float  # the intact image's score (the normaliser)

    def aucs(self) -> dict[str, float]:
        return {
            "deletion": auc(self.deletion),
            "deletion_random": auc(self.deletion_random),
            "insertion": auc(self.insertion),
            "insertion_random": auc(self.insertion_random),
        }


def sample_curves(
    score_fn: ScoreFn,
    image: torch.Tensor,
    heat: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    n_random: int = DEFAULT_RANDOM_ORDERS,
    seed: int = 0,
) -> FaithfulnessCurves:
    """Deletion/insertion curves of one ``image`` (3×H×W, model input space) for ``heat`` (H×W).

    ``score_fn`` maps a batch to one score per image. Scores are divided by the intact image's
    score when it is positive (else left raw).
    """
    if heat.shape != image.shape[-2:]:
        raise ValueError(f"map shape {tuple(heat.shape)} does not match image {tuple(image.shape[-2:])}")
    baseline = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
    g = torch.Generator().manual_seed(seed)
    orders = [saliency_order(heat)] + [torch.randperm(heat.numel(), generator=g)
                                       for _ in range(n_random)]
    with torch.no_grad():
        full = float(score_fn(image.unsqueeze(0)).flatten()[0])
        scale = full if full > 0 else 1.0
        curves = {}
        for mode in ("deletion", "insertion"):
            rows = [score_fn(perturbed(image, baseline, o.to(image.device), steps, mode)).double().cpu()
                    for o in orders]
            curves[mode] = (rows[0] / scale, torch.stack(rows[1:]).mean(0) / scale)
    return FaithfulnessCurves(
        fractions=torch.linspace(0, 1, steps + 1, dtype=torch.float64),
        deletion=curves["deletion"][0],
        insertion=curves["insertion"][0],
        deletion_random=curves["deletion"][1],
        insertion_random=curves["insertion"][1],
        score=full,
    )
