"""SAE dictionaries in SAELens' on-disk format (``cfg.json`` + ``sae_weights.safetensors``).

SAELens 6 stores ``W_enc`` (d_in × d_sae), ``b_enc`` (d_sae), ``W_dec`` (d_sae × d_in), ``b_dec``
(d_in) and, for JumpReLU, ``threshold`` (d_sae); it encodes
``u = act(norm(x) − b_dec·[apply_b_dec_to_input]) W_enc + b_enc)`` and decodes
``x̂ = unnorm(u W_dec + b_dec)``. This project keeps ``nn.Linear`` weights (``encoder.weight``
h × d, ``decoder.weight`` d × h), so a conversion is a transpose plus folding the input-side
``b_dec`` (and TopK's ``rescale_acts_by_decoder_norm``) into the encoder.

Kinds, both ways (rules in :mod:`core.discover.sae_kinds`):

============  ==========================  ===========================================
salve kind    SAELens architecture        mapping
============  ==========================  ===========================================
``l1``        ``standard`` with 2h        exact: ``u_k = f_k − f_{k+h}``, since
              latents                     ``u = relu(u) − relu(−u)``; W_enc = [W, −W],
                                          b_enc = [b, −b], W_dec = [D; −D]
``topk``      ``abstopk``                 exact (k largest |u|, signs kept)
``relu``      ``standard``                exact
``topk_relu`` ``topk``                    exact
``jumprelu``  ``jumprelu``                exact (``threshold`` kept)
============  ==========================  ===========================================

Pure functions on arrays; files are read and written by ``core.workflow.sae_io``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SAELENS_NAMES = ("W_enc", "b_enc", "W_dec", "b_dec")
#: The cfg layout written here is SAELens 6's; a version below 6 sends SAELens down its legacy path.
SAELENS_FORMAT_VERSION = "6.0.0"
#: SAELens architecture → this project's kind.
ARCHITECTURES = {"standard": "relu", "topk": "topk_relu", "abstopk": "topk", "jumprelu": "jumprelu"}
KIND_TO_ARCHITECTURE = {"l1": "standard", "topk": "abstopk", "relu": "standard",
                        "topk_relu": "topk", "jumprelu": "jumprelu"}
#: dtypes SAELens accepts in cfg.json (its DTYPE_MAP); reduced ones make SAELens compute in them.
DTYPES = ("float32", "float64", "float16", "bfloat16",
          "torch.float32", "torch.float64", "torch.float16", "torch.bfloat16")
#: normalize_activations modes SAELens applies per input at encode time (reproduced here).
RUNTIME_NORMS = ("none", "constant_norm_rescale", "layer_norm")
L1_LATENT_MAP = "u_k = f_k - f_(k+h) for k < h (f: SAELens latents, h = d_sae/2)"


class InteropError(ValueError):
    """A dictionary that cannot be used as given; the message says what to change."""


@dataclass
class ImportedSAE:
    """An SAE in this project's naming, with how to encode it and where it came from.

    ``notes`` say where the result is not exactly what SAELens computes (empty when it is).
    """

    weights: dict[str, np.ndarray]
    kind: str
    d_in: int
    d_sae: int
    cfg: dict[str, Any]
    k: int | None = None
    input_norm: str = "none"
    apply_b_dec_to_input: bool = False
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- cfg.json


def _version(cfg: Mapping[str, Any]) -> str | None:
    meta = cfg.get("metadata")
    version = cfg.get("sae_lens_version") or (meta.get("sae_lens_version") if isinstance(meta, dict) else None)
    return str(version) if version else None


def _is_v6(cfg: Mapping[str, Any]) -> bool:
    version = _version(cfg)
    if not version:
        return False
    try:
        return int(version.split(".")[0]) >= 6
    except ValueError:
        raise InteropError(f"cfg.json has sae_lens_version '{version}', which is not a version number") from None


def _legacy_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A pre-6.0 cfg read the way SAELens 6 reads it (its ``handle_pre_6_0_config``)."""
    out = dict(cfg)
    if "activation_fn_str" in out and "activation_fn" not in out:
        out["activation_fn"] = out.pop("activation_fn_str")
    out.setdefault("apply_b_dec_to_input", True)
    out.setdefault("architecture", "standard")
    activation = out.get("activation_fn") or "relu"
    if activation not in ("relu", "topk"):
        raise InteropError(
            f"cfg.json is a pre-6.0 SAELens config with activation_fn {activation!r}, which SAELens 6 "
            "ignores (it would encode with ReLU). Re-export an old `salve sae export` from its "
            "session; otherwise write a SAELens 6 cfg (architecture, metadata.sae_lens_version)")
    kwargs = out.get("activation_fn_kwargs") or {}
    if out.get("activation_fn") == "topk" and isinstance(kwargs, dict) and kwargs.get("k") is not None:
        out["architecture"], out["k"] = "topk", kwargs["k"]
    norm = out.get("normalize_activations")
    if isinstance(norm, bool):
        out["normalize_activations"] = "expected_average_only_in" if norm else "none"
    return out


def _int_field(cfg: Mapping[str, Any], key: str) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InteropError(f"cfg.json needs {key} as a positive whole number, got {value!r}")
    return value


def check_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` as SAELens 6 would read it, or an :class:`InteropError` naming what is wrong."""
    for key in ("d_in", "d_sae"):
        if key not in cfg:
            raise InteropError(f"cfg.json has no {key}: a SAELens config names d_in and d_sae")
    out = dict(cfg) if _is_v6(cfg) else _legacy_cfg(cfg)
    out["d_in"], out["d_sae"] = _int_field(out, "d_in"), _int_field(out, "d_sae")
    dtype = out.setdefault("dtype", "float32")
    if dtype not in DTYPES:
        raise InteropError(f"cfg.json has dtype {dtype!r}; SAELens accepts {', '.join(DTYPES[:4])}")
    architecture = out.get("architecture")
    if architecture is None:
        raise InteropError("cfg.json has no architecture (SAELens 6 needs one, e.g. 'standard')")
    if architecture not in ARCHITECTURES:
        raise InteropError(f"cfg.json claims architecture {architecture!r}; importable are "
                           f"{', '.join(ARCHITECTURES)}")
    if architecture in ("topk", "abstopk"):
        k = out.get("k", 100)  # SAELens' TopKSAEConfig default
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= out["d_sae"]:
            raise InteropError(f"cfg.json has k = {k!r}; a TopK SAE needs 1 ≤ k ≤ d_sae ({out['d_sae']})")
        out["k"] = k
    out["apply_b_dec_to_input"] = bool(out.get("apply_b_dec_to_input", True))
    out["normalize_activations"] = str(out.get("normalize_activations") or "none")
    return out


# ----------------------------------------------------------------------------- import


def _float64(tensors: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    return np.asarray(tensors[name], dtype=np.float64)


def _check_tensors(tensors: Mapping[str, np.ndarray], cfg: Mapping[str, Any], d_in: int) -> None:
    """Names and shapes of the weights against the cfg and the session's classifier input."""
    needed = SAELENS_NAMES + (("threshold",) if cfg["architecture"] == "jumprelu" else ())
    missing = [name for name in needed if name not in tensors]
    if missing:
        found = ", ".join(sorted(tensors)) or "nothing"
        raise InteropError(f"the weights file lacks {', '.join(missing)} (found {found}); a SAELens "
                           f"'{cfg['architecture']}' SAE has {', '.join(needed)}")
    extra = sorted(set(tensors) - set(needed))
    if extra:
        raise InteropError(f"the weights file also holds {', '.join(extra)}, which a SAELens "
                           f"'{cfg['architecture']}' SAE does not have (SAELens would refuse it too)")
    h, d = cfg["d_sae"], cfg["d_in"]
    expected = {"W_enc": (d, h), "b_enc": (h,), "W_dec": (h, d), "b_dec": (d,), "threshold": (h,)}
    for name in needed:
        shape = tuple(np.shape(tensors[name]))
        if shape != expected[name]:
            hint = " (it looks transposed)" if shape == expected[name][::-1] and len(shape) == 2 else ""
            raise InteropError(f"{name} is {shape} but cfg.json (d_in {d}, d_sae {h}) needs "
                               f"{expected[name]}{hint}")
    if d != d_in:
        raise InteropError(f"the SAE reads {d}-dim activations (d_in) but the session's classifier "
                           f"input has {d_in}: this SAE was trained on another layer or model")
    bad = [name for name in needed if not np.isfinite(np.asarray(tensors[name], dtype=np.float64)).all()]
    if bad:
        raise InteropError(f"{', '.join(bad)} hold NaN or infinite values: the dictionary is damaged")


def _normalisation(cfg: Mapping[str, Any], input_scale: float | None) -> tuple[str, float]:
    """The per-input mode to reproduce and a constant scale to fold, following SAELens' encode."""
    norm = cfg["normalize_activations"]
    if norm in RUNTIME_NORMS:
        if input_scale is not None:
            raise InteropError(f"an input scale only applies to normalize_activations "
                               f"'expected_average_only_in'; this SAE uses '{norm}'")
        return norm, 1.0
    if norm == "expected_average_only_in":
        if input_scale is None:
            raise InteropError(
                "cfg.json says normalize_activations 'expected_average_only_in': the SAE was trained "
                "on activations times a norm scaling factor that the folder does not store, and "
                "SAELens' encode applies none. Fold it in SAELens first "
                "(sae.fold_activation_norm_scaling_factor(s); sae.save_model(dir)), or give it with "
                "--input-scale S (--input-scale 1 encodes exactly as SAELens' encode does)")
        if not np.isfinite(input_scale) or input_scale <= 0:
            raise InteropError(f"the input scale must be a positive number, got {input_scale}")
        return "none", float(input_scale)
    if norm == "covariance_whitening":
        raise InteropError(
            "cfg.json says normalize_activations 'covariance_whitening': the whitening mean and "
            "matrix are not stored in the folder, and SAELens' encode applies none. Fold them in "
            "SAELens first (sae.fold_activation_whitening(mean, M, M_inv); sae.save_model(dir))")
    raise InteropError(f"cfg.json has normalize_activations {norm!r}; SAELens knows none, "
                       "expected_average_only_in, constant_norm_rescale, layer_norm, covariance_whitening")


def _salve_linear(t: Mapping[str, np.ndarray], cfg: Mapping[str, Any]) -> bool:
    """Whether a ``standard`` dictionary is exactly this project's 2h form of a linear SAE."""
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    h2 = cfg["d_sae"]
    if meta.get("salve_kind") != "l1" or h2 % 2 or cfg["apply_b_dec_to_input"]:
        return False
    h = h2 // 2
    return bool(np.array_equal(t["W_enc"][:, h:], -t["W_enc"][:, :h])
                and np.array_equal(t["b_enc"][h:], -t["b_enc"][:h])
                and np.array_equal(t["W_dec"][h:], -t["W_dec"][:h]))


def _dtype_notes(cfg: Mapping[str, Any], source_dtypes: set[str]) -> list[str]:
    notes = []
    if cfg["dtype"] not in ("float32", "float64", "torch.float32", "torch.float64"):
        notes.append(f"cfg.json's dtype is {cfg['dtype']}: SAELens computes in it, this project in "
                     "float32, so latents agree only to that precision (~1e-2 for bfloat16)")
    low = sorted(source_dtypes & {"float16", "bfloat16"})
    if low:
        notes.append(f"{'/'.join(low)} weights were converted to float32")
    return notes


def from_saelens(
    tensors: Mapping[str, np.ndarray], cfg: Mapping[str, Any], d_in: int,
    input_scale: float | None = None, source_dtypes: set[str] | None = None,
) -> ImportedSAE:
    """This project's SAE from SAELens tensors (float arrays), checked against the session's ``d_in``.

    The result encodes raw classifier inputs exactly as SAELens' ``encode`` does (``input_scale``:
    the norm scaling factor of an unfolded ``expected_average_only_in`` SAE, folded as SAELens'
    ``fold_activation_norm_scaling_factor`` does).
    """
    cfg = check_cfg(cfg)
    if "scaling_factor" in tensors and np.all(np.asarray(tensors["scaling_factor"]) == 1):
        tensors = {k: v for k, v in tensors.items() if k != "scaling_factor"}  # SAELens drops it too
    _check_tensors(tensors, cfg, d_in)
    input_norm, scale = _normalisation(cfg, input_scale)
    arch, h = cfg["architecture"], cfg["d_sae"]
    notes = _dtype_notes(cfg, source_dtypes or set())
    if arch == "standard" and _salve_linear(tensors, cfg):
        return ImportedSAE(_collapse_linear(tensors), "l1", d_in, h // 2, cfg, None, input_norm, False,
                           notes)
    W_enc, b_enc = _float64(tensors, "W_enc") * scale, _float64(tensors, "b_enc")
    W_dec, b_dec = _float64(tensors, "W_dec") / scale, _float64(tensors, "b_dec") / scale
    if cfg["apply_b_dec_to_input"]:  # (x − b_dec) W_enc + b_enc = x W_enc + (b_enc − b_dec W_enc)
        b_enc = b_enc - b_dec @ W_enc
    if arch in ("topk", "abstopk") and cfg.get("rescale_acts_by_decoder_norm"):
        # SAELens ranks pre·‖W_dec row‖ and decodes u/‖W_dec row‖: fold the norms in.
        norms = np.linalg.norm(W_dec, axis=1)
        W_enc, b_enc, W_dec = W_enc * norms, b_enc * norms, W_dec / norms[:, None]
    weights = {"encoder.weight": W_enc.T, "encoder.bias": b_enc, "decoder.weight": W_dec.T,
               "decoder.bias": b_dec}
    if arch == "jumprelu":
        weights["threshold"] = _float64(tensors, "threshold")
    weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in weights.items()}
    if scale != 1.0:
        notes.append(f"the norm scaling factor {scale:g} was folded into the weights")
    return ImportedSAE(weights, ARCHITECTURES[arch], d_in, h, cfg, cfg.get("k"), input_norm,
                       cfg["apply_b_dec_to_input"], notes)


def _collapse_linear(t: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The h-latent linear SAE behind its 2h ReLU form (the first half of each tensor)."""
    h = np.shape(t["b_enc"])[0] // 2
    f32 = {name: np.asarray(value, dtype=np.float32) for name, value in t.items()}
    return {"encoder.weight": np.ascontiguousarray(f32["W_enc"][:, :h].T),
            "encoder.bias": f32["b_enc"][:h].copy(),
            "decoder.weight": np.ascontiguousarray(f32["W_dec"][:h].T),
            "decoder.bias": f32["b_dec"].copy()}


# ----------------------------------------------------------------------------- export


def to_saelens(
    weights: Mapping[str, np.ndarray], kind: str = "l1", k: int | None = None,
    input_norm: str = "none", apply_b_dec_to_input: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """SAELens 6 tensors and ``cfg.json`` content that ``SAE.load_from_disk`` runs like this SAE.

    ``apply_b_dec_to_input`` writes the encoder bias unfolded (as an imported SAE had it).
    """
    if kind not in KIND_TO_ARCHITECTURE:
        raise InteropError(f"cannot export an SAE of kind '{kind}'")
    enc = np.asarray(weights["encoder.weight"], dtype=np.float32)
    dec = np.asarray(weights["decoder.weight"], dtype=np.float32)
    h, d = enc.shape
    if dec.shape != (d, h):
        raise InteropError(f"decoder.weight is {dec.shape}, expected {(d, h)}")
    W_enc, W_dec = np.ascontiguousarray(enc.T), np.ascontiguousarray(dec.T)
    b_enc = np.asarray(weights["encoder.bias"], dtype=np.float32).copy()
    b_dec = np.asarray(weights["decoder.bias"], dtype=np.float32).copy()
    if apply_b_dec_to_input and kind != "l1":
        b_enc = (b_enc.astype(np.float64) + b_dec.astype(np.float64) @ W_enc.astype(np.float64)).astype(np.float32)
    meta: dict[str, Any] = {"sae_lens_version": SAELENS_FORMAT_VERSION, "model_name": None,
                            "hook_name": None, "salve_kind": kind, **(metadata or {})}
    if kind == "l1":
        W_enc, b_enc = np.concatenate([W_enc, -W_enc], 1), np.concatenate([b_enc, -b_enc])
        W_dec = np.concatenate([W_dec, -W_dec], 0)
        meta.update(salve_hidden=int(h), salve_latent_map=L1_LATENT_MAP)
    tensors = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    cfg: dict[str, Any] = {
        "architecture": KIND_TO_ARCHITECTURE[kind], "d_in": int(d), "d_sae": int(W_enc.shape[1]),
        "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": bool(apply_b_dec_to_input and kind != "l1"),
        "normalize_activations": input_norm, "reshape_activations": "none", "metadata": meta,
    }
    if kind in ("topk", "topk_relu"):
        if k is None or not 1 <= int(k) <= h:
            raise InteropError(f"a TopK SAE needs 1 ≤ k ≤ {h}, got {k}")
        cfg.update(k=int(k), rescale_acts_by_decoder_norm=False)
    if kind == "jumprelu":
        tensors["threshold"] = np.asarray(weights["threshold"], dtype=np.float32).copy()
    return tensors, cfg
