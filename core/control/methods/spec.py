"""The record of one intervention on the final linear classifier: :class:`EditSpec`.

A spec is plain data that round-trips through JSON, so a session can store its edit log and
:func:`core.control.edit.replay` can rebuild the edited weights bit-for-bit. Which fields a
method needs is that method's business: the spec asks the method registered under its name
(:data:`REGISTERED`, filled by ``core.control.methods`` through ``registry.register``; this
module imports no method, so the methods can build specs without an import cycle).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from core.config import MODULATIONS

MODES = ("suppress", "enhance")


class MethodCheck(Protocol):
    """What a spec needs of its method: the fields it requires (``EditMethod.check``)."""

    name: str

    def check(self, spec: EditSpec) -> list[str]: ...


#: name → method, in registration order (``core.control.methods.registry`` adds to it).
REGISTERED: dict[str, MethodCheck] = {}


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
        if any(k < 0 for k in self.features):
            problems.append(f"feature indices must be ≥ 0, got {list(self.features)}")
        if self.method not in REGISTERED:
            problems.append(
                f"method must be one of {', '.join(REGISTERED)}, got '{self.method}'"
            )
        else:
            problems.extend(REGISTERED[self.method].check(self))
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


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")


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
