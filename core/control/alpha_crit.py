"""Critical suppression threshold α_crit three ways (SPEC §4, paper §3.2 / A.6).

For class c, feature k and each test sample of class c with activation a:

- bias-free perturbed logit ``z_c(α) = Σ_j W_cj f(−α|D_jk|) a_j``;
- **analytic** ``z_c / S_c`` with ``S_c = Σ_j W_cj |D_jk| a_j`` (qualifying: z > 0 and S > 0);
- **numerical**: the first positive → non-positive sign change of the exact ``z_c(α)`` on a grid,
  zoomed in (the bracket is re-gridded a few times) and finished by linear interpolation.
  Under ``linear`` modulation ``z_c(α) = z − αS`` is a straight line, so interpolation inside
  the bracket is already exact and the two methods agree to rounding: a built-in check.
- **empirical α50**: where the class's accuracy on the suppression curve falls to 50%.

Total ablation is not a crossing (SPEC §4): under clamped suppression a root at or past
α_off(95%), where coordinates holding 95% of ``Σ_j |D_jk|`` are switched off (every one from
``1/min_j |D_jk|``), says the feature's near-total removal flips the sample, not a selective
edit. Such roots are excluded and counted (``total_ablation``); a class where fewer than half
of the samples keep a root shows no median (``core.control.alpha_off``). Where the modulation makes ``z/S`` only a first-order estimate
(``ClassLogit.first_order_exact`` false), the summary says so (``analytic_exact``, ``note``).

The validity diagnostic (A.6.3) is the distribution of ``1 − α_crit·|D_jk|`` over j for each
qualifying sample: its mass below zero says how far the linear picture breaks down.

Everything is computed in float64: the root of ``z − αS`` suffers cancellation near zero.
The enhancement analogue (``mode="enhance"``: samples with z < 0, α that lifts z to 0 under
``f(+α|D_jk|)``) is supported by flipping the sign of z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from core.control.alpha_off import OFF_MASS_SHARE, alpha_off, beyond_off, shown_median
from core.control.curves import SweepResult, check_data
from core.control.methods.base import CachedInputs, ClassLogit, EditMethod, EditRequest
from core.control.methods.registry import get_method
from core.control.spec import check_features, check_mode, check_weight
from core.jsonsafe import json_safe

DEFAULT_GRID_POINTS = 1000
DEFAULT_REFINE_ROUNDS = 6
DEFAULT_REFINE_POINTS = 16
VALIDITY_BINS = 40
#: Samples of a class evaluated together (``class_alpha_crit``): a fixed number, so the result
#: never depends on a memory setting, and the working set (~(3·grid + 4·d)·8 bytes a sample,
#: 7 MB at d = 768) stays small whatever the class size.
ROW_CHUNK = 256
INEXACT_NOTE = (
    "analytic z/S is a first-order estimate under {modulation} {mode}: it is not the exact root"
)
# Budget (elements) of the (samples × points × d) factor block evaluated per refinement step.
_REFINE_BLOCK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------- per-sample math


def analytic_alpha_crit(z: torch.Tensor, S: torch.Tensor, mode: str = "suppress") -> torch.Tensor:
    """``z/S`` (suppress) or ``−z/S`` (enhance) where the sample qualifies, NaN elsewhere."""
    g = z if mode == "suppress" else -z
    ok = (g > 0) & (S > 0)
    return torch.where(ok, g / torch.where(ok, S, torch.ones_like(S)), torch.full_like(z, math.nan))


def search_grid(
    d_k: torch.Tensor, alpha_max: float, n_points: int = DEFAULT_GRID_POINTS
) -> torch.Tensor:
    """0 followed by geometric points up to ``alpha_max``.

    Geometric spacing keeps small α dense (where the first crossing usually is) while the
    range may span many decades (clamped breakpoints ``1/|D_jk|`` are spread log-wise).
    """
    start = min(1e-3 / float(d_k.double().abs().max()), alpha_max * 1e-3)
    geo = torch.logspace(
        math.log10(start), math.log10(alpha_max), n_points - 1, dtype=torch.float64
    )
    return torch.cat([torch.zeros(1, dtype=torch.float64), geo])


def numerical_alpha_crit(
    A: torch.Tensor,
    w_c: torch.Tensor,
    D: torch.Tensor,
    feature: int,
    mode: str = "suppress",
    modulation: str = "linear",
    alpha_max: float | None = None,
    n_grid: int = DEFAULT_GRID_POINTS,
    refine_rounds: int = DEFAULT_REFINE_ROUNDS,
    refine_points: int = DEFAULT_REFINE_POINTS,
    method: str | EditMethod | None = None,
    logit: ClassLogit | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Root of the exact ``z_c(α)`` per sample, vectorised over samples.

    Returns ``(alpha_crit, crossed, alpha_max)``: NaN where the sample has ``z ≤ 0`` (for
    suppression) or no crossing in ``[0, alpha_max]``; ``crossed`` marks the samples with a root.
    The class logit comes from the editing method's :meth:`~EditMethod.class_logit`.
    """
    A, D = A.double(), D.double()
    if logit is None:
        logit = _class_logit(method, A, w_c, D, feature, mode, modulation)
    sign = 1.0 if mode == "suppress" else -1.0  # signed so the root is a + → ≤0 crossing

    def signed(rows: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return sign * logit.evaluate(rows, points)

    if alpha_max is None:
        alpha_max = logit.search_max(analytic_alpha_crit(logit.z, logit.S, mode))
    grid = search_grid(D[:, feature], alpha_max, n_grid).to(A.device)
    values = signed(A, grid)  # (N × G)
    start_positive = values[:, 0] > 0
    nonpositive = (values <= 0) & start_positive.unsqueeze(1)
    crossed = nonpositive.any(1)
    first = nonpositive.to(torch.uint8).argmax(1).clamp_min(1)  # first grid index with value ≤ 0
    rows = torch.arange(A.shape[0], device=A.device)
    lo, hi = grid[first - 1], grid[first]
    v_lo, v_hi = values[rows, first - 1], values[rows, first]
    A_x, w_idx = A[crossed], crossed.nonzero().flatten()
    lo, hi, v_lo, v_hi = lo[crossed], hi[crossed], v_lo[crossed], v_hi[crossed]
    # Zoom: re-grid each bracket and keep its first sign change (first-root semantics preserved).
    fractions = torch.linspace(0.0, 1.0, refine_points + 1, dtype=torch.float64, device=A.device)
    for _ in range(refine_rounds):
        if lo.numel() == 0:
            break
        points = lo.unsqueeze(1) + (hi - lo).unsqueeze(1) * fractions  # (n × P+1)
        v = signed(A_x, points)
        v[:, 0], v[:, -1] = v_lo, v_hi  # keep the known bracket values exact
        idx = (v <= 0).to(torch.uint8).argmax(1).clamp_min(1)
        r = torch.arange(points.shape[0], device=A.device)
        lo, hi, v_lo, v_hi = points[r, idx - 1], points[r, idx], v[r, idx - 1], v[r, idx]
    root = lo + v_lo * (hi - lo) / (v_lo - v_hi)  # v_lo > 0 ≥ v_hi, so the denominator is > 0
    result = torch.full((A.shape[0],), math.nan, dtype=torch.float64, device=A.device)
    result[w_idx] = root
    return result, crossed, float(alpha_max)


def ablation_limit(logit: ClassLogit, d_k: torch.Tensor) -> float | None:
    """Where roots stop counting: α_off(95%) of ``d_k`` when the edit has a total-ablation
    point (clamped suppression; see ``core.control.alpha_off``), else None (no limit)."""
    return None if logit.total_ablation_at is None else alpha_off(d_k)


def _class_logit(
    method: str | EditMethod, A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int,
    mode: str, modulation: str,
) -> ClassLogit:
    m = get_method(method)
    logit = m.class_logit(A.double(), w_c.double(), D.double(), feature, mode, modulation)
    if logit is None:
        raise ValueError(f"α_crit is not defined for {m.label}: only methods that scale one feature's weights have it")
    return logit


def alpha50(alphas: torch.Tensor, accuracy: torch.Tensor, level: float = 0.5) -> float | None:
    """First α where the accuracy curve falls to ``level``, by linear interpolation.

    None when the unedited accuracy is already ≤ ``level`` or the curve never gets there.
    """
    alphas, accuracy = alphas.double().flatten(), accuracy.double().flatten()
    if accuracy.numel() == 0 or not float(accuracy[0]) > level:
        return None
    below = (accuracy <= level).nonzero()
    if below.numel() == 0:
        return None
    i = int(below[0])
    a0, a1, y0, y1 = (float(alphas[i - 1]), float(alphas[i]), float(accuracy[i - 1]), float(accuracy[i]))
    return a0 + (y0 - level) * (a1 - a0) / (y0 - y1)


def validity_terms(alpha_crit: torch.Tensor, d_k: torch.Tensor) -> torch.Tensor:
    """``1 − α_n·|D_jk|`` for each sample n (rows) and coordinate j (columns)."""
    return 1.0 - alpha_crit.double().unsqueeze(1) * d_k.double().abs().unsqueeze(0)


def distribution_stats(values: torch.Tensor) -> dict[str, float | int | None]:
    """Count, median, quartiles, 5th/95th percentiles, mean, min, max of the finite values."""
    v = values.double()
    v = v[torch.isfinite(v)]
    keys = ("median", "q1", "q3", "p5", "p95", "mean", "min", "max")
    if v.numel() == 0:
        return {"count": 0, **{k: None for k in keys}}
    q = torch.quantile(v, torch.tensor([0.5, 0.25, 0.75, 0.05, 0.95], dtype=torch.float64)).tolist()
    return {
        "count": int(v.numel()),
        "median": q[0],
        "q1": q[1],
        "q3": q[2],
        "p5": q[3],
        "p95": q[4],
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


# ----------------------------------------------------------------------------- per-class result


@dataclass
class AlphaCritResult:
    """α_crit of one class for one feature: per-sample values and their summary."""

    target_class: int
    feature: int
    mode: str
    modulation: str
    sample_index: torch.Tensor  # indices into the activation table
    prediction: torch.Tensor
    z: torch.Tensor
    S: torch.Tensor
    analytic: torch.Tensor  # NaN where excluded
    numerical: torch.Tensor  # NaN where excluded
    alpha_max: float  # numerical search range
    alpha50: float | None
    validity_below_zero: torch.Tensor  # per sample: share of j with 1 − α_crit|D_jk| < 0 (NaN if no root)
    validity_histogram: dict[str, list[float]] = field(default_factory=dict)
    # per sample: the exact logit reached 0 only at total ablation (excluded from `numerical`)
    total_ablation: torch.Tensor | None = None
    first_order_exact: bool = True  # is z/S the exact root for this modulation?
    alpha_off: float | None = None  # roots at or past it are excluded (clamped suppression)

    @property
    def total_ablation_mask(self) -> torch.Tensor:
        if self.total_ablation is None:
            return torch.zeros(self.z.shape, dtype=torch.bool)
        return self.total_ablation.bool()

    @property
    def note(self) -> str | None:
        """What a reader must know about the analytic column, or None."""
        if self.first_order_exact:
            return None
        return INEXACT_NOTE.format(modulation=self.modulation, mode=self.mode)

    @property
    def exclusions(self) -> dict[str, int]:
        """Why samples were left out, per method (a sample is counted once per method)."""
        g = self.z if self.mode == "suppress" else -self.z
        sign_key = "z_nonpositive" if self.mode == "suppress" else "z_nonnegative"
        wrong_sign = int((g <= 0).sum())
        ablated = self.total_ablation_mask
        return {
            f"analytic_{sign_key}": wrong_sign,
            "analytic_s_nonpositive": int(((g > 0) & (self.S <= 0)).sum()),
            f"numerical_{sign_key}": wrong_sign,
            "numerical_no_crossing": int(
                ((g > 0) & ~torch.isfinite(self.numerical) & ~ablated).sum()
            ),
            "numerical_total_ablation": int(ablated.sum()),
        }

    def summary(self) -> dict[str, Any]:
        valid = self.validity_below_zero[torch.isfinite(self.validity_below_zero)]
        numerical = distribution_stats(self.numerical)
        shown, withheld = shown_median(numerical["median"], numerical["count"], int(self.z.numel()),
                                       int(self.total_ablation_mask.sum()))
        return {
            "class": self.target_class,
            "feature": self.feature,
            "mode": self.mode,
            "modulation": self.modulation,
            "n_samples": int(self.z.numel()),
            "n_qualifying_analytic": int(torch.isfinite(self.analytic).sum()),
            "n_qualifying_numerical": int(torch.isfinite(self.numerical).sum()),
            "excluded": self.exclusions,
            "total_ablation": int(self.total_ablation_mask.sum()),
            "analytic_exact": self.first_order_exact,
            "note": self.note,
            "alpha_off": self.alpha_off,
            "off_mass_share": OFF_MASS_SHARE if self.alpha_off is not None else None,
            "shown": shown,
            "withheld_reason": withheld,
            "analytic": distribution_stats(self.analytic),
            "numerical": numerical,
            "alpha50": json_safe(self.alpha50),
            "alpha_max": self.alpha_max,
            "validity": {
                "mean_share_below_zero": float(valid.mean()) if valid.numel() else None,
                "pooled_share_below_zero": self.pooled_below_zero,
                "samples_with_any_below_zero": int((valid > 0).sum()),
                "histogram": self.validity_histogram,
            },
        }

    @property
    def pooled_below_zero(self) -> float | None:
        counts = self.validity_histogram.get("below_zero_count")
        total = self.validity_histogram.get("total_count")
        return None if not total else counts / total

    def sample_rows(self) -> list[dict[str, Any]]:
        """One row per sample of the class: index, label, prediction, z, S, both α_crit."""
        rows = []
        for i in range(self.z.numel()):
            rows.append(
                {
                    "index": int(self.sample_index[i]),
                    "label": self.target_class,
                    "prediction": int(self.prediction[i]),
                    "feature": self.feature,
                    "z": float(self.z[i]),
                    "S": float(self.S[i]),
                    "alpha_crit_analytic": json_safe(float(self.analytic[i])),
                    "alpha_crit_numerical": json_safe(float(self.numerical[i])),
                    "total_ablation": bool(self.total_ablation_mask[i]),
                    "validity_share_below_zero": json_safe(float(self.validity_below_zero[i])),
                }
            )
        return rows

    def summary_row(self) -> dict[str, Any]:
        """The summary flattened to one CSV row."""
        s = self.summary()
        row: dict[str, Any] = {k: s[k] for k in ("class", "feature", "mode", "modulation", "n_samples")}
        row["n_qualifying_analytic"] = s["n_qualifying_analytic"]
        row["n_qualifying_numerical"] = s["n_qualifying_numerical"]
        row["total_ablation"] = s["total_ablation"]
        row["analytic_exact"] = s["analytic_exact"]
        row.update({f"excluded_{k}": v for k, v in s["excluded"].items()})
        for method in ("analytic", "numerical"):
            row.update({f"{method}_{k}": v for k, v in s[method].items() if k != "count"})
        row["alpha50"] = s["alpha50"]
        row["validity_pooled_share_below_zero"] = s["validity"]["pooled_share_below_zero"]
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "samples": self.sample_rows()}


def class_alpha_crit(
    A: torch.Tensor, labels: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor,
    target_class: int, feature: int, mode: str = "suppress", modulation: str = "linear",
    alpha_max: float | None = None, n_grid: int = DEFAULT_GRID_POINTS,
    curve: SweepResult | None = None, sample_indices: torch.Tensor | None = None,
    method: str | EditMethod | None = None, row_chunk: int | None = ROW_CHUNK,
) -> AlphaCritResult:
    """All α_crit diagnostics for ``target_class`` and ``feature``.

    ``row_chunk``: evaluate at most that many of the class's samples at a time (methods whose
    sweep is row-chunked; None: all at once), which bounds the per-sample working set (the search grid's N × G values,
    the validity terms' N × d). Per sample the numbers are those of one pass up to float64
    rounding of the row products (a row's product can round differently in a batch of
    another size: ~1e-16 relative); the validity histogram's counts are the same.

    ``curve``: a suppression curve of this feature to read α50 from (computed on the class's
    samples when omitted). ``sample_indices`` maps rows of ``A`` to dataset indices.
    ``method``: the editing method whose strength is thresholded (default: the registry's
    first, SALVE).
    """
    method = get_method(method)
    rows, A_c = _class_rows(A, labels, W, D, target_class, feature, mode)
    w_c = W[target_class]
    n = A_c.shape[0]
    step = n if row_chunk is None or not method.row_chunked else max(1, int(row_chunk))
    chunks = [slice(lo, min(lo + step, n)) for lo in range(0, n, step)]
    # Per sample everything below is independent of the other samples, except the search's
    # upper end (from every analytic estimate) and the validity histogram's range (from the
    # extreme roots): both are taken over all rows first, so chunks give the one-pass result.
    logit, z, S = _chunked_logit(method, A_c, w_c, D, feature, mode, modulation, chunks)
    analytic = analytic_alpha_crit(z, S, mode)
    if alpha_max is None:
        alpha_max = logit.search_max(analytic)
    parts = [numerical_alpha_crit(A_c[r], w_c, D, feature, mode, modulation, alpha_max, n_grid,
                                  method=method, logit=logit) for r in chunks]
    numerical, used_max = torch.cat([p[0] for p in parts]), parts[0][2]
    limit = ablation_limit(logit, D[:, feature])
    ablated = beyond_off(numerical, limit)
    numerical = torch.where(ablated, torch.full_like(numerical, math.nan), numerical)
    prediction = torch.cat([(A_c[r] @ W.T + (0 if b is None else b)).argmax(1) for r in chunks])
    # Validity diagnostic: numerical root where found (the paper's choice), else analytic.
    # Only suppression has one: enhancement factors 1 + α|D_jk| never change sign.
    root = torch.where(torch.isfinite(numerical), numerical, analytic)
    has_root = torch.isfinite(root) & (mode == "suppress") & ~ablated
    below, histogram = validity_diagnostic(root, has_root, D[:, feature], chunks)
    a50 = None
    if mode == "suppress":  # α50 reads a suppression curve: the given one or the class's own
        if curve is None:
            x = CachedInputs(A_c, labels[rows], W, b, D)
            curve = method.sweep(x, EditRequest(target_class, [feature], modulation=modulation))
        a50 = alpha50(curve.alphas, curve.per_class_accuracy[target_class])
    index = rows if sample_indices is None else sample_indices[rows.to(sample_indices.device)]
    return AlphaCritResult(
        target_class=int(target_class), feature=int(feature), mode=mode, modulation=modulation,
        sample_index=index.cpu(), prediction=prediction.cpu(), z=z.cpu(), S=S.cpu(),
        analytic=analytic.cpu(), numerical=numerical.cpu(), alpha_max=used_max, alpha50=a50,
        validity_below_zero=below.cpu(), validity_histogram=histogram, total_ablation=ablated.cpu(),
        first_order_exact=bool(logit.first_order_exact), alpha_off=limit,
    )


def _class_rows(A: torch.Tensor, labels: torch.Tensor, W: torch.Tensor, D: torch.Tensor,
                target_class: int, feature: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The class's row indices and activations, after checking the inputs (one clear error)."""
    check_weight(W, D)
    check_features(D, [feature])
    check_data(A, labels, W)
    check_mode(mode)
    mask = labels == target_class
    if not bool(mask.any()):
        raise ValueError(f"class {target_class} has no samples in this split")
    return mask.nonzero().flatten(), (A if bool(mask.all()) else A[mask])  # all rows: no copy


def _chunked_logit(method: EditMethod, A_c: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor,
                   feature: int, mode: str, modulation: str, chunks: list[slice],
                   ) -> tuple[ClassLogit, torch.Tensor, torch.Tensor]:
    """The first chunk's class logit and z, S over every chunk.

    The logit's evaluate/search_max/ablation point depend on the weights only, so the first
    chunk's logit serves every chunk (keeping one per chunk would hold a float64 copy of D each).
    """
    logit = _class_logit(method, A_c[chunks[0]], w_c, D, feature, mode, modulation)
    pairs = [(logit.z, logit.S)] + [(lg.z, lg.S) for lg in
                                    (_class_logit(method, A_c[r], w_c, D, feature, mode, modulation)
                                     for r in chunks[1:])]
    return logit, torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def validity_diagnostic(root: torch.Tensor, has_root: torch.Tensor, d_k: torch.Tensor,
                        chunks: list[slice]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per sample the share of j with ``1 − root·|D_jk| < 0`` (NaN without a root) and the
    pooled histogram of those terms, built chunk by chunk over one fixed range."""
    below = torch.full_like(root, math.nan)
    histogram: dict[str, Any] = {"below_zero_count": 0, "total_count": 0, "edges": [], "counts": []}
    if not bool(has_root.any()):
        return below, histogram
    # 1 − r·|D_jk| falls as r grows (r ≥ 0): the extremes come from the extreme roots.
    lo = float(validity_terms(root[has_root].max().reshape(1), d_k).min())
    hi = float(validity_terms(root[has_root].min().reshape(1), d_k).max())
    counts = None
    for r in chunks:
        keep = has_root[r]
        if not bool(keep.any()):
            continue
        terms = validity_terms(root[r][keep], d_k)
        part_below = below[r]
        part_below[keep] = (terms < 0).double().mean(1)
        below[r] = part_below
        c, edges = torch.histogram(terms.flatten().cpu(), bins=VALIDITY_BINS, range=(lo, max(hi, lo + 1e-12)))
        counts = c if counts is None else counts + c
        histogram["below_zero_count"] += int((terms < 0).sum())
        histogram["total_count"] += int(terms.numel())
    histogram["edges"] = edges.tolist()
    histogram["counts"] = [int(c) for c in counts.tolist()]
    return below, histogram
