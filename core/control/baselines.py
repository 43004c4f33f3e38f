"""Baselines for class suppression (SPEC §5): a ROME rank-one edit and SAE activation steering.

Both produce the same :class:`~core.control.sweep.SweepResult` as SALVE so the three methods can be
compared side by side, and both are recorded as :class:`~core.control.edit.EditSpec` so they replay
and export like SALVE edits.

Both are affine in their parameter on cached activations, so their sweeps are as cheap as
the linear SALVE fast path:

- ROME with key ``k`` only rewrites row c: ``logit_c(a) = z_c(a) + (t − W_c·k)(k·a)/(k·k) + b_c``,
  affine in the target value ``t``.
- Steering adds ``v = Σ β_k D[:,k]`` to the classifier input: ``W(a + βu) + b = Z0 + β·Wu``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from core.discover.backbone import final_linear
from core.control.edit import MODES, EditSpec, check_features
from core.jobs import CancelToken, ProgressFn
from core.control.sweep import (
    DEFAULT_N_ALPHAS,
    SweepResult,
    affine_curve,
    auto_range_from_flips,
    check_data,
    dominant_features,
    linear_flip_points,
    logits,
)

DEFAULT_ROME_TARGET = -10.0

# ----------------------------------------------------------------------------- ROME


def rome_key(
    A: torch.Tensor, labels: torch.Tensor, target_class: int, sample_index: int | None = None
) -> torch.Tensor:
    """The ROME key: the class-mean activation (default) or one chosen sample's activation."""
    if sample_index is not None:
        if not 0 <= sample_index < A.shape[0]:
            raise ValueError(f"sample index {sample_index} is out of range (0..{A.shape[0] - 1})")
        return A[sample_index].clone()
    mask = labels == target_class
    if not bool(mask.any()):
        raise ValueError(f"class {target_class} has no samples to build a ROME key from")
    return A[mask].mean(0)


def rome_edit(
    W: torch.Tensor, key: torch.Tensor, target_class: int, target_value: float = DEFAULT_ROME_TARGET
) -> torch.Tensor:
    """``W' = W + (v − W k) kᵀ / (kᵀk)`` with ``v = W k`` except ``v_c = target_value``.

    Only row c changes, and afterwards its bias-free logit at the key is exactly the target
    (SPEC §5). Returns a new tensor.
    """
    if not 0 <= target_class < W.shape[0]:
        raise ValueError(f"target class {target_class} is out of range (0..{W.shape[0] - 1})")
    key = key.to(W)
    if key.shape != (W.shape[1],):
        raise ValueError(f"ROME key must have {W.shape[1]} entries, got shape {tuple(key.shape)}")
    norm2 = key @ key
    if not float(norm2) > 0:
        raise ValueError("ROME key is the zero vector: pick a sample with non-zero activation")
    W_new = W.clone()
    residual = target_value - W[target_class] @ key  # v − W k is zero outside row c
    W_new[target_class] = W[target_class] + residual * key / norm2
    return W_new


def rome_spec(
    A: torch.Tensor,
    labels: torch.Tensor,
    target_class: int,
    target_value: float = DEFAULT_ROME_TARGET,
    sample_index: int | None = None,
) -> EditSpec:
    """Record a ROME edit; the key is stored so the edit replays without the activations."""
    key = rome_key(A, labels, target_class, sample_index)
    source = "class_mean" if sample_index is None else f"sample:{sample_index}"
    return EditSpec(
        features=(),
        alpha=float(target_value),
        method="rome",
        extra={"target_class": int(target_class), "key": key.tolist(), "key_source": source},
    )


def rome_sweep(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    target_class: int,
    targets: torch.Tensor | Sequence[float] | None = None,
    sample_index: int | None = None,
    n_points: int = DEFAULT_N_ALPHAS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """Per-class accuracy vs the ROME target value ``t``.

    The automatic grid starts at ``t = W_c·k`` (no change) and descends by the depth given by
    the shared auto-range rule (1.5× the 95th percentile of the target samples' flip points).
    """
    check_data(A, labels, W)
    key = rome_key(A, labels, target_class, sample_index).to(W)
    z_key = float(W[target_class] @ key)
    reach = A @ key / (key @ key)  # (N,) how much of the key each sample contains
    Z0 = logits(A, W, b)
    # logits(t) = Z0 + (t − z_key)·reach·e_c  =  Z0 − δ·reach·e_c with depth δ = z_key − t ≥ 0
    depth_slope = torch.zeros_like(Z0)
    depth_slope[:, target_class] = -reach
    if targets is None:
        mask = labels == target_class
        flips = linear_flip_points(Z0[mask], depth_slope[mask], labels[mask])
        depth_max = auto_range_from_flips(flips, fallback=abs(z_key - DEFAULT_ROME_TARGET))
        targets = z_key - torch.linspace(0.0, depth_max, n_points, dtype=torch.float64)
    targets = torch.as_tensor(targets, dtype=torch.float64).flatten()
    per_class, target_pred = affine_curve(
        Z0,
        depth_slope,
        z_key - targets,
        labels,
        W.shape[0],
        target_class,
        progress=progress,
        cancel=cancel,
    )
    source = "class_mean" if sample_index is None else f"sample:{sample_index}"
    return SweepResult(
        method="rome",
        features=[],
        mode="suppress",
        modulation="linear",
        target_class=target_class,
        param_name="target_value",
        alphas=targets,
        per_class_accuracy=per_class,
        target_prediction=target_pred,
        class_counts=torch.bincount(labels.cpu().long(), minlength=W.shape[0]).tolist(),
        extra={"key_source": source, "unedited_key_logit": z_key},
    )


# ----------------------------------------------------------------------------- steering


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
