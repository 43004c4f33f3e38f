"""SALVE weight edits of the final linear classifier (SPEC §3), recorded as replayable specs.

An edit multiplies every row of ``W`` (C×d) by a per-coordinate factor built from the
decoder directions ``D[:, k]`` of the chosen SAE features. Edits never mutate their inputs:
each function returns a new tensor / layer / model, so the loaded model stays the reference.

Every edit is described by an :class:`EditSpec` (a JSON-round-trippable record) so the session
can store the list of edits and :func:`replay` can rebuild the edited weights bit-for-bit.
The ROME and steering baselines (``core.control.baselines``) use the same record with ``method`` set
to ``"rome"`` / ``"steer"``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.discover.backbone import final_linear, replace_final_linear
from core.config import MODULATIONS

MODES = ("suppress", "enhance")
METHODS = ("salve", "rome", "steer")


@dataclass
class EditSpec:
    """One recorded intervention on the final linear layer.

    ``alpha`` is the method's strength parameter, i.e. the x-axis of its sweep:
    SALVE strength α ≥ 0, steering strength β ≥ 0, and for ROME the target value written into
    the class's bias-free logit at the key (may be negative, default −10).
    ``extra`` carries what the method needs to be replayed without the data it was built from:
    ROME: ``target_class``, ``key`` (list of floats), ``key_source``; steering: ``signs``
    (sign of μ_ck per feature) and ``target_class``.
    """

    features: tuple[int, ...] = ()
    mode: str = "suppress"
    alpha: float = 0.0
    modulation: str = "linear"
    method: str = "salve"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Accept a bare int or any iterable so callers (and JSON lists) need no ceremony.
        if isinstance(self.features, int):
            self.features = (self.features,)
        self.features = tuple(int(k) for k in self.features)
        self.alpha = float(self.alpha)
        problems = self.validate()
        if problems:
            raise ValueError("invalid edit: " + "; ".join(problems))

    def validate(self) -> list[str]:
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if self.modulation not in MODULATIONS:
            problems.append(
                f"modulation must be one of {', '.join(MODULATIONS)}, got '{self.modulation}'"
            )
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.method in ("salve", "steer"):
            if not self.features:
                problems.append(f"a {self.method} edit needs at least one feature index")
            if not self.alpha >= 0:  # also rejects NaN
                problems.append(
                    f"strength must be ≥ 0 (choose the mode for direction), got {self.alpha}"
                )
        if any(k < 0 for k in self.features):
            problems.append(f"feature indices must be ≥ 0, got {list(self.features)}")
        if self.method == "rome":
            for key in ("target_class", "key"):
                if key not in self.extra:
                    problems.append(f"a rome edit needs extra['{key}']")
        if self.method == "steer" and len(self.extra.get("signs", ())) != len(self.features):
            problems.append("a steer edit needs extra['signs'] with one sign per feature")
        return problems

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EditSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, text: str) -> EditSpec:
        return cls.from_dict(json.loads(text))


def check_features(D: torch.Tensor, features: Sequence[int]) -> None:
    if D.ndim != 2:
        raise ValueError(f"decoder weight D must be 2-D (d×h), got shape {tuple(D.shape)}")
    h = D.shape[1]
    bad = [k for k in features if not 0 <= k < h]
    if bad:
        raise ValueError(
            f"feature index {bad[0]} is out of range: the SAE has {h} latents (0..{h - 1})"
        )


def check_weight(W: torch.Tensor, D: torch.Tensor) -> None:
    if W.ndim != 2:
        raise ValueError(f"classifier weight W must be 2-D (C×d), got shape {tuple(W.shape)}")
    if W.shape[1] != D.shape[0]:
        raise ValueError(
            f"W has {W.shape[1]} input features but the SAE decoder has {D.shape[0]} rows: "
            "the SAE was trained on activations of a different layer or model"
        )


def modulation_factors_grid(
    D: torch.Tensor,
    features: Sequence[int] | int,
    alphas: torch.Tensor,
    mode: str = "suppress",
    modulation: str = "linear",
) -> torch.Tensor:
    """Per-coordinate factors for a whole α grid: (n_α × d), product over ``features``.

    Linear: ``1 ∓ α|D_jk|``; clamped: suppress ``max(0, 1 − α|D_jk|)``, enhance ``1 + α|D_jk|``.
    """
    if isinstance(features, int):
        features = (features,)
    check_features(D, features)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    if modulation not in MODULATIONS:
        raise ValueError(f"modulation must be one of {', '.join(MODULATIONS)}, got '{modulation}'")
    alphas = torch.as_tensor(alphas, dtype=D.dtype, device=D.device).reshape(-1, 1)
    sign = -1.0 if mode == "suppress" else 1.0
    factors = torch.ones(alphas.shape[0], D.shape[0], dtype=D.dtype, device=D.device)
    for k in features:
        f = 1.0 + sign * alphas * D[:, k].abs().unsqueeze(0)
        if modulation == "clamped" and mode == "suppress":
            f = f.clamp_min(0.0)
        factors = factors * f
    return factors


def modulation_factors(
    D: torch.Tensor,
    features: Sequence[int] | int,
    alpha: float,
    mode: str = "suppress",
    modulation: str = "linear",
) -> torch.Tensor:
    """The (d,) factor that multiplies every row of W for one edit (SPEC §3)."""
    if not alpha >= 0:
        raise ValueError(f"α must be ≥ 0 (pick mode='enhance' to amplify), got {alpha}")
    return modulation_factors_grid(D, features, torch.tensor([float(alpha)]), mode, modulation)[0]


def apply_salve_edit(W: torch.Tensor, D: torch.Tensor, spec: EditSpec) -> torch.Tensor:
    """``W' = W · f`` column-wise; a new tensor, the bias is untouched by SALVE."""
    if spec.method != "salve":
        raise ValueError(f"apply_salve_edit got a '{spec.method}' edit; use apply_edit instead")
    check_weight(W, D)
    f = modulation_factors(D.to(W), spec.features, spec.alpha, spec.mode, spec.modulation)
    return W * f.unsqueeze(0)


def apply_edit(
    W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply any recorded edit to ``(W, b)`` and return new tensors.

    Steering at the classifier input is exactly a bias shift, ``W(a + v) + b = Wa + (b + Wv)``,
    so it too becomes a permanent, exportable layer edit here.
    """
    # core.control.baselines builds on this module; import lazily to keep the dependency one-way.
    from core.control import baselines

    if spec.method == "salve":
        return apply_salve_edit(W, D, spec), None if b is None else b.clone()
    if spec.method == "rome":
        key = torch.as_tensor(spec.extra["key"], dtype=W.dtype, device=W.device)
        W_new = baselines.rome_edit(W, key, int(spec.extra["target_class"]), spec.alpha)
        return W_new, None if b is None else b.clone()
    if b is None:
        raise ValueError("a steering edit changes the bias; pass the layer's bias b")
    check_weight(W, D)
    vector = baselines.steering_vector_for(D.to(W), spec)
    return W.clone(), b + W @ vector


def replay(W: torch.Tensor, D: torch.Tensor, edits: Iterable[EditSpec]) -> torch.Tensor:
    """Rebuild ``W'`` from the original ``W`` and the recorded weight edits, in order.

    Edits compose on the already-edited weights, exactly as they were applied in the session.
    Steering edits change only the bias: use :func:`replay_linear` for those.
    """
    W_new = W.clone()
    for spec in edits:
        if spec.method == "steer":
            raise ValueError(
                "steering edits change the bias, not W: use replay_linear(layer, D, edits)"
            )
        W_new, _ = apply_edit(W_new, None, D, spec)
    return W_new


def edited_linear(linear: nn.Linear, spec: EditSpec, D: torch.Tensor) -> nn.Linear:
    """A new ``nn.Linear`` carrying the edit; ``linear`` itself is left untouched."""
    return replay_linear(linear, D, [spec])


def replay_linear(linear: nn.Linear, D: torch.Tensor, edits: Iterable[EditSpec]) -> nn.Linear:
    """A new ``nn.Linear`` with all ``edits`` applied in order (any method)."""
    with torch.no_grad():
        W = linear.weight.detach()
        b = None if linear.bias is None else linear.bias.detach()
        D = D.detach().to(W)
        for spec in edits:
            if spec.method == "steer" and b is None:
                b = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
            W, b = apply_edit(W, b, D, spec)
        # skip_init: the weights are overwritten right away, so skip the random initialisation.
        new = nn.utils.skip_init(
            nn.Linear, W.shape[1], W.shape[0], bias=b is not None, device=W.device, dtype=W.dtype
        )
        new.weight.copy_(W)
        if b is not None:
            new.bias.copy_(b)
    return new


def edited_model(
    model: nn.Module, spec: EditSpec | Sequence[EditSpec], D: torch.Tensor
) -> nn.Module:
    """A deep copy of ``model`` whose final linear carries the edit(s); ``model`` is unchanged."""
    edits = [spec] if isinstance(spec, EditSpec) else list(spec)
    new_model = copy.deepcopy(model)
    _, _, linear = final_linear(new_model)
    return replace_final_linear(new_model, replay_linear(linear, D, edits))
