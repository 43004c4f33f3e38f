"""How each SAE kind turns activations into latents: one place for the trained and imported rules.

This project trains ``l1`` (the paper's linear SAE, signed latents) and ``topk`` (the k largest
|u| of each row, with their signs: SAELens' ``abstopk``). Dictionaries imported from SAELens keep
SAELens' own encode rule, so their latents are the ones SAELens computes:

- ``relu``: ``relu(pre)`` (SAELens ``standard``);
- ``topk_relu``: the k largest *values* of ``pre``, then ReLU (SAELens ``topk``);
- ``jumprelu``: ``relu(pre)·[pre > θ]`` with a per-latent threshold θ (SAELens ``jumprelu``).

``input_norm`` is SAELens' per-input ``normalize_activations`` applied at encode time
(``constant_norm_rescale``: ``x·√d/‖x‖``; ``layer_norm``: ``(x − mean)/(std + 1e-5)``, std with
Bessel's correction as torch's default); the decoder's output is mapped back with the same
per-input numbers. Pure functions on tensors; the module in :mod:`core.discover.sae` calls them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

TRAINED_KINDS = ("l1", "topk")
IMPORTED_KINDS = ("relu", "topk_relu", "jumprelu")
ALL_KINDS = TRAINED_KINDS + IMPORTED_KINDS
#: Kinds whose inactive latents are exactly zero (L0 counts non-zeros, not a relative threshold).
EXACT_ZERO_KINDS = ("topk", "relu", "topk_relu", "jumprelu")
INPUT_NORMS = ("none", "constant_norm_rescale", "layer_norm")
LAYER_NORM_EPS = 1e-5  # SAELens' run_time_activation_ln_in default


def topk_mask(pre: Tensor, k: int) -> Tensor:
    """0/1 mask of the k largest-|pre| entries of each row (no gradient flows through it)."""
    index = pre.detach().abs().topk(k, dim=-1).indices
    return torch.zeros_like(pre).scatter_(-1, index, 1.0)


def activate(pre: Tensor, kind: str, k: int = 8, threshold: Tensor | None = None) -> Tensor:
    """Latents from pre-activations ``pre`` (…, h) under ``kind``'s rule (module docstring)."""
    if kind == "l1":
        return pre
    if kind == "topk":
        return pre * topk_mask(pre, k)
    if kind == "relu":
        return torch.relu(pre)
    if kind == "topk_relu":
        values, index = pre.topk(k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter(-1, index, values.relu())
    if kind == "jumprelu":
        if threshold is None:
            raise ValueError("a jumprelu SAE needs its per-latent threshold")
        return torch.relu(pre) * (pre > threshold.to(pre.dtype)).to(pre.dtype)
    raise ValueError(f"SAE kind must be one of {', '.join(ALL_KINDS)}, got '{kind}'")


def normalize_input(a: Tensor, mode: str) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``a`` as the encoder sees it under ``mode``, and the per-row numbers that undo it."""
    if mode == "none":
        return a, ()
    if mode == "constant_norm_rescale":
        coeff = a.shape[-1] ** 0.5 / a.norm(dim=-1, keepdim=True)
        return a * coeff, (coeff,)
    if mode == "layer_norm":
        mu = a.mean(dim=-1, keepdim=True)
        centred = a - mu
        std = centred.std(dim=-1, keepdim=True)
        return centred / (std + LAYER_NORM_EPS), (mu, std)
    raise ValueError(f"input normalisation must be one of {', '.join(INPUT_NORMS)}, got '{mode}'")


def denormalize_output(x: Tensor, mode: str, undo: tuple[Tensor, ...]) -> Tensor:
    """The decoder's output back in the activations' units (inverse of :func:`normalize_input`)."""
    if mode == "constant_norm_rescale":
        return x / undo[0]
    if mode == "layer_norm":
        mu, std = undo
        return x * std + mu
    return x


def encode_latents(
    a: Tensor, weights: Mapping[str, Tensor], kind: str, k: int = 8, input_norm: str = "none"
) -> Tensor:
    """``u`` of activations ``a`` (n × d) from stored weights, in ``a``'s dtype (float64 for cards)."""
    x, _ = normalize_input(a, input_norm)
    pre = x @ weights["encoder.weight"].to(a.dtype).T + weights["encoder.bias"].to(a.dtype)
    threshold = weights.get("threshold")
    return activate(pre, kind, k, None if threshold is None else threshold.to(a.dtype))
