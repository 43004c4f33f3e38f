"""SAE dictionaries in SAELens' on-disk format (``cfg.json`` + ``sae_weights.safetensors``).

SAELens stores ``W_enc`` (d_in × d_sae), ``b_enc`` (d_sae), ``W_dec`` (d_sae × d_in) and ``b_dec``
(d_in); a standard SAE encodes ``u = act((x − b_dec·[apply_b_dec_to_input]) W_enc + b_enc)`` and
decodes ``x̂ = u W_dec + b_dec``. This project's SAE keeps ``nn.Linear`` weights: ``encoder.weight``
(h × d) and ``decoder.weight`` (d × h), so the conversion is a transpose plus folding the
input-side ``b_dec`` into the encoder bias. The paper's SAE is linear (no ReLU): it is written
with ``activation_fn: "identity"``, which a SAELens loader must be told to honour.

Pure functions on arrays; reading and writing files is done by ``core.workflow.sae_io``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
#: SAE kinds this project can encode with, by SAELens architecture / activation.
IMPORTABLE = {("standard", "relu"): "relu", ("standard", "identity"): "l1"}


class InteropError(ValueError):
    """A dictionary that cannot be used as given; the message says what to change."""


@dataclass
class ImportedSAE:
    """An SAE in this project's naming, with how to encode (``kind``) and where it came from."""

    weights: dict[str, np.ndarray]
    kind: str  # "l1" (linear latents, the paper's SAE) or "relu"
    d_in: int
    d_sae: int
    cfg: dict[str, Any]


def to_saelens(
    weights: Mapping[str, np.ndarray], kind: str = "l1", k: int | None = None,
    extra_cfg: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SAELens tensors and ``cfg.json`` content for this project's SAE weights."""
    enc = np.asarray(weights["encoder.weight"], dtype=np.float32)
    dec = np.asarray(weights["decoder.weight"], dtype=np.float32)
    d_sae, d_in = enc.shape
    if dec.shape != (d_in, d_sae):
        raise InteropError(f"decoder.weight is {dec.shape}, expected {(d_in, d_sae)}")
    tensors = {
        "W_enc": np.ascontiguousarray(enc.T),
        "b_enc": np.asarray(weights["encoder.bias"], dtype=np.float32).copy(),
        "W_dec": np.ascontiguousarray(dec.T),
        "b_dec": np.asarray(weights["decoder.bias"], dtype=np.float32).copy(),
    }
    cfg: dict[str, Any] = {
        "architecture": "topk" if kind == "topk" else "standard",
        "d_in": int(d_in),
        "d_sae": int(d_sae),
        "dtype": "float32",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "activation_fn": "topk" if kind == "topk" else "identity",
        "activation_fn_str": "topk" if kind == "topk" else "identity",
        "activation_fn_kwargs": {"k": int(k)} if kind == "topk" else {},
        "hook_name": "classifier_input",
        "model_name": "",
    }
    if kind == "topk":
        # This project's TopK keeps the k largest |u| with their signs (no ReLU).
        cfg["salve_topk_signed"] = True
    cfg.update(extra_cfg or {})
    return tensors, cfg


def _activation(cfg: Mapping[str, Any]) -> str:
    for key in ("activation_fn", "activation_fn_str"):
        if isinstance(cfg.get(key), str):
            return cfg[key]
    return "relu"  # SAELens' default for the standard architecture


def from_saelens(
    tensors: Mapping[str, np.ndarray], cfg: Mapping[str, Any], d_in: int,
    input_scale: float | None = None,
) -> ImportedSAE:
    """This project's SAE weights from SAELens tensors, checked against the session's ``d_in``.

    ``input_scale`` is the factor SAELens multiplies inputs by before encoding (its
    ``expected_average_only_in`` normalisation); it is folded into the weights, so the result
    encodes raw classifier inputs and decodes back to them.
    """
    missing = [name for name in SAELENS_NAMES if name not in tensors]
    if missing:
        found = ", ".join(sorted(tensors)) or "nothing"
        raise InteropError(
            f"the weights file lacks {', '.join(missing)} (found {found}); a SAELens dictionary "
            "has W_enc, b_enc, W_dec and b_dec"
        )
    W_enc = np.asarray(tensors["W_enc"], dtype=np.float64)
    W_dec = np.asarray(tensors["W_dec"], dtype=np.float64)
    b_enc = np.asarray(tensors["b_enc"], dtype=np.float64).reshape(-1)
    b_dec = np.asarray(tensors["b_dec"], dtype=np.float64).reshape(-1)
    if W_enc.ndim != 2 or W_dec.ndim != 2:
        raise InteropError(f"W_enc and W_dec must be 2-D, got {W_enc.shape} and {W_dec.shape}")
    if W_enc.shape[1] == d_in and W_enc.shape[0] != d_in:
        raise InteropError(
            f"W_enc is {W_enc.shape} (d_sae × d_in): it looks transposed; SAELens stores W_enc as "
            f"d_in × d_sae = ({d_in}, {W_enc.shape[0]})"
        )
    if W_enc.shape[0] != d_in:
        raise InteropError(
            f"W_enc has {W_enc.shape[0]} input rows but the session's classifier input has "
            f"{d_in} dimensions: this SAE was trained on another layer or model"
        )
    d_sae = W_enc.shape[1]
    for key, actual in (("d_in", d_in), ("d_sae", d_sae)):
        if key in cfg and int(cfg[key]) != actual:
            raise InteropError(f"cfg.json says {key} = {cfg[key]} but the weights have {actual}")
    if W_dec.shape != (d_sae, d_in):
        hint = " (it looks transposed)" if W_dec.shape == (d_in, d_sae) else ""
        raise InteropError(f"W_dec is {W_dec.shape}, expected d_sae × d_in = {(d_sae, d_in)}{hint}")
    if b_enc.shape != (d_sae,) or b_dec.shape != (d_in,):
        raise InteropError(
            f"b_enc must have {d_sae} entries and b_dec {d_in}, got {b_enc.shape[0]} and {b_dec.shape[0]}"
        )
    if not all(np.isfinite(t).all() for t in (W_enc, W_dec, b_enc, b_dec)):
        raise InteropError("the dictionary holds NaN or infinite weights")
    architecture = str(cfg.get("architecture", "standard"))
    activation = _activation(cfg)
    kind = IMPORTABLE.get((architecture, activation))
    if kind is None:
        raise InteropError(
            f"cannot encode with architecture '{architecture}' and activation '{activation}': "
            "supported are standard SAEs with relu or identity activation"
        )
    norm = str(cfg.get("normalize_activations", "none") or "none")
    if norm not in ("none", "expected_average_only_in"):
        raise InteropError(
            f"normalize_activations '{norm}' rescales each input on its own, which a linear edit "
            "cannot reproduce; export the SAE with normalize_activations 'none'"
        )
    scale = 1.0
    if norm == "expected_average_only_in":
        if input_scale is None or not np.isfinite(input_scale) or input_scale <= 0:
            raise InteropError("expected_average_only_in needs the input scale (from the activations)")
        scale = float(input_scale)
    # u = act(s·(x − b_dec·[apply]) W_enc + b_enc)  →  x W' + b'  with  W' = s·W_enc
    if cfg.get("apply_b_dec_to_input", False):
        b_enc = b_enc - scale * (b_dec @ W_enc)
    # SAELens' decoder output lives in the normalised space: x̂ = (u W_dec + b_dec) / s.
    weights = {
        "encoder.weight": (scale * W_enc).T.astype(np.float32),
        "encoder.bias": b_enc.astype(np.float32),
        "decoder.weight": (W_dec / scale).T.astype(np.float32),
        "decoder.bias": (b_dec / scale).astype(np.float32),
    }
    return ImportedSAE(weights, kind, int(d_in), int(d_sae), dict(cfg))


def expected_average_scale(activations: np.ndarray) -> float:
    """SAELens' ``expected_average_only_in`` factor: ``sqrt(d_in) / mean ||x||``."""
    norms = np.linalg.norm(np.asarray(activations, dtype=np.float64), axis=1)
    mean = float(norms.mean()) if norms.size else 0.0
    if not mean > 0:
        raise InteropError("the activations are all zero: no normalisation scale can be derived")
    return float(np.sqrt(activations.shape[1]) / mean)
