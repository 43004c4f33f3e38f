"""A fourth, test-only editing method in one file: exponential damping of the features' columns.

``W'_cj = W_cj · exp(−δ Σ_k |D_jk|)``: every weight column is damped by how much the chosen
features use it, never switched off or flipped (unlike SALVE's ``1 − α|D_jk|``). Its curve is
a plain loop over the grid (no fast path), and for one feature the class logit
``z_c(δ) = Σ_j W_cj a_j exp(−δ|D_jk|)`` is what α_crit needs (first-order slope ``S`` as
SALVE's, not exact). Registered by ``tests/test_fourth_method.py`` with one line.
"""

from __future__ import annotations

import torch

from core.control.curves import SweepResult, check_data, per_class_accuracy
from core.control.methods.base import CachedInputs, ClassLogit, EditMethod, EditRequest
from core.control.methods.spec import EditSpec, check_features, check_weight
from core.jobs import CancelToken, ProgressFn


def damping(D: torch.Tensor, features: tuple[int, ...] | list[int]) -> torch.Tensor:
    """``Σ_k |D_jk|`` (d,): how much the features use each coordinate."""
    return D[:, list(features)].double().abs().sum(1)


class DampingMethod(EditMethod):
    name = "damp"
    label = "damping"
    symbol = "δ"
    param_name = "delta"
    strength_help = "damping strength δ (≥ 0)"
    modes = ("suppress",)

    def build_spec(self, x: CachedInputs, request: EditRequest, strength: float) -> EditSpec:
        return EditSpec(tuple(request.features or ()), request.mode, strength, "linear", self.name)

    def describe(self, spec: EditSpec, long: bool = False) -> str:
        feats = "+".join(str(k) for k in spec.features)
        return f"exponential damping of feature(s) {feats}, δ = {spec.alpha:g}" if long else \
            f"damping f{feats} δ={spec.alpha:g}"

    def apply(
        self, W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor, spec: EditSpec
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        check_weight(W, D)
        check_features(D, spec.features)
        factor = torch.exp(-spec.alpha * damping(D, spec.features)).to(W)
        return W * factor, None if b is None else b.clone()

    def sweep(
        self, x: CachedInputs, request: EditRequest, progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> SweepResult:
        check_data(x.A, x.labels, x.W)
        c = int(request.target_class)
        features = request.features or [int(x.M[c].abs().argmax())]
        s = damping(x.D, features)
        grid = request.strengths
        if grid is None:  # the most used coordinate damped down to e^-4
            grid = torch.linspace(0.0, 4.0 / float(s.max()), request.n_points, dtype=torch.float64)
        grid = torch.as_tensor(grid, dtype=torch.float64).flatten()
        C = x.W.shape[0]
        acc, share = [], []
        target = x.labels == c
        for delta in grid.tolist():
            W = x.W.double() * torch.exp(-delta * s)
            preds = (x.A.double() @ W.T + (0 if x.b is None else x.b.double())).argmax(1)
            acc.append(per_class_accuracy(x.labels, preds, C).double())
            n = int(target.sum())
            share.append(torch.bincount(preds[target], minlength=C).double() / n if n
                         else torch.full((C,), float("nan"), dtype=torch.float64))
        return SweepResult(self.name, features, request.mode, "linear", c, self.param_name, grid,
                           torch.stack(acc, 1), torch.stack(share),
                           torch.bincount(x.labels.long(), minlength=C).tolist())

    def class_logit(
        self, A: torch.Tensor, w_c: torch.Tensor, D: torch.Tensor, feature: int, mode: str,
        modulation: str,
    ) -> ClassLogit:
        d_abs = D[:, feature].double().abs()
        weighted = A.double() * w_c.double()

        def evaluate(rows: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
            rows = rows.double() * w_c.double()
            if points.ndim == 1:
                return rows @ torch.exp(-points.unsqueeze(1) * d_abs).T
            return torch.einsum("nd,npd->np", rows, torch.exp(-points.unsqueeze(-1) * d_abs))

        def search_max(analytic: torch.Tensor) -> float:
            finite = analytic[torch.isfinite(analytic)]
            return max(20.0 * float(finite.max()) if finite.numel() else 0.0, 20.0 / float(d_abs.max()))

        return ClassLogit(z=weighted.sum(1), S=weighted @ d_abs, evaluate=evaluate,
                          search_max=search_max, first_order_exact=False)


DAMP = DampingMethod()
