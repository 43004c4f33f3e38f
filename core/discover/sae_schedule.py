"""When SAE training may stop before its last epoch: the plateau rule (issue 19).

The paper trains for a fixed 1000 epochs; most of them change the loss very little. The rule
here looks only at the per-epoch training loss the trainer already records (no extra pass over
the data, no held-out split needed): with patience ``N`` and a minimum relative improvement
``X``, training stops after epoch ``e`` (``e ≥ 2N``) when, for every seed,

    (best loss of epochs 1 … e−N − best loss of epochs e−N+1 … e) < X · |best loss of epochs 1 … e−N|

i.e. the last ``N`` epochs improved the best loss by less than ``X`` (a share of it). ``N = 0``
turns the rule off (``--preset paper`` keeps the fixed schedule unless asked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PlateauRule:
    """Stop when ``patience`` epochs improved the best training loss by less than ``min_improvement``."""

    patience: int = 0
    min_improvement: float = 1e-3

    @property
    def active(self) -> bool:
        return self.patience > 0

    def describe(self) -> str:
        if not self.active:
            return "off: the fixed schedule runs every epoch"
        return (f"stop when the best training loss of the last {self.patience} epochs is less than "
                f"{self.min_improvement:.2%} below the best before them (every seed; checked from "
                f"epoch {2 * self.patience})")

    def to_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "min_improvement": self.min_improvement, "rule": self.describe()}


def relative_improvement(losses: np.ndarray, patience: int) -> np.ndarray:
    """Per seed: (best before the last ``patience`` epochs − best within them) / |best before|.

    ``losses`` is (seeds × epochs) or (epochs,); needs more than ``patience`` epochs.
    """
    values = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    before = values[:, :-patience].min(1)
    recent = values[:, -patience:].min(1)
    return (before - recent) / np.maximum(np.abs(before), np.finfo(np.float64).tiny)


def plateau_reached(losses: np.ndarray, rule: PlateauRule) -> bool:
    """Has every seed's loss history (seeds × epochs) reached the plateau of ``rule``?"""
    values = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    if not rule.active or values.shape[1] < 2 * rule.patience:
        return False
    return bool((relative_improvement(values, rule.patience) < rule.min_improvement).all())
