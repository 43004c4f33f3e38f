"""The one interface every editing method implements (SALVE, ROME, steering, and the next).

A method knows three things about itself: which fields its :class:`EditSpec` needs
(:meth:`EditMethod.check`), how it edits the final linear head (:meth:`EditMethod.apply`),
and the per-class accuracy curve over its strength parameter on cached activations
(:meth:`EditMethod.sweep`, using the affine fast paths of ``core.control.curves`` where the
logits are piecewise affine in the strength). Methods that scale one SAE feature also expose
the target class's logit as a function of strength (:meth:`EditMethod.class_logit`), which is
all α_crit needs. Sweeps, α_crit and robustness talk to this interface only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from core.jobs import CancelToken, ProgressFn

if TYPE_CHECKING:
    from core.control.curves import SweepResult
    from core.control.spec import EditSpec


@dataclass
class CachedInputs:
    """What a sweep runs on: cached classifier inputs, labels, the head and the SAE.

    ``A`` (N×d), ``labels`` (N,), ``W`` (C×d), ``b`` (C,) or None, decoder ``D`` (d×h) and the
    class-mean latents ``M`` (C×h, needed by methods that pick signs or dominant features).
    """

    A: torch.Tensor
    labels: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor | None
    D: torch.Tensor
    M: torch.Tensor | None = None


@dataclass
class ClassLogit:
    """Bias-free logit of one class as a function of the strength, sample by sample.

    ``evaluate(rows, points)`` on rows of activations (float64): points (G,) shared by all
    rows → N×G, or (N×P) one set per row → N×P.
    ``z`` is the logit at strength 0 and ``S`` its first-order slope (``z(s) ≈ z − s·S`` when
    suppressing), which gives the analytic α_crit; ``first_order_exact`` says whether that
    estimate is exact for this modulation. ``search_max(analytic)`` bounds the root search.
    ``total_ablation_at``: the strength from which the edit has switched off every coordinate
    it touches (clamped suppression: ``1/min_j |D_jk|``), None where there is no such point. A
    root found only there is no crossing (SPEC §4): the feature alone cannot flip the sample.
    """

    z: torch.Tensor
    S: torch.Tensor
    evaluate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    search_max: Callable[[torch.Tensor], float]
    first_order_exact: bool
    total_ablation_at: float | None = None


class EditMethod(ABC):
    """An editing method of the final linear layer; see the module docstring."""

    name: str  # recorded in EditSpec.method and SweepResult.method
    label: str  # for people: "SALVE", "ROME", "SAE steering"
    param_name: str  # the x-axis of its sweep: "alpha", "beta", "target"
    modes: tuple[str, ...] = ("suppress", "enhance")
    needs_features: bool = True  # the edit names SAE features
    nonnegative_strength: bool = True  # strength ≥ 0; the mode gives the direction

    def check(self, spec: EditSpec) -> list[str]:
        """Problems with the method-specific fields of ``spec`` (empty when it can be applied)."""
        problems = []
        if spec.mode not in self.modes:
            problems.append(f"the {self.label} method only supports mode {', '.join(self.modes)}")
        if self.needs_features and not spec.features:
            problems.append(f"a {self.name} edit needs at least one feature index")
        if self.nonnegative_strength and not spec.alpha >= 0:  # also rejects NaN
            problems.append(
                f"strength must be ≥ 0 (choose the mode for direction), got {spec.alpha}"
            )
        return problems

    @abstractmethod
    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """New ``(W', b')`` carrying ``spec``; the inputs are never modified."""

    @abstractmethod
    def sweep(
        self,
        x: CachedInputs,
        target_class: int,
        features: Sequence[int] | None = None,
        strengths: torch.Tensor | Sequence[float] | None = None,
        mode: str = "suppress",
        modulation: str = "linear",
        n_points: int = 200,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        **options: Any,
    ) -> SweepResult:
        """Per-class accuracy over the strength grid (automatic range when ``strengths`` is None)."""

    def class_logit(
        self, A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int, mode: str,
        modulation: str,
    ) -> ClassLogit | None:
        """Class ``w_c``'s logit on rows ``A`` against strength when ``feature`` is edited (for
        α_crit; float64), or None where the method has no such strength for one feature."""
        return None
