"""SAE activation steering baseline (SPEC §5): add ``v = Σ β_k D[:,k]`` to the classifier input.

``W(a + βu) + b = Z0 + β·Wu``: affine in β, so its sweep uses the affine fast path. At the
classifier input it is exactly a bias shift, ``b' = b + Wv``, which is how it becomes a
permanent, exportable edit of the head.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from core.control.curves import (
    DEFAULT_N_ALPHAS,
    SweepResult,
    affine_curve,
    auto_range_from_flips,
    check_data,
    dominant_features,
    linear_flip_points,
    logits,
)
from core.control.methods.base import CachedInputs, EditMethod, EditRequest
from core.control.methods.spec import MODES, EditSpec, check_features, check_weight
from core.discover.backbone import final_linear
from core.jobs import CancelToken, ProgressFn


def steering_signs(M: torch.Tensor, target_class: int, features: Sequence[int]) -> list[float]:
    """``sign(μ_ck)`` per feature (a zero mean gives 0: that feature is not steered)."""
    return [float(torch.sign(M[target_class, k])) for k in features]


def steering_coefficients(
    signs: Sequence[float], beta: float, mode: str = "suppress"
) -> torch.Tensor:
    """``β_k = −β·sign(μ_ck)`` to suppress (SPEC §5), ``+β·sign(μ_ck)`` to enhance."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    direction = -1.0 if mode == "suppress" else 1.0
    return direction * float(beta) * torch.tensor(list(signs), dtype=torch.float64)


def steering_vector(
    D: torch.Tensor, features: Sequence[int], coefficients: torch.Tensor
) -> torch.Tensor:
    """``v = Σ_k β_k D[:,k]`` (d,)."""
    check_features(D, features)
    return D[:, list(features)] @ coefficients.to(D)


def steering_vector_for(D: torch.Tensor, spec: EditSpec) -> torch.Tensor:
    """The steering vector a recorded ``steer`` edit adds to the classifier input."""
    coefficients = steering_coefficients(spec.extra["signs"], spec.alpha, spec.mode)
    return steering_vector(D, spec.features, coefficients)


def steer_spec(
    M: torch.Tensor,
    target_class: int,
    beta: float,
    features: Sequence[int] | None = None,
    mode: str = "suppress",
) -> EditSpec:
    """Record a steering edit; ``features`` default to the class's dominant feature."""
    if features is None:
        features = [int(dominant_features(M)[target_class])]
    return EditSpec(
        features=tuple(features),
        mode=mode,
        alpha=beta,
        method="steer",
        extra={
            "target_class": int(target_class),
            "signs": steering_signs(M, target_class, features),
        },
    )


def steer_activations(A: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Cached-activation steering: ``a' = a + v`` for every row."""
    return A + vector.to(A)


def add_steering_hook(linear: nn.Module, vector: torch.Tensor) -> RemovableHandle:
    """Add ``vector`` to the input of ``linear`` on every forward; remove via the handle."""

    def pre_hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0] + vector.to(args[0]),) + tuple(args[1:])

    return linear.register_forward_pre_hook(pre_hook)


@contextmanager
def steering(model: nn.Module, vector: torch.Tensor) -> Iterator[nn.Module]:
    """Steer ``model``'s final linear input inside a ``with`` block; restored on exit."""
    _, _, linear = final_linear(model)
    handle = add_steering_hook(linear, vector)
    try:
        yield model
    finally:
        handle.remove()


def steer_sweep(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    M: torch.Tensor,
    target_class: int,
    features: Sequence[int] | None = None,
    betas: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    n_points: int = DEFAULT_N_ALPHAS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """Per-class accuracy vs steering strength β (same auto-range rule as SALVE)."""
    check_data(A, labels, W)
    if features is None:
        features = [int(dominant_features(M)[target_class])]
    features = [int(k) for k in features]
    signs = steering_signs(M, target_class, features)
    unit = steering_vector(D.to(W), features, steering_coefficients(signs, 1.0, mode))
    Z0 = logits(A, W, b)
    slope = (W @ unit).expand_as(Z0)
    if betas is None:
        suppress_unit = steering_vector(D.to(W), features, steering_coefficients(signs, 1.0))
        mask = labels == target_class
        flips = linear_flip_points(
            Z0[mask], (W @ suppress_unit).expand(int(mask.sum()), -1), labels[mask]
        )
        # Fallback when steering never flips a sample: one mean activation norm along the vector.
        fallback = float(A.norm(dim=1).mean() / unit.norm().clamp_min(1e-12))
        betas = torch.linspace(
            0.0, auto_range_from_flips(flips, fallback), n_points, dtype=torch.float64
        )
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if bool((betas < 0).any()):
        raise ValueError("β values must be ≥ 0 (use mode='enhance' to amplify)")
    per_class, target_pred = affine_curve(
        Z0, slope, betas, labels, W.shape[0], target_class, progress=progress, cancel=cancel
    )
    return SweepResult(
        method="steer",
        features=features,
        mode=mode,
        modulation="linear",
        target_class=target_class,
        param_name="beta",
        alphas=betas,
        per_class_accuracy=per_class,
        target_prediction=target_pred,
        class_counts=torch.bincount(labels.cpu().long(), minlength=W.shape[0]).tolist(),
        extra={"signs": signs},
    )


class SteeringMethod(EditMethod):
    """SAE steering of the classifier input; the strength is β ≥ 0, the mode its direction."""

    name = "steer"
    label = "steering"
    symbol = "β"
    param_name = "beta"
    strength_help = "steering strength β (≥ 0)"
    changes_bias = True  # a shift of the classifier input is a shift of the bias

    def check(self, spec: EditSpec) -> list[str]:
        problems = super().check(spec)
        if len(spec.extra.get("signs", ())) != len(spec.features):
            problems.append("a steer edit needs extra['signs'] with one sign per feature")
        return problems

    def build_spec(self, x: CachedInputs, request: EditRequest, strength: float) -> EditSpec:
        if x.M is None or request.target_class is None:
            raise ValueError("a steer edit needs a target class and the class means M (the signs)")
        return steer_spec(x.M, request.target_class, strength, request.features, request.mode)

    def describe(self, spec: EditSpec, long: bool = False) -> str:
        if long:
            feats = ", ".join(str(k) for k in spec.features)
            return f"SAE steering ({spec.mode}) along feature(s) {feats}, β = {spec.alpha:g} (bias shift)"
        feats = "+".join(str(k) for k in spec.features)
        return f"steering {spec.mode} f{feats} β={spec.alpha:g}"

    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if b is None:
            raise ValueError("a steering edit changes the bias; pass the layer's bias b")
        check_weight(W, D)
        vector = steering_vector_for(D.to(W), spec)
        return W.clone(), b + W @ vector

    def sweep(
        self, x: CachedInputs, request: EditRequest, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> SweepResult:
        if x.M is None:
            raise ValueError("a steering sweep needs the class means M (for the signs)")
        if request.target_class is None:
            raise ValueError("a steering sweep needs a target class")
        return steer_sweep(
            x.A, x.labels, x.W, x.b, x.D, x.M, request.target_class, request.features,
            request.strengths, request.mode, request.n_points, progress, cancel,
        )


STEERING = SteeringMethod()
