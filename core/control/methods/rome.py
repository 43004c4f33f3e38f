"""ROME baseline (SPEC §5): a rank-one edit of the class's row that sets its logit at a key.

With key ``k`` (the class-mean activation, or one sample's) only row c changes:
``logit_c(a) = z_c(a) + (t − W_c·k)(k·a)/(k·k) + b_c``, affine in the target value ``t``, so
its sweep uses the same affine fast path as linear SALVE. The key is stored in the edit record
so the edit replays without the activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.control.curves import (
    DEFAULT_N_ALPHAS,
    SweepResult,
    affine_curve,
    auto_range_from_flips,
    check_data,
    linear_flip_points,
    logits,
)
from core.control.methods.base import CachedInputs, EditMethod, EditRequest
from core.control.methods.spec import EditSpec
from core.jobs import CancelToken, ProgressFn

DEFAULT_ROME_TARGET = -10.0
PARAM_NAME = "target_value"  # the strength: the target logit value t


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
    key: torch.Tensor | None = None,
) -> SweepResult:
    """Per-class accuracy vs the ROME target value ``t``.

    ``key``: an explicit key vector (control sweeps), instead of the class mean / a sample.

    The automatic grid starts at ``t = W_c·k`` (no change) and descends by the depth given by
    the shared auto-range rule (1.5× the 95th percentile of the target samples' flip points).
    """
    check_data(A, labels, W)
    custom = key is not None
    key = (rome_key(A, labels, target_class, sample_index) if key is None else key).to(W)
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
    source = "custom" if custom else "class_mean" if sample_index is None else f"sample:{sample_index}"
    return SweepResult(
        method="rome",
        features=[],
        mode="suppress",
        modulation="linear",
        target_class=target_class,
        param_name=PARAM_NAME,
        alphas=targets,
        per_class_accuracy=per_class,
        target_prediction=target_pred,
        class_counts=torch.bincount(labels.cpu().long(), minlength=W.shape[0]).tolist(),
        extra={"key_source": source, "unedited_key_logit": z_key},
    )


def key_sample(result: SweepResult) -> int | None:
    """The sample a sweep's key was taken from (None: the class mean or a custom key)."""
    source = str(result.extra.get("key_source", "class_mean"))
    return int(source.split(":")[1]) if source.startswith("sample:") else None


class RomeMethod(EditMethod):
    """ROME on the classifier head; the strength is the target logit value ``t``."""

    name = "rome"
    label = "ROME"
    symbol = "target"
    param_name = PARAM_NAME
    strength_help = "ROME target value of the class logit"
    default_strength = DEFAULT_ROME_TARGET
    modes = ("suppress",)
    needs_features = False
    nonnegative_strength = False  # a target logit value, usually negative
    row_chunked = False  # the key may name a sample by its index in the whole split
    options = ("sample_index", "key")

    def check(self, spec: EditSpec) -> list[str]:
        problems = super().check(spec)
        for key in ("target_class", "key"):
            if key not in spec.extra:
                problems.append(f"a rome edit needs extra['{key}']")
        return problems

    def build_spec(self, x: CachedInputs, request: EditRequest, strength: float) -> EditSpec:
        if request.mode not in self.modes:
            raise ValueError("the ROME baseline only suppresses (it sets the class logit)")
        if request.target_class is None:
            raise ValueError("a rome edit needs a target class (or a feature of that class)")
        return rome_spec(x.A, x.labels, request.target_class, strength,
                         request.options.get("sample_index"))

    def describe(self, spec: EditSpec, long: bool = False) -> str:
        if long:
            return (f"ROME rank-one edit of class {spec.extra['target_class']}: logit at the key "
                    f"({spec.extra.get('key_source', 'class_mean')}) set to {spec.alpha:g}")
        return f"ROME class {spec.extra.get('target_class', '?')} target={spec.alpha:g}"

    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = torch.as_tensor(spec.extra["key"], dtype=W.dtype, device=W.device)
        W_new = rome_edit(W, key, int(spec.extra["target_class"]), spec.alpha)
        return W_new, None if b is None else b.clone()

    def sweep(
        self, x: CachedInputs, request: EditRequest, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> SweepResult:
        if request.mode not in self.modes:
            raise ValueError("the ROME baseline only suppresses; use --mode suppress")
        if request.target_class is None:
            raise ValueError("a ROME sweep needs a target class")
        options = self.request_options(request.options)
        return rome_sweep(
            x.A, x.labels, x.W, x.b, request.target_class, request.strengths,
            options.get("sample_index"), request.n_points, progress, cancel, options.get("key"),
        )

    def sweep_key(self, result: SweepResult) -> str:
        target = "none" if result.target_class is None else str(result.target_class)
        source = str(result.extra.get("key_source", "class_mean")).replace(":", "")
        return f"rome-c{target}-{source}"

    def sweep_subject(self, result: SweepResult) -> str:
        return str(result.extra.get("key_source", "class_mean")).replace("_", "-") + " key"

    def replay_options(self, result: SweepResult, x: CachedInputs) -> dict[str, Any]:
        """The key built on ``x`` (the split the sweep ran on), so other rows get the same edit."""
        return {"key": rome_key(x.A, x.labels, int(result.target_class), key_sample(result))}

    def control_sweeps(
        self, result: SweepResult, x: CachedInputs, low: int, direction: torch.Tensor
    ) -> dict[str, SweepResult]:
        """ROME has no feature: keys along ``D[:, low]`` and ``direction``, scaled to the norm of
        its own key, at the same depths below each key's unedited logit."""
        c = int(result.target_class)
        key = rome_key(x.A, x.labels, c, key_sample(result)).to(x.W)
        depth = float(result.extra.get("unedited_key_logit", 0.0)) - result.alphas.double()
        out = {}
        for name, along in (("low_association", x.D[:, low]), ("random", direction)):
            k = along.to(x.W) / along.norm() * key.norm()
            targets = float(x.W[c] @ k) - depth
            out[name] = self.sweep(x, EditRequest(c, None, targets, options={"key": k}))
        return out


ROME = RomeMethod()
