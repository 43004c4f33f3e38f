"""The clamped α_crit rule: a root past the point where the feature is (almost) all switched
off is a total-ablation root, not a selective one (issue 19, item 5).

Under clamped suppression coordinate j of the activation is multiplied by
``max(0, 1 − α|D_jk|)``: it is switched off from ``α = 1/|D_jk|`` on, the largest entries
first. **α_off(q)** is the smallest α at which the switched-off coordinates carry at least the
share ``q`` of the feature's decoder mass ``Σ_j |D_jk|``: with ``|D|`` sorted in decreasing
order and ``m`` the fewest entries whose sum reaches ``q · Σ|D|``, ``α_off(q) = 1/|D|_(m)``.

**Rule.** A per-sample root ``α ≥ α_off(0.95)`` is excluded and counted (``total_ablation``):
by then at least 95% of the feature's decoder mass is gone, so whatever flips the sample is
the near-total removal of the direction, not a selective scaling of it. Exact total ablation
(``α = 1/min_j |D_jk|``, every coordinate off) is the special case ``q = 1``.

**Shown value.** A class where fewer than half of its samples keep a root gets no median
(:func:`shown_median` returns None and the reason): a median over a minority describes the
few samples that happen to flip early, not the class.
"""

from __future__ import annotations

import torch

OFF_MASS_SHARE = 0.95
MIN_QUALIFYING_SHARE = 0.5
# A root within this relative distance below α_off counts as reached at α_off (float rounding).
RTOL = 1e-9


def alpha_off(d_k: torch.Tensor, share: float = OFF_MASS_SHARE) -> float | None:
    """Smallest α at which coordinates holding ``share`` of ``Σ_j |D_jk|`` are switched off
    under clamped suppression; None for an all-zero direction."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    mags = d_k.double().abs().flatten()
    mags = mags[mags > 0].sort(descending=True).values
    if mags.numel() == 0:
        return None
    cumulative = mags.cumsum(0)
    m = int((cumulative >= share * float(cumulative[-1]) * (1.0 - 1e-12)).nonzero()[0])
    return 1.0 / float(mags[m])


def beyond_off(roots: torch.Tensor, limit: float | None) -> torch.Tensor:
    """Which finite roots lie at or past ``limit`` (= α_off): the excluded, total-ablation ones."""
    if limit is None:
        return torch.zeros(roots.shape, dtype=torch.bool, device=roots.device)
    return torch.isfinite(roots) & (roots >= limit * (1.0 - RTOL))


def shown_median(median: float | None, qualifying: int, n_samples: int, excluded: int = 0) -> tuple[float | None, str | None]:
    """The median to show and, when withheld, why: fewer than half of the samples qualify."""
    if n_samples > 0 and qualifying >= MIN_QUALIFYING_SHARE * n_samples:
        return median, None
    reason = f"only {qualifying}/{n_samples} samples have a root"
    if excluded:
        reason += f" ({excluded} only at total ablation, α ≥ α_off)"
    return None, reason + f"; a median needs ≥ {MIN_QUALIFYING_SHARE:.0%}"
