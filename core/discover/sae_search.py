"""``--sae-width auto``: train a small (h, λ) grid together, score each SAE on held-out data, pick one.

Why: the SAE's width and L1 weight decide whether each class gets a distinct dominant feature
whose suppression is selective (issue 19: h = 64 gave 10/10 distinct dominants on a real
dataset, h = 2048 gave 3/10). Instead of a convention, the search measures the outcome.

* **Grid** (:func:`default_grid`): widths d/16, d/8, d/4, d/2 (multiples of 16, at least the class
  count) × λ ∈ {λ₀/3, λ₀, 3λ₀}. Candidates of one width train as K seeds of one batched run
  (one λ per seed, the same initial weights), so a width costs about one run of that width.
* **Budget** (:func:`search_epochs`, :func:`within_budget`): all candidates train the session's schedule compressed to
  E_s epochs (StepLR steps scaled alike), with E_s chosen so that Σ h · E_s ≤
  :data:`TRAIN_BUDGET` · h₀ · E (h₀, E: the configured width and epochs): the training costs at
  most 2.5 single runs in matmul work (a run so short that one epoch of every width exceeds
  that drops the widest widths); scoring adds about a quarter of one (the record holds
  the seconds; bench/bench_sae_search.py measures the whole against one run).
* **Scores** (:func:`score_candidate`; the search runs the batched equal,
  :func:`core.discover.sae_search_score.score_candidates`), on the test split the SAE never saw,
  with the class means M of the training split (the encoding of each class's mean activation,
  which for the affine encoder is the mean latent the rankings stage computes): distinct
  dominant features, the median dominance ratio (top |M| over the second), the number of classes whose dominant
  feature's SALVE suppression has a selective window, the number of those whose controls (a
  low-association feature and a random direction) keep the target ≥ 50% at the dominant
  feature's α50 (controls run only where there is a window to back), explained variance, L0 and
  dead latents.
* **Choice** (:func:`choose`), the rule in :data:`RULE`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from core.config import SAEConfig

#: The candidates' training may cost this many single runs (Σ h·epochs over h₀·E).
TRAIN_BUDGET = 2.5

#: A candidate reconstructing less than this share of the test activations' variance is only
#: chosen when no candidate reaches it.
MIN_EV = 0.5

#: Target accuracy a control must keep at the dominant feature's α50.
CONTROL_KEEP = 0.5

RULE = (f"among candidates with test EV ≥ {MIN_EV} (all, if none): most selective windows, then most "
        f"windows whose controls keep the target ≥ {CONTROL_KEEP:.0%} at α50, then most distinct "
        "dominant features, then the higher median dominance ratio, then the smaller width, then "
        "the higher EV")

#: Strengths per scoring sweep (the sweep screens use 200): enough to find a selective window and
#: α50 for ranking, at a quarter of the cost, so scoring stays a small part of the search.
SCORE_POINTS = 48

LAMBDA_FACTORS = (1 / 3, 1.0, 3.0)
WIDTH_DIVISORS = (16, 8, 4, 2)


@dataclass(frozen=True)
class Candidate:
    hidden: int
    l1_coeff: float


def _round16(x: float) -> int:
    return max(16, int(math.ceil(x / 16.0)) * 16)


def default_grid(dim: int, n_classes: int, l1_coeff: float) -> list[Candidate]:
    """Widths d/16 … d/2 (multiples of 16, ≥ the class count) × λ₀·{1/3, 1, 3}."""
    floor = _round16(n_classes)
    widths = sorted({max(floor, _round16(dim / k)) for k in WIDTH_DIVISORS})
    return [Candidate(h, float(l1_coeff) * f) for h in widths for f in LAMBDA_FACTORS]


def within_budget(grid: Sequence[Candidate], config: SAEConfig) -> list[Candidate]:
    """``grid`` without its widest widths while even one epoch of it costs more than the budget
    (Σ h > TRAIN_BUDGET · h₀ · E: a short run, ``--sae-epochs 5``); the narrowest width stays."""
    budget = TRAIN_BUDGET * config.hidden * config.epochs
    kept = list(grid)
    while sum(c.hidden for c in kept) > budget and len({c.hidden for c in kept}) > 1:
        widest = max(c.hidden for c in kept)
        kept = [c for c in kept if c.hidden != widest]
    return kept


def search_epochs(config: SAEConfig, grid: Sequence[Candidate]) -> int:
    """E_s: the most epochs with Σ_candidates h · E_s ≤ TRAIN_BUDGET · h₀ · E (1 … E)."""
    total_width = sum(c.hidden for c in grid)
    epochs = int(TRAIN_BUDGET * config.hidden * config.epochs // max(1, total_width))
    return max(1, min(config.epochs, epochs))


def candidate_config(config: SAEConfig, hidden: int, epochs: int) -> SAEConfig:
    """The session's SAE settings at width ``hidden``, its schedule compressed to ``epochs``."""
    step = max(1, round(config.lr_step_epochs * epochs / config.epochs))
    return replace(config, hidden=hidden, epochs=epochs, lr_step_epochs=step, early_stop_patience=0,
                   checkpoint_every=epochs)


def groups(grid: Sequence[Candidate]) -> dict[int, list[float]]:
    """Width → its λ values, in grid order (one batched run per width)."""
    out: dict[int, list[float]] = {}
    for c in grid:
        out.setdefault(c.hidden, []).append(c.l1_coeff)
    return out


@dataclass
class HeldOut:
    """What the scores read: training activations and labels (for M), the test split, the head."""

    train_a: torch.Tensor
    train_labels: torch.Tensor
    test_a: torch.Tensor
    test_labels: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    class_names: list[str]


def _latents(weights: dict[str, np.ndarray], a: torch.Tensor) -> torch.Tensor:
    enc_w = torch.as_tensor(weights["encoder.weight"], dtype=torch.float32)
    enc_b = torch.as_tensor(weights["encoder.bias"], dtype=torch.float32)
    return torch.addmm(enc_b, a, enc_w.T)


def dominance(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the dominant feature (argmax |M|) and top |M| over the second largest."""
    absM = np.abs(np.nan_to_num(np.asarray(M, dtype=np.float64)))
    top2 = np.sort(absM, axis=1)[:, -2:] if absM.shape[1] >= 2 else np.concatenate([absM * 0, absM], 1)
    return absM.argmax(1), top2[:, 1] / np.maximum(top2[:, 0], 1e-12)


@dataclass
class SplitStats:
    """Candidate-independent numbers every score reads, computed once per search."""

    class_mean_a: torch.Tensor  # (C × d) float64 mean training activation of each class (NaN: none)
    test_a64: torch.Tensor  # (N × d) the test split in float64
    variance: float  # Σ (a − mean a)² over the test split: the EV denominator


def split_stats(data: HeldOut) -> SplitStats:
    """:class:`SplitStats` of ``data``."""
    from core.discover.rankings import class_means

    a64 = data.test_a.double()
    means = torch.from_numpy(class_means(data.train_a, data.train_labels, len(data.class_names)))
    return SplitStats(means, a64, float((a64 - a64.mean(0)).pow(2).sum()))


def candidate_basics(weights: dict[str, np.ndarray], data: HeldOut, stats: SplitStats | None = None) -> dict[str, Any]:
    """What both scorers need of one SAE: its decoder ``D``, class means ``M`` and dominant
    features, and the sweep-free scores (EV, L0, dead, distinct dominants, ratio).

    The L1 SAE's encoder is affine, so the mean latent of a class is the encoding of its mean
    activation: ``M = E ā_c + b_e`` in float64, the rankings stage's M (the mean of the
    training latents) without encoding every training row for each candidate.
    """
    from core.discover.sae import active_latents

    stats = split_stats(data) if stats is None else stats
    enc_w = torch.as_tensor(weights["encoder.weight"]).double()
    M = torch.addmm(torch.as_tensor(weights["encoder.bias"]).double(), stats.class_mean_a, enc_w.T).numpy()
    u = _latents(weights, data.test_a)
    D = torch.as_tensor(weights["decoder.weight"], dtype=torch.float32)
    recon = torch.addmm(torch.as_tensor(weights["decoder.bias"], dtype=torch.float32), u, D.T)
    ev = 1.0 - float((stats.test_a64 - recon.double()).pow(2).sum()) / stats.variance
    active = active_latents(u.abs(), exact_zero=False)
    dominant, ratio = dominance(M)
    row = {
        "hidden": int(D.shape[1]), "ev_test": ev, "l0": float(active.sum(1).float().mean()),
        "dead": int((~active.any(0)).sum()), "distinct_dominants": len(set(dominant.tolist())),
        "n_classes": len(data.class_names), "dominance_ratio_median": float(np.median(ratio)),
    }
    return {"D": D, "M32": torch.from_numpy(M).float(), "dominant": dominant, "row": row}


def score_candidate(weights: dict[str, np.ndarray], data: HeldOut) -> dict[str, Any]:
    """The held-out scores of one SAE (weights in the activations' units, no seed axis).

    The plain path, one method sweep per class: the reference that the batched scorer
    (:func:`core.discover.sae_search_score.score_candidates`, used by the search) must equal.
    """
    from core.control.alpha_crit import alpha50
    from core.control.methods.base import CachedInputs, EditRequest
    from core.control.selectivity import (
        control_summary,
        control_sweeps,
        selectivity,
        unedited_accuracy,
    )
    from core.control.sweep import sweep

    base = candidate_basics(weights, data)
    x = CachedInputs(data.test_a, data.test_labels, data.W, data.b, base["D"], base["M32"])
    baseline = unedited_accuracy(x)
    windows = controls_ok = 0
    for c, k in enumerate(base["dominant"].tolist()):
        result = sweep("salve", x, EditRequest(c, [int(k)], n_points=SCORE_POINTS))
        sel = selectivity(result, baseline)
        windows += bool(sel.selective.any())
        a50 = alpha50(result.alphas, sel.target)
        if a50 is None or not bool(sel.selective.any()):  # controls only back a window
            continue
        controls = control_summary(sel, control_sweeps(result, x), data.class_names, a50)
        kept = [v["target_accuracy_at_main_alpha50"] for v in controls.values()]
        controls_ok += all(k is not None and k >= CONTROL_KEEP for k in kept)
    return {**base["row"], "selective_windows": windows, "controls_ok": controls_ok}


def _rank_key(row: dict[str, Any]) -> tuple:
    return (row["selective_windows"], row["controls_ok"], row["distinct_dominants"],
            row["dominance_ratio_median"], -row["hidden"], row["ev_test"])


def choose(rows: Sequence[dict[str, Any]]) -> int:
    """Index of the chosen row under :data:`RULE`."""
    if not rows:
        raise ValueError("the width search has no candidates to choose from")
    eligible = [i for i, r in enumerate(rows) if r["ev_test"] >= MIN_EV] or list(range(len(rows)))
    return max(eligible, key=lambda i: _rank_key(rows[i]))


def save_search_figure(record: dict[str, Any], path: Any) -> Any:
    """PNG: selective windows, controls and distinct dominants per (h, λ), the choice marked."""
    from core.workflow.figures import _new_figure, _save, add_caption

    rows = record["rows"]
    figure = _new_figure((10, 5), 100)
    ax = figure.add_subplot(1, 1, 1)
    labels = [f"h={r['hidden']}\nλ={r['l1_coeff']:.2g}" for r in rows]
    x = np.arange(len(rows))
    for offset, key, name in ((-0.25, "selective_windows", "selective windows"),
                              (0.0, "controls_ok", "windows with specific controls"),
                              (0.25, "distinct_dominants", "distinct dominants")):
        ax.bar(x + offset, [r[key] for r in rows], width=0.25, label=name)
    chosen = record["chosen_index"]
    ax.axvspan(chosen - 0.45, chosen + 0.45, color="gold", alpha=0.25, label="chosen")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel(f"classes (of {rows[0]['n_classes']})")
    ax.set_title(f"SAE width search: {len(rows)} candidates, {record['epochs']} epochs each")
    ax.legend(fontsize=7, loc="upper right")
    add_caption(figure, textwrap.wrap(f"rule: {record['rule']}", 170))
    return _save(figure, path)
