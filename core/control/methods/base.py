"""The one interface every editing method implements (SALVE, ROME, steering, and the next).

A method says everything the fronts and the workflow ask about it (:class:`EditMethod`): its
name, label and strength symbol, the strength's name in a sweep and its neutral value, the
modes and modulations it has, how it builds, checks, describes and applies an
:class:`~core.control.methods.spec.EditSpec`, its per-class accuracy curve over the strength
on cached activations (:meth:`EditMethod.sweep`, one :class:`EditRequest`), whether it changes
the bias, whether its sweep may be summed over row chunks and, for methods that scale one SAE
feature, the target class's logit as a function of the strength (:meth:`EditMethod.class_logit`,
all α_crit needs). Nothing outside ``core.control.methods`` branches on a method's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from core.control.curves import DEFAULT_N_ALPHAS, SweepResult
from core.control.methods.spec import EditSpec
from core.jobs import CancelToken, ProgressFn


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

    def rows(self, index: slice | torch.Tensor) -> CachedInputs:
        """The same inputs on a subset of the samples."""
        return CachedInputs(self.A[index], self.labels[index], self.W, self.b, self.D, self.M)


@dataclass
class EditRequest:
    """What to edit: the target class, the features, mode, modulation, the strengths of a sweep
    (None: the method's automatic range with ``n_points``) and method options (ROME's
    ``sample_index``/``key``, SALVE's ``chunk_elements``; a method ignores options it does not
    name in :attr:`EditMethod.options`)."""

    target_class: int | None
    features: list[int] | None = None
    strengths: torch.Tensor | Sequence[float] | None = None
    mode: str = "suppress"
    modulation: str = "linear"
    n_points: int = DEFAULT_N_ALPHAS
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = None if not self.features else [int(k) for k in self.features]

    def but(self, **changes: Any) -> EditRequest:
        """A copy with ``changes``."""
        return replace(self, **changes)


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


def with_direction(x: CachedInputs, direction: torch.Tensor) -> tuple[CachedInputs, int]:
    """``x`` with ``direction`` appended as an extra decoder column; returns it and its index.

    Its class means (for methods that use sign(μ_ck)) are the classes' mean projections on it.
    """
    d = direction.to(x.D).reshape(-1, 1)
    D = torch.cat([x.D, d], dim=1)
    M = None
    if x.M is not None:
        proj = (x.A.double() @ d.double()).flatten() / float(d.double().norm() ** 2)
        col = torch.stack([proj[x.labels == c].mean() if bool((x.labels == c).any())
                           else torch.tensor(0.0, dtype=torch.float64)
                           for c in range(x.W.shape[0])])
        M = torch.cat([x.M, col.to(x.M).reshape(-1, 1)], dim=1)
    return CachedInputs(x.A, x.labels, x.W, x.b, D, M), D.shape[1] - 1


class EditMethod(ABC):
    """An editing method of the final linear layer; see the module docstring."""

    name: str  # recorded in EditSpec.method and SweepResult.method
    label: str  # for people, short enough for a table column: "SALVE", "ROME", "steering"
    symbol: str  # the strength on screen: "α", "β", "target"
    param_name: str  # the strength's name in a SweepResult (its x-axis): "alpha", "target_value"
    strength_help: str = "strength (≥ 0; the mode gives the direction)"  # what to type
    default_strength: float = 0.0  # the unedited / reset value
    modes: tuple[str, ...] = ("suppress", "enhance")
    modulations: tuple[str, ...] = ("linear",)  # more than one: the front offers the choice
    needs_features: bool = True  # the edit names SAE features
    nonnegative_strength: bool = True  # strength ≥ 0; the mode gives the direction
    changes_bias: bool = False  # the edit moves b (replay needs the layer, not W alone)
    row_chunked: bool = True  # a sweep of a row subset is that subset's share of the full one
    options: tuple[str, ...] = ()  # EditRequest.options it reads

    # ----- the record

    def check(self, spec: EditSpec) -> list[str]:
        """Problems with the method-specific fields of ``spec`` (empty when it can be applied)."""
        problems = []
        if spec.mode not in self.modes:
            problems.append(f"the {self.label} method only supports mode {', '.join(self.modes)}")
        if spec.modulation not in self.modulations:
            problems.append(f"the {self.label} method only has {', '.join(self.modulations)} "
                            "modulation")
        if self.needs_features and not spec.features:
            problems.append(f"a {self.name} edit needs at least one feature index")
        if self.nonnegative_strength and not spec.alpha >= 0:  # also rejects NaN
            problems.append(
                f"strength must be ≥ 0 (choose the mode for direction), got {spec.alpha}"
            )
        return problems

    @abstractmethod
    def build_spec(self, x: CachedInputs, request: EditRequest, strength: float) -> EditSpec:
        """The record of this edit at ``strength``, holding whatever it needs to replay without
        ``x``. ``request`` has a target class, and features when :attr:`needs_features`."""

    @abstractmethod
    def describe(self, spec: EditSpec, long: bool = False) -> str:
        """One line for people: short (``SALVE suppress f55 α=2 linear``) or a full sentence."""

    @abstractmethod
    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """New ``(W', b')`` carrying ``spec``; the inputs are never modified."""

    # ----- the curve

    @abstractmethod
    def sweep(
        self, x: CachedInputs, request: EditRequest, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> SweepResult:
        """Per-class accuracy over ``request``'s strengths (automatic range when None)."""

    def sweep_key(self, result: SweepResult) -> str:
        """Storage id of a sweep: method, feature(s), mode, modulation (or strength) and class."""
        target = "none" if result.target_class is None else str(result.target_class)
        feats = "+".join(str(k) for k in result.features)
        tail = result.modulation if len(self.modulations) > 1 else self.param_name
        return f"{self.name}-f{feats}-{result.mode}-{tail}-c{target}"

    def sweep_subject(self, result: SweepResult) -> str:
        """What a sweep edits, in a few characters: ``f12`` (ROME: ``class-mean key``)."""
        return "f" + "+".join(str(k) for k in result.features)

    def replay_options(self, result: SweepResult, x: CachedInputs) -> dict[str, Any]:
        """Options that make a sweep of other rows apply ``result``'s edit (built on ``x``)."""
        return {}

    def control_sweeps(
        self, result: SweepResult, x: CachedInputs, low: int, direction: torch.Tensor
    ) -> dict[str, SweepResult]:
        """``result``'s edit at its strengths on feature ``low`` (``low_association``) and along
        ``direction`` (``random``, appended to the decoder)."""
        request = EditRequest(result.target_class, [low], result.alphas, result.mode,
                              result.modulation)
        xr, k = with_direction(x, direction)
        along = self.sweep(xr, request.but(features=[k]))
        along.features = []
        return {"low_association": self.sweep(x, request), "random": along}

    # ----- α_crit

    def class_logit(
        self, A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int, mode: str,
        modulation: str,
    ) -> ClassLogit | None:
        """Class ``w_c``'s logit on rows ``A`` against strength when ``feature`` is edited (for
        α_crit; float64), or None where the method has no such strength for one feature."""
        return None

    @property
    def has_alpha_crit(self) -> bool:
        """Whether :meth:`class_logit` is defined (α_crit exists for this method)."""
        return type(self).class_logit is not EditMethod.class_logit

    def request_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options of a request this method reads (others are ignored)."""
        return {k: v for k, v in options.items() if k in self.options and v is not None}
