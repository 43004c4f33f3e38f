"""Selectivity and side effects of an edit sweep, for every method (SPEC §5, "Selectivity").

A mean over the other classes hides a class that collapses, so every strength reports the
target's accuracy, the mean **and the worst** other class (by the share of its own unedited
accuracy that it keeps), how many other classes lost more than 10 points, and whether the
strength lies in the **selective window**: target below 10% while every other class keeps
≥ 80% of its baseline. In model-editing terms: *efficacy* (1 − target accuracy), *specificity*
(the mean share of baseline accuracy the other classes keep) and *generalisation* (the same
edit measured on the train split as on the test split).

A **control** sweep runs the same method at the same strengths on a feature with low class
association and on a random direction with the chosen feature's decoder norm
(:func:`control_sweeps`): if they suppress the target as well, the chosen feature is not what
makes the edit work.

Everything here is a pure function of :class:`~core.control.curves.SweepResult` objects and
cached inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.control.curves import SweepResult, logits, per_class_accuracy
from core.control.methods.base import CachedInputs
from core.control.methods.registry import get_method
from core.jsonsafe import json_safe

TARGET_SUPPRESSED = 0.10  # the target counts as suppressed below this accuracy
KEEP_SHARE = 0.80  # every other class must keep this share of its baseline accuracy
LOST_POINTS = 0.10  # an other class "lost" when it dropped more than this (absolute)
# A window needs room to suppress: the target's unedited accuracy must be at least this much
# above TARGET_SUPPRESSED (≥ 30%); a class at 11% "suppressed" to 8% is one sample, not an edit.
WINDOW_MARGIN = 0.20
CONTROL_SEED = 0


@dataclass
class Selectivity:
    """Per-strength selectivity of one sweep (tensors of length G = number of strengths)."""

    param_name: str
    strengths: torch.Tensor
    target_class: int
    baseline: torch.Tensor  # (C,) unedited per-class accuracy
    target: torch.Tensor  # target accuracy
    others_mean: torch.Tensor  # mean accuracy of the other classes with samples
    worst_other: torch.Tensor  # accuracy of the other class keeping the least of its baseline
    worst_other_class: torch.Tensor  # its index (long)
    worst_other_kept: torch.Tensor  # the share of its baseline it keeps
    specificity: torch.Tensor  # mean share of baseline kept by the other classes
    n_lost: torch.Tensor  # other classes that lost more than LOST_POINTS (long)
    selective: torch.Tensor  # bool: inside the selective window

    @property
    def efficacy(self) -> torch.Tensor:
        return 1.0 - self.target

    def window(self) -> list[tuple[float, float]]:
        """The selective window as closed strength intervals (runs of selective grid points)."""
        runs: list[tuple[float, float]] = []
        flags = self.selective.tolist()
        s = self.strengths.tolist()
        start = None
        for i, flag in enumerate(flags + [False]):
            if flag and start is None:
                start = i
            elif not flag and start is not None:
                runs.append((s[start], s[i - 1]))
                start = None
        return runs

    def first_suppressed(self) -> int | None:
        """Index of the first strength where the target is below TARGET_SUPPRESSED."""
        hits = (self.target < TARGET_SUPPRESSED).nonzero()
        return None if hits.numel() == 0 else int(hits[0])

    def point(self, i: int, names: Sequence[str]) -> dict[str, Any]:
        """The numbers of grid point ``i``, JSON-ready."""
        worst = int(self.worst_other_class[i])
        return {
            self.param_name: float(self.strengths[i]),
            "target_accuracy": json_safe(self.target[i]),
            "efficacy": json_safe(self.efficacy[i]),
            "others_mean_accuracy": json_safe(self.others_mean[i]),
            "specificity": json_safe(self.specificity[i]),
            "worst_other_class": None if worst < 0 else worst,
            "worst_other_class_name": None if worst < 0 else names[worst],
            "worst_other_accuracy": json_safe(self.worst_other[i]),
            "worst_other_kept": json_safe(self.worst_other_kept[i]),
            "n_other_lost_over_10_points": int(self.n_lost[i]),
            "selective": bool(self.selective[i]),
        }

    def no_window_reason(self) -> str | None:
        """Why this sweep can have no selective window whatever the edit does, or None."""
        base = float(self.baseline[self.target_class])
        if base >= TARGET_SUPPRESSED + WINDOW_MARGIN - 1e-12:
            return None
        text = "nan" if not math.isfinite(base) else f"{base:.1%}"
        return (f"baseline accuracy {text} is within {WINDOW_MARGIN:.0%} of the {TARGET_SUPPRESSED:.0%} "
                f"target (a window needs ≥ {TARGET_SUPPRESSED + WINDOW_MARGIN:.0%} unedited)")

    def summary(self, names: Sequence[str]) -> dict[str, Any]:
        """Window, the first suppressing strength and its side effects, and the per-point rows."""
        first = self.first_suppressed()
        selective = self.selective.nonzero().flatten()
        return {
            "param_name": self.param_name,
            "target_class": self.target_class,
            "target_class_name": names[self.target_class],
            "thresholds": {"target_below": TARGET_SUPPRESSED, "others_keep_share": KEEP_SHARE,
                           "lost_points": LOST_POINTS, "window_margin": WINDOW_MARGIN},
            "no_window_reason": self.no_window_reason(),
            "baseline": {n: json_safe(v) for n, v in zip(names, self.baseline, strict=True)},
            "selective_window": [list(w) for w in self.window()],
            "has_selective_window": bool(selective.numel()),
            "target_suppressed_before_edit": not bool(self.baseline[self.target_class] >= TARGET_SUPPRESSED),
            "first_suppressed": None if first is None else self.point(first, names),
            "first_selective": None if not selective.numel() else self.point(int(selective[0]), names),
            "per_strength": [self.point(i, names) for i in range(self.strengths.numel())],
        }


def unedited_accuracy(x: CachedInputs) -> torch.Tensor:
    """Per-class accuracy of the unedited head on ``x`` (NaN for classes without samples)."""
    pred = logits(x.A, x.W, x.b).argmax(1)
    return per_class_accuracy(x.labels, pred, x.W.shape[0])


def selectivity(result: SweepResult, baseline: torch.Tensor) -> Selectivity:
    """Selectivity of ``result`` against the unedited per-class accuracy ``baseline`` (C,)."""
    if result.target_class is None:
        raise ValueError("selectivity needs a sweep with a target class")
    acc = result.per_class_accuracy.double()  # C × G
    base = baseline.double().flatten()
    if base.numel() != acc.shape[0]:
        raise ValueError(f"baseline has {base.numel()} classes, the sweep {acc.shape[0]}")
    c = int(result.target_class)
    others = [k for k, n in enumerate(result.class_counts) if n > 0 and k != c
              and math.isfinite(float(base[k]))]
    G = acc.shape[1]
    target = acc[c]
    meaningful = bool(base[c] >= TARGET_SUPPRESSED + WINDOW_MARGIN - 1e-12)  # False for NaN too
    if not meaningful:
        target_selective = torch.zeros(G, dtype=torch.bool)
    else:
        target_selective = target < TARGET_SUPPRESSED
    if not others:
        nan = torch.full((G,), math.nan, dtype=torch.float64)
        none = torch.full((G,), -1, dtype=torch.long)
        return Selectivity(result.param_name, result.alphas.double(), c, base, target, nan, nan,
                           none, nan, nan, torch.zeros(G, dtype=torch.long), target_selective)
    o = acc[others]  # K × G
    b_o = base[others].unsqueeze(1)
    # A class with baseline 0 keeps "all" of nothing: share 1 (it cannot get worse).
    kept = torch.where(b_o > 0, o / b_o.clamp_min(1e-12), torch.ones_like(o))
    worst_row = kept.argmin(0)
    cols = torch.arange(G)
    worst_kept = kept[worst_row, cols]
    return Selectivity(
        param_name=result.param_name,
        strengths=result.alphas.double(),
        target_class=c,
        baseline=base,
        target=target,
        others_mean=o.mean(0),
        worst_other=o[worst_row, cols],
        worst_other_class=torch.tensor(others, dtype=torch.long)[worst_row],
        worst_other_kept=worst_kept,
        specificity=kept.mean(0),
        n_lost=((b_o - o) > LOST_POINTS + 1e-12).sum(0),
        # A target within WINDOW_MARGIN of 10% unedited has no window: nothing to suppress.
        selective=(target < TARGET_SUPPRESSED) & (worst_kept >= KEEP_SHARE - 1e-12) & meaningful,
    )


def generalisation(test: Selectivity, train: Selectivity, names: Sequence[str]) -> dict[str, Any]:
    """The same edit on both splits: efficacy and specificity side by side, and the largest gap."""
    if not torch.equal(test.strengths, train.strengths):
        raise ValueError("generalisation compares the same strengths on both splits")
    gap = (test.efficacy - train.efficacy).abs()
    finite = gap[torch.isfinite(gap)]
    return {
        "max_efficacy_gap": None if not finite.numel() else float(finite.max()),
        "train_selective_window": [list(w) for w in train.window()],
        "test_selective_window": [list(w) for w in test.window()],
        "train_efficacy": [json_safe(v) for v in train.efficacy],
        "test_efficacy": [json_safe(v) for v in test.efficacy],
        "train_specificity": [json_safe(v) for v in train.specificity],
        "test_specificity": [json_safe(v) for v in test.specificity],
    }


# ----------------------------------------------------------------------------- controls


def low_association_feature(M: torch.Tensor, D: torch.Tensor, exclude: Sequence[int] = ()) -> int:
    """The feature whose largest class-mean |μ_ck| is smallest, among features with a decoder
    norm at least the median (a near-zero direction would make a trivially harmless control)."""
    norms = D.double().norm(dim=0)
    association = M.double().abs().max(0).values
    eligible = norms >= norms.median()
    for k in exclude:
        eligible[int(k)] = False
    if not bool(eligible.any()):
        raise ValueError("no feature is left to serve as a low-association control")
    association = torch.where(eligible, association, torch.full_like(association, math.inf))
    return int(association.argmin())


def random_direction(D: torch.Tensor, feature: int, seed: int = CONTROL_SEED) -> torch.Tensor:
    """A random unit Gaussian direction scaled to the norm of ``D[:, feature]``."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(D.shape[0], generator=g, dtype=torch.float64)
    return (r / r.norm() * D[:, feature].double().norm()).to(D.dtype)


def control_sweeps(
    result: SweepResult, x: CachedInputs, seed: int = CONTROL_SEED
) -> dict[str, SweepResult]:
    """The same method at the same strengths on a low-association feature and on a random
    direction with the swept feature's decoder norm; keys ``low_association`` and ``random``.

    ROME has no feature: its controls use keys along those two directions, scaled to the
    norm of its own key, at the same depths below each key's unedited logit.
    """
    if result.target_class is None:
        raise ValueError("a control sweep needs a target class")
    if x.M is None:
        raise ValueError("a control sweep needs the class means M")
    c = int(result.target_class)
    chosen = list(result.features) or [int(x.M[c].abs().argmax())]
    low = low_association_feature(x.M, x.D, exclude=chosen)
    out = get_method(result.method).control_sweeps(result, x, low,
                                                   random_direction(x.D, chosen[0], seed))
    out["low_association"].extra.update(control="low_association", feature=low)
    out["random"].extra.update(control="random", feature=None, seed=seed)
    return out


def control_summary(
    main: Selectivity, controls: dict[str, SweepResult], names: Sequence[str],
    main_alpha50: float | None,
) -> dict[str, Any]:
    """Per control: its feature, target accuracy at the main sweep's α50 and its own window."""
    out: dict[str, Any] = {}
    for name, sweep_result in controls.items():
        sel = selectivity(sweep_result, main.baseline)
        at = None
        if main_alpha50 is not None:
            # controls share the main grid point for point (ROME: the same depths)
            at = json_safe(_interp(main_alpha50, main.strengths, sel.target))
        out[name] = {
            "feature": sweep_result.extra.get("feature"),
            "target_accuracy_at_main_alpha50": at,
            "min_target_accuracy": json_safe(sel.target.min()),
            "selective_window": [list(w) for w in sel.window()],
            "target_accuracy": [json_safe(v) for v in sel.target],
            "worst_other_kept": [json_safe(v) for v in sel.worst_other_kept],
        }
    return out


def _interp(x: float, xs: torch.Tensor, ys: torch.Tensor) -> float:
    xs, ys = xs.double(), ys.double()
    order = xs.argsort()
    xs, ys = xs[order], ys[order]
    if x <= float(xs[0]):
        return float(ys[0])
    if x >= float(xs[-1]):
        return float(ys[-1])
    i = int((xs >= x).nonzero()[0])
    x0, x1, y0, y1 = float(xs[i - 1]), float(xs[i]), float(ys[i - 1]), float(ys[i])
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0) if x1 > x0 else y1
