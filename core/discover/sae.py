"""Sparse autoencoder (SPEC §2, paper A.4) the model, its loss and quality metrics.

The SAE is the paper's linear one: ``u = encoder(a)``, ``â = decoder(u)``, no nonlinearity, so
latents are signed. ``kind="topk"`` keeps only the k largest-|u| latents of each sample (signed).
Weights are xavier-uniform; biases keep ``nn.Linear``'s default init (uniform ±1/sqrt(fan_in)),
drawn from the same seeded generator so a seed fixes the whole run.

Training lives in :mod:`core.discover.sae_train`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from core.discover.sae_kinds import (
    ALL_KINDS,
    activate,
    denormalize_output,
    normalize_input,
    topk_mask,
)

#: A latent counts as active in a sample when |u_k| exceeds this share of the sample's max |u|.
L0_REL_THRESHOLD = 0.01

#: Threshold-free sparsity: share of a sample's L1 mass carried by its this many largest latents.
TOP_MASS_LATENTS = 5

#: Per-epoch history estimates the top-5 share on this many (randomly ordered) samples.
TOP_SHARE_SAMPLES = 1024

PARAM_NAMES = ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias")

class SparseAutoencoder(nn.Module):
    """The paper's linear SAE (``kind="l1"``) or its TopK variant behind the same interface.

    ``relu``, ``topk_relu`` and ``jumprelu`` (with a ``threshold`` buffer), and a per-input
    ``input_norm``, are only for dictionaries imported from SAELens (rules in
    :mod:`core.discover.sae_kinds`); this project trains ``l1`` and ``topk``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        kind: str = "l1",
        k: int = 8,
        generator: torch.Generator | None = None,
        input_norm: str = "none",
    ) -> None:
        super().__init__()
        if kind not in ALL_KINDS:
            raise ValueError(f"SAE kind must be one of {', '.join(ALL_KINDS)}, got '{kind}'")
        if kind in ("topk", "topk_relu") and not 1 <= k <= hidden_dim:
            raise ValueError(f"TopK k must be between 1 and hidden ({hidden_dim}), got {k}")
        self.kind = kind
        self.k = k
        self.input_norm = input_norm
        if kind == "jumprelu":
            self.register_buffer("threshold", torch.zeros(hidden_dim))
        self.encoder = nn.Linear(input_dim, hidden_dim)
        self.decoder = nn.Linear(hidden_dim, input_dim)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Xavier-uniform weights, nn.Linear-default biases, all drawn from ``generator``.

        Order (encoder weight, encoder bias, decoder weight, decoder bias) is part of the
        reproducibility contract: the trainer draws the same numbers for the same seed.
        """
        for layer in (self.encoder, self.decoder):
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.bias.uniform_(-bound, bound, generator=generator)

    @property
    def decoder_directions(self) -> Tensor:
        """``D = decoder.weight`` (d × h): column k is feature k's direction in activation space."""
        return self.decoder.weight

    def encode(self, a: Tensor) -> Tensor:
        if self.input_norm != "none":
            a = normalize_input(a, self.input_norm)[0]
        pre = self.encoder(a)
        if self.kind == "topk":
            return pre * topk_mask(pre, self.k)
        if self.kind == "l1":
            return pre
        return activate(pre, self.kind, self.k, getattr(self, "threshold", None))

    def forward(self, a: Tensor) -> tuple[Tensor, Tensor]:
        if self.input_norm == "none":
            u = self.encode(a)
            return u, self.decoder(u)
        x, undo = normalize_input(a, self.input_norm)
        u = activate(self.encoder(x), self.kind, self.k, getattr(self, "threshold", None))
        return u, denormalize_output(self.decoder(u), self.input_norm, undo)

def sae_loss(u: Tensor, a_hat: Tensor, a: Tensor, l1_coeff: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, reconstruction, sparsity)``: ``mean((â−a)²) + λ·mean(|u|)``, means over all entries."""
    recon = (a_hat - a).pow(2).mean()
    sparsity = l1_coeff * u.abs().mean()
    return recon + sparsity, recon, sparsity

def explained_variance(a: Tensor | np.ndarray, a_hat: Tensor | np.ndarray) -> float:
    """``1 − ||a − â||² / ||a − mean(a)||²`` over all samples (1 = perfect, 0 = the mean's quality)."""
    a_t, a_hat_t = torch.as_tensor(a).double(), torch.as_tensor(a_hat).double()
    total = (a_t - a_t.mean(0, keepdim=True)).pow(2).sum()
    if total == 0:
        raise ValueError("explained variance is undefined: the activations have zero variance")
    return float(1.0 - (a_t - a_hat_t).pow(2).sum() / total)

def active_latents(abs_u: Tensor, exact_zero: bool) -> Tensor:
    """Which latents count as active per sample: non-zero (TopK) or above 1% of the sample's max."""
    if exact_zero:
        return abs_u > 0
    return abs_u > L0_REL_THRESHOLD * abs_u.amax(-1, keepdim=True)


def sparsity_from_abs(
    abs_u: Tensor, exact_zero: bool, top_share_samples: int | None = None
) -> dict[str, Tensor]:
    """Sparsity statistics over the sample axis (-2) of |u| (…, n, h); one value per leading index.

    ``exact_zero``: count latents that are exactly non-zero (TopK) instead of the relative
    threshold. A latent is *dead* when it is active in no sample. ``top_share_samples`` limits
    the top-5 share to the first that many samples (``topk`` over rows is the one costly
    reduction here; the trainer passes a shuffled epoch, so the first rows are a random subset).
    """
    active = active_latents(abs_u, exact_zero)
    subset = abs_u if top_share_samples is None else abs_u[..., :top_share_samples, :]
    top_mass = subset.topk(min(TOP_MASS_LATENTS, abs_u.shape[-1]), dim=-1).values.sum(-1)
    share = top_mass / subset.sum(-1).clamp_min(torch.finfo(abs_u.dtype).tiny)
    return {
        "l0": active.sum(-1).to(abs_u.dtype).mean(-1),
        "top5_share": share.mean(-1),
        "dead": (~active.any(-2)).sum(-1).to(abs_u.dtype),
        "mean_abs": abs_u.mean((-2, -1)),
    }

def sparsity_metrics(u: Tensor | np.ndarray, exact_zero: bool = False) -> dict[str, float]:
    """Sparsity of latents ``u`` (n × h) as plain floats.

    ``l0``: mean number of active latents per sample, active meaning |u_k| > 1% of that sample's
    max |u| (or exactly non-zero with ``exact_zero=True``, right for TopK); ``top5_share``: mean
    share of each sample's L1 mass in its 5 largest latents (threshold-free); ``dead``: latents
    active in no sample; ``mean_abs``: mean |u|.
    """
    u_t = torch.as_tensor(u).float()
    if u_t.ndim != 2 or u_t.shape[0] == 0:
        raise ValueError(f"latents must be a non-empty (samples × latents) matrix, got {tuple(u_t.shape)}")
    return {key: float(value) for key, value in sparsity_from_abs(u_t.abs(), exact_zero).items()}

@torch.no_grad()
def encode(sae: SparseAutoencoder, activations: Tensor | np.ndarray, batch_size: int = 8192) -> Tensor:
    """Latents ``u`` (n × h) of ``activations`` on the SAE's device, in chunks to bound memory."""
    device = sae.encoder.weight.device
    a = torch.as_tensor(activations, dtype=torch.float32)
    chunks = [sae.encode(a[i : i + batch_size].to(device)) for i in range(0, a.shape[0], batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, sae.encoder.out_features, device=device)

def sae_from_arrays(
    weights: Mapping[str, np.ndarray | Tensor], seed_index: int = 0, *, kind: str = "l1", k: int = 8,
    input_norm: str = "none",
) -> SparseAutoencoder:
    """Build a CPU :class:`SparseAutoencoder` from stored weights (``SAEResult.weights``).

    Accepts arrays with a leading seed axis (pick one with ``seed_index``) or without; a
    ``jumprelu`` SAE also needs ``threshold``.
    """
    names = PARAM_NAMES + (("threshold",) if kind == "jumprelu" else ())
    missing = [name for name in names if name not in weights]
    if missing:
        raise ValueError(f"SAE weights are missing {', '.join(missing)}; re-train the SAE")
    tensors = {name: torch.as_tensor(np.asarray(weights[name]), dtype=torch.float32) for name in names}
    if tensors["encoder.weight"].ndim == 3:
        n_seeds = tensors["encoder.weight"].shape[0]
        if not 0 <= seed_index < n_seeds:
            raise ValueError(f"seed index {seed_index} is out of range: {n_seeds} SAE seed(s) stored")
        tensors = {name: t[seed_index] for name, t in tensors.items()}
    hidden, dim = tensors["encoder.weight"].shape
    sae = SparseAutoencoder(dim, hidden, kind=kind, k=k, input_norm=input_norm)
    sae.load_state_dict(tensors)
    return sae


# --------------------------------------------------------------------------- activation scale


def normalization_scale(activations: Tensor | np.ndarray) -> float:
    """The factor ``s`` with ``mean ‖s·a‖² = d`` (as SAELens does): the SAE then trains on
    activations whose mean square per coordinate is 1, so λ means the same on any backbone."""
    a = torch.as_tensor(activations)
    step = max(1, (1 << 22) // max(1, a.shape[1]))  # float64 copies of ~4M elements at a time
    mean_sq = sum(float(a[lo : lo + step].double().pow(2).sum()) for lo in range(0, a.shape[0], step)) / a.shape[0]
    if not mean_sq > 0:
        raise ValueError("the activations are all zero: they cannot be normalised")
    return math.sqrt(a.shape[1] / mean_sq)


def fold_scale(weights: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """Raw-unit weights of an SAE trained on ``scale·a``: ``u = (s·W_e) a + b_e`` and
    ``â = (W_d u + b_d)/s``, so encode/decode of raw activations are exactly the trained ones
    and every later use of the decoder (edits, α_crit) works in the activations' own units."""
    out = dict(weights)
    out["encoder.weight"] = weights["encoder.weight"] * scale
    out["decoder.weight"] = weights["decoder.weight"] / scale
    out["decoder.bias"] = weights["decoder.bias"] / scale
    return out
