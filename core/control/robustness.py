"""Robustness of suppression curves across SAE seeds (SPEC §5, paper A.11.1).

K SAEs trained with different seeds learn different latent bases, so each seed's dominant
feature for a class is re-identified from that seed's class means. The curves are then
evaluated on one shared α grid and reported as mean ± standard deviation over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.control.curves import DEFAULT_N_ALPHAS, SweepResult, dominant_features
from core.control.methods.base import CachedInputs, EditMethod, EditRequest
from core.control.methods.registry import get_method
from core.jsonsafe import json_safe


@dataclass
class RobustnessResult:
    """Mean ± std (over seeds, sample std with K−1; 0 for one seed) of one class's curves."""

    target_class: int
    mode: str
    modulation: str
    features_per_seed: list[int]
    alphas: torch.Tensor
    accuracy_mean: torch.Tensor  # C × n_α
    accuracy_std: torch.Tensor
    target_prediction_mean: torch.Tensor  # n_α × C
    target_prediction_std: torch.Tensor
    sweeps: list[SweepResult]

    @property
    def n_seeds(self) -> int:
        return len(self.sweeps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_class": self.target_class,
            "mode": self.mode,
            "modulation": self.modulation,
            "n_seeds": self.n_seeds,
            "features_per_seed": list(self.features_per_seed),
            "alphas": self.alphas.tolist(),
            "accuracy_mean": json_safe(self.accuracy_mean.tolist()),
            "accuracy_std": json_safe(self.accuracy_std.tolist()),
            "target_prediction_mean": json_safe(self.target_prediction_mean.tolist()),
            "target_prediction_std": json_safe(self.target_prediction_std.tolist()),
        }


def _mean_std(stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if stack.shape[0] == 1:
        return stack[0], torch.zeros_like(stack[0])
    return stack.mean(0), stack.std(0, correction=1)


def seed_robustness(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    decoders: torch.Tensor | Sequence[torch.Tensor],
    class_means: torch.Tensor | Sequence[torch.Tensor],
    target_class: int,
    alphas: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    n_alphas: int = DEFAULT_N_ALPHAS,
    method: str | EditMethod | None = None,
) -> RobustnessResult:
    """Suppression curves of ``target_class``'s dominant feature for each of K SAE seeds.

    ``decoders``: K decoder weights (d×h each); ``class_means``: K matrices (C×h each).
    The shared automatic grid reaches the largest of the per-seed automatic ranges, so every
    seed's curve is followed until its target class is suppressed.
    """
    decoders, class_means = list(decoders), list(class_means)
    if not decoders or len(decoders) != len(class_means):
        raise ValueError(
            f"need one class-mean matrix per SAE decoder, got {len(decoders)} decoders "
            f"and {len(class_means)} class-mean matrices"
        )
    features = [int(dominant_features(M)[target_class]) for M in class_means]
    method = get_method(method)
    inputs = [CachedInputs(A, labels, W, b, D, M) for D, M in zip(decoders, class_means, strict=True)]
    if alphas is None:
        # The automatic suppression range of each seed (the method's own rule), then the widest.
        alpha_max = max(
            float(method.sweep(x, EditRequest(target_class, [k], None, "suppress", modulation, 2))
                  .alphas[-1])
            for x, k in zip(inputs, features, strict=True)
        )
        alphas = torch.linspace(0.0, alpha_max, n_alphas, dtype=torch.float64)
    sweeps = [
        method.sweep(x, EditRequest(target_class, [k], alphas, mode, modulation))
        for x, k in zip(inputs, features, strict=True)
    ]
    acc_mean, acc_std = _mean_std(torch.stack([s.per_class_accuracy for s in sweeps]))
    pred_mean, pred_std = _mean_std(torch.stack([s.target_prediction for s in sweeps]))
    return RobustnessResult(
        target_class=int(target_class),
        mode=mode,
        modulation=modulation,
        features_per_seed=features,
        alphas=sweeps[0].alphas,
        accuracy_mean=acc_mean,
        accuracy_std=acc_std,
        target_prediction_mean=pred_mean,
        target_prediction_std=pred_std,
        sweeps=sweeps,
    )
