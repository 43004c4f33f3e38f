"""SALVE: scale every weight column by how much the chosen features use it (SPEC §3).

An edit multiplies every row of ``W`` (C×d) by a per-coordinate factor built from the decoder
directions ``D[:, k]``: linear ``1 ∓ α|D_jk|``, clamped suppression ``max(0, 1 − α|D_jk|)``.

Only the final layer changes, so the edited logits of every cached sample are ``W' a + b``
and a sweep never re-runs the backbone. Fast paths exploit linearity in α:

- ``linear`` modulation of one feature: ``logits(α) = Z0 ∓ α·A(W∘|D_k|)ᵀ`` (two matmuls).
  Each sample is then correct on one interval of α (every competitor's margin is affine),
  so per-class accuracy for the whole grid is a count of intervals — no n_α × N × C argmax.
  Only the target class's samples are evaluated per α, for their prediction distribution.
- ``clamped`` suppression of one feature is piecewise affine with the same breakpoints
  ``1/|D_jk|`` for every sample: one affine piece per switch-off point inside the grid.
- Several features multiply their factors (not piecewise affine): batched general path,
  one ``(n_α×C×d)`` stack of edited weights and one batched matmul per chunk.

Automatic α range (used when no grid is given): take the first-order (linear) picture of the
edit, compute for each correctly classified sample of the target class the α at which it is
first misclassified (exact for linear single-feature edits), and go to 1.5× the 95th
percentile of those points; then check with the exact modulation and double the range (at
most 6 times) while the target accuracy is above 5% and doubling still lowers it (samples the
edit can never flip would otherwise stretch the range for nothing). Enhancement uses the
suppression range of the same feature so both curves share an x-axis scale.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from core.config import MODULATIONS
from core.control.curves import (
    AUTO_RANGE_MAX_DOUBLINGS,
    AUTO_RANGE_TARGET_ACC,
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_N_ALPHAS,
    AffinePieces,
    SweepResult,
    auto_range_from_flips,
    check_data,
    chunk_size,
    curve_chunk_elements,
    curve_from_logit_chunks,
    curve_from_pieces,
    linear_flip_points,
    logits,
    single_piece,
)
from core.control.methods.base import CachedInputs, ClassLogit, EditMethod, EditRequest
from core.control.methods.spec import EditSpec, check_features, check_mode, check_weight
from core.jobs import CancelToken, ProgressFn

# Budget (elements) of the (samples × points × d) factor block of one per-sample evaluation:
# 2 MiB of float64; the einsum's temporaries make the working set a few times that (at 1 << 22
# α_crit of one 5,000-sample class peaked ~230 MiB higher, and ran slower, than at 1 << 18).
_PER_SAMPLE_BLOCK_ELEMENTS = 1 << 18

# ----------------------------------------------------------------------------- the edit


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
    check_mode(mode)
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




# ----------------------------------------------------------------------------- sweeps


def affine_family(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    mode: str,
    modulation: str,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(Z0, slope)`` with edited logits ``Z0 + α·slope`` when the edit is affine in α, else None.

    One feature under linear modulation (or any enhancement, which is never clamped):
    ``A (W∘(1 ∓ α|D_k|))ᵀ + b = Z0 ∓ α·A(W∘|D_k|)ᵀ`` — two matmuls for the whole grid.
    """
    if len(features) != 1 or (modulation != "linear" and mode != "enhance"):
        return None
    slope = A @ (W * D.to(W)[:, features[0]].abs()).T
    return logits(A, W, b), (slope if mode == "enhance" else -slope)


def clamped_pieces(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    d_abs: torch.Tensor,
    alphas: torch.Tensor,
    max_run: int | None = None,
) -> Iterator[AffinePieces]:
    """Clamped suppression of one feature as affine pieces over an ascending α grid.

    Coordinate j is switched off (factor 0) once ``α|D_jk| ≥ 1`` and is affine before, so
    between two switch-off points — the same for every sample, they depend on D only — the
    logits are ``(Z − P) − α (G − Q) + b`` where P, Q sum the switched-off coordinates'
    contributions. Those sets only grow with α: sort coordinates by |D_jk| (largest first)
    and accumulate P, Q with one small matmul per block of newly switched-off coordinates.
    Yields batches of pieces (:data:`AffinePieces`) holding at most ``max_run`` α values.
    """
    if alphas.numel() > 1 and not bool((alphas[1:] >= alphas[:-1]).all()):
        raise ValueError("clamped_pieces needs an ascending α grid")
    order = torch.argsort(d_abs, descending=True)
    A_sorted, d_sorted = A[:, order], d_abs[order]
    W_sorted = W[:, order]
    Wd_sorted = W_sorted * d_sorted
    Z = logits(A, W, b)
    G = A @ (W * d_abs).T
    n_off = ((alphas.unsqueeze(1) * d_sorted.unsqueeze(0)) >= 1.0).sum(1)  # non-decreasing
    levels, counts = torch.unique_consecutive(n_off, return_counts=True)
    max_run = max_run or alphas.numel()
    Zs, slopes, runs, pieces = [], [], [], []
    done, start, pending = 0, 0, 0
    for upto, count in zip(levels.tolist(), counts.tolist(), strict=True):
        if upto > done:
            Z = Z - A_sorted[:, done:upto] @ W_sorted[:, done:upto].T
            G = G - A_sorted[:, done:upto] @ Wd_sorted[:, done:upto].T
            done = upto
        for run in range(start, start + count, max_run):
            stop = min(run + max_run, start + count)
            if pending + stop - run > max_run:  # flush: bound the batch's size
                yield torch.stack(Zs), torch.stack(slopes), torch.cat(runs), torch.cat(pieces)
                Zs, slopes, runs, pieces, pending = [], [], [], [], 0
            pieces.append(torch.full((stop - run,), len(Zs), dtype=torch.long, device=Z.device))
            Zs.append(Z)
            slopes.append(-G)
            runs.append(alphas[run:stop])
            pending += stop - run
        start += count
    if Zs:
        yield torch.stack(Zs), torch.stack(slopes), torch.cat(runs), torch.cat(pieces)


def salve_pieces(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    alphas: torch.Tensor,
    mode: str,
    modulation: str,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Iterator[AffinePieces] | None:
    """The edit over the grid as affine pieces (one feature), or None when it is not piecewise
    affine in α (several features multiply their factors)."""
    D = D.to(W)
    alphas = torch.as_tensor(alphas, dtype=W.dtype, device=W.device)
    max_run = chunk_size(A.shape[0], W.shape[0], chunk_elements)
    family = affine_family(A, W, b, D, features, mode, modulation)
    if family is not None:
        return single_piece(*family, alphas, max_run)
    ascending = alphas.numel() < 2 or bool((alphas[1:] >= alphas[:-1]).all())
    if len(features) == 1 and ascending:
        return clamped_pieces(A, W, b, D[:, features[0]].abs(), alphas, max_run)
    return None


def salve_logit_chunks(
    A: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    alphas: torch.Tensor,
    mode: str = "suppress",
    modulation: str = "linear",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> Iterator[torch.Tensor]:
    """Edited logits for every α of the grid, in (n_chunk × N × C) blocks, in grid order."""
    D = D.to(W)
    alphas = torch.as_tensor(alphas, dtype=W.dtype, device=W.device)
    pieces = salve_pieces(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
    if pieces is not None:
        for Z0, slope, params, piece in pieces:
            yield torch.addcmul(Z0[piece], params.view(-1, 1, 1).to(Z0), slope[piece])
        return
    # General path (several features): (n×C×d) stack of edited weights, one batched matmul.
    step = chunk_size(A.shape[0], W.shape[0], chunk_elements)
    for start in range(0, alphas.shape[0], step):
        F = modulation_factors_grid(D, features, alphas[start : start + step], mode, modulation)
        W_stack = W.unsqueeze(0) * F.unsqueeze(1)
        out = torch.matmul(A, W_stack.transpose(1, 2))
        yield out if b is None else out + b


def auto_alpha_max(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int],
    target_class: int,
    modulation: str = "linear",
) -> float:
    """Largest α of the automatic suppression grid (see the module docstring for the rule)."""
    D = D.to(W)
    strength = D[:, list(features)].abs().sum(1)  # first-order factor: 1 − α Σ_k |D_jk|
    if float(strength.max()) <= 0:
        raise ValueError(
            f"feature(s) {list(features)} have an all-zero decoder direction: nothing to edit"
        )
    mask = labels == target_class
    if not bool(mask.any()):
        raise ValueError(f"class {target_class} has no samples: cannot choose an α range for it")
    A_t, y_t = (A, labels) if bool(mask.all()) else (A[mask], labels[mask])  # only the class: no copy
    Z0 = logits(A_t, W, b)
    slope = -(A_t @ (W * strength).T)
    fallback = 2.0 / float(strength.max())  # the strongest coordinate's weight is zeroed twice over
    alpha_max = auto_range_from_flips(linear_flip_points(Z0, slope, y_t), fallback)

    def target_accuracy(alpha: float) -> float:
        grid = torch.tensor([alpha])
        block = next(salve_logit_chunks(A_t, W, b, D, features, grid, "suppress", modulation))
        return float((block[0].argmax(1) == y_t).double().mean())

    # The first-order estimate is exact for one feature under linear modulation; otherwise
    # (clamped, several features) extend the range while doing so still suppresses more.
    current = target_accuracy(alpha_max)
    for _ in range(AUTO_RANGE_MAX_DOUBLINGS):
        if current <= AUTO_RANGE_TARGET_ACC:
            break
        doubled = target_accuracy(2.0 * alpha_max)
        if doubled >= current - 0.5 / y_t.numel():  # plateau: samples this edit cannot flip
            break
        alpha_max, current = 2.0 * alpha_max, doubled
    return alpha_max


def salve_sweep(
    A: torch.Tensor,
    labels: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    D: torch.Tensor,
    features: Sequence[int] | int,
    target_class: int | None = None,
    alphas: torch.Tensor | Sequence[float] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    n_alphas: int = DEFAULT_N_ALPHAS,
    M: torch.Tensor | None = None,
    chunk_elements: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepResult:
    """Per-class accuracy vs α for a SALVE edit of ``features`` (any feature: cross-class too).

    ``target_class`` defaults to the class with the largest ``|μ_ck|`` of the first feature
    when ``M`` is given. ``alphas`` defaults to the automatic range with ``n_alphas`` points.
    ``chunk_elements`` bounds the edited-logit blocks (default from the memory budget,
    :func:`core.control.curves.curve_chunk_elements`; the curve does not depend on it).
    """
    chunk_elements = curve_chunk_elements() if chunk_elements is None else chunk_elements
    features = (features,) if isinstance(features, int) else tuple(int(k) for k in features)
    check_weight(W, D)
    check_features(D, features)
    check_data(A, labels, W)
    check_mode(mode)
    if target_class is None and M is not None:
        target_class = int(M[:, features[0]].abs().argmax())
    if alphas is None:
        if target_class is None:
            raise ValueError("an automatic α range needs a target class (pass target_class or M)")
        alpha_max = auto_alpha_max(A, labels, W, b, D, features, target_class, modulation)
        alphas = torch.linspace(0.0, alpha_max, n_alphas, dtype=torch.float64)
    alphas = ascending_strengths(alphas)
    pieces = salve_pieces(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
    if pieces is not None:
        per_class, target_pred = curve_from_pieces(
            pieces, labels, W.shape[0], target_class, alphas.numel(), progress, cancel, chunk_elements
        )
    else:
        chunks = salve_logit_chunks(A, W, b, D, features, alphas, mode, modulation, chunk_elements)
        per_class, target_pred = curve_from_logit_chunks(
            chunks, labels, W.shape[0], target_class, alphas.numel(), progress, cancel
        )
    return SweepResult(
        method="salve", features=list(features), mode=mode, modulation=modulation,
        target_class=target_class, param_name="alpha", alphas=alphas, per_class_accuracy=per_class,
        target_prediction=target_pred,
        class_counts=torch.bincount(labels.cpu().long(), minlength=W.shape[0]).tolist(),
    )


def ascending_strengths(alphas: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """The α grid as float64, ascending (curves read left to right; the clamped path needs
    it); a negative α is refused: the mode, not the sign, says which way the edit goes."""
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    if bool((alphas < 0).any()):
        raise ValueError("α values must be ≥ 0 (use mode='enhance' to amplify)")
    return alphas.sort().values



# ----------------------------------------------------------------------------- class logit (α_crit)


def class_logit_on_grid(
    A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int, alphas: torch.Tensor,
    mode: str, modulation: str,
) -> torch.Tensor:
    """Bias-free ``z_c(α)`` for every sample × grid point (N × G)."""
    F = modulation_factors_grid(D, [feature], alphas, mode, modulation)  # (G × d)
    return A @ (w_c.unsqueeze(0) * F).T


def class_logit_per_sample(
    A: torch.Tensor, w_c: torch.Tensor, d_abs: torch.Tensor, alphas: torch.Tensor,
    mode: str, modulation: str,
) -> torch.Tensor:
    """Bias-free ``z_c`` at per-sample points ``alphas`` (N × P), chunked over samples."""
    sign = -1.0 if mode == "suppress" else 1.0
    out = torch.empty_like(alphas)
    step = max(1, _PER_SAMPLE_BLOCK_ELEMENTS // max(1, alphas.shape[1] * A.shape[1]))
    weighted = A * w_c  # (N × d): W_cj a_j
    for s in range(0, A.shape[0], step):
        f = 1.0 + sign * alphas[s : s + step].unsqueeze(-1) * d_abs  # (n × P × d)
        if modulation == "clamped" and mode == "suppress":
            f = f.clamp_min(0.0)
        out[s : s + step] = torch.einsum("nd,npd->np", weighted[s : s + step], f)
    return out


def search_alpha_max(
    d_k: torch.Tensor, analytic: torch.Tensor, modulation: str, mode: str = "suppress"
) -> float:
    """Upper end of the numerical α_crit search.

    Clamped suppression: ``1.001 / min_j |D_jk|`` (over non-zero entries). Beyond it every
    factor is zero, z is constant and no new crossing can appear, so the search is exhaustive.
    Otherwise: twice the largest analytic estimate, so every root the linear picture predicts
    lies inside (fallback ``2 / max_j |D_jk|`` when no sample qualifies).
    """
    d_abs = d_k.double().abs()
    nonzero = d_abs[d_abs > 0]
    if nonzero.numel() == 0:
        raise ValueError("the feature's decoder direction is all zeros: α_crit is undefined")
    if modulation == "clamped" and mode == "suppress":
        return 1.001 / float(nonzero.min())
    finite = analytic[torch.isfinite(analytic)]
    fallback = 2.0 / float(nonzero.max())
    return max(2.0 * float(finite.max()), fallback) if finite.numel() else fallback


def total_ablation_alpha(d_k: torch.Tensor, modulation: str, mode: str = "suppress") -> float | None:
    """Clamped suppression: ``1 / min_j |D_jk|`` over the non-zero entries, the α from which
    every coordinate the feature touches has factor 0 (None for other settings)."""
    if modulation != "clamped" or mode != "suppress":
        return None
    d_abs = d_k.double().abs()
    nonzero = d_abs[d_abs > 0]
    return None if nonzero.numel() == 0 else 1.0 / float(nonzero.min())


# ----------------------------------------------------------------------------- the method


class SalveMethod(EditMethod):
    """SALVE weight edits; α ≥ 0 is the strength, the mode picks the direction."""

    name = "salve"
    label = "SALVE"
    symbol = "α"
    param_name = "alpha"
    strength_help = "SALVE strength α (≥ 0)"
    modulations = MODULATIONS
    options = ("chunk_elements",)

    def build_spec(self, x: CachedInputs, request: EditRequest, strength: float) -> EditSpec:
        return EditSpec(tuple(request.features or ()), request.mode, strength, request.modulation,
                        self.name)

    def describe(self, spec: EditSpec, long: bool = False) -> str:
        if long:
            feats = ", ".join(str(k) for k in spec.features)
            return (f"SALVE {spec.mode} feature(s) {feats}, α = {spec.alpha:g}, {spec.modulation} "
                    "modulation")
        feats = "+".join(str(k) for k in spec.features)
        return f"SALVE {spec.mode} f{feats} α={spec.alpha:g} {spec.modulation}"

    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return apply_salve_edit(W, D, spec), None if b is None else b.clone()

    def sweep(
        self, x: CachedInputs, request: EditRequest, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> SweepResult:
        features, c = request.features, request.target_class
        if not features:
            if x.M is None or c is None:
                raise ValueError("a SALVE sweep needs features or a class and the class means M")
            features = [int(x.M[c].abs().argmax())]
        return salve_sweep(
            x.A, x.labels, x.W, x.b, x.D, features, c, request.strengths, request.mode,
            request.modulation, request.n_points, progress=progress, cancel=cancel,
            **self.request_options(request.options),
        )

    def class_logit(
        self, A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int, mode: str,
        modulation: str,
    ) -> ClassLogit:
        A, w_c, D = A.double(), w_c.double(), D.double()
        d_k = D[:, feature]
        d_abs = d_k.abs()

        def evaluate(rows: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
            if points.ndim == 1:
                return class_logit_on_grid(rows, w_c, D, feature, points, mode, modulation)
            return class_logit_per_sample(rows, w_c, d_abs, points, mode, modulation)

        return ClassLogit(
            z=A @ w_c,
            S=A @ (w_c * d_abs),
            evaluate=evaluate,
            search_max=lambda analytic: search_alpha_max(d_k, analytic, modulation, mode),
            first_order_exact=modulation == "linear" or mode == "enhance",
            total_ablation_at=total_ablation_alpha(d_k, modulation, mode),
        )


SALVE = SalveMethod()
