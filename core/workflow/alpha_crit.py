"""Session α_crit: per-class critical thresholds, stored per (mode, modulation) setting.

One current result per (class, feature, mode, modulation): a new run replaces the stored one.
Figures show one result per class (:func:`current_per_class`): the dominant feature's, else
the most recently recorded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from core.control.alpha_crit import AlphaCritResult, class_alpha_crit
from core.control.curves import SweepResult
from core.control.spec import check_features
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.workflow.inputs import ControlInputs, check_writable, row_inputs_for, setting_key
from core.workflow.results import ALPHA_CRIT, NewResult


def alpha_crit_brief(result: AlphaCritResult, class_names: Sequence[str]) -> dict[str, Any]:
    """The per-class numbers a table shows: medians, α50, qualifying counts, agreement."""
    summary = result.summary()
    both = torch.isfinite(result.analytic) & torch.isfinite(result.numerical)
    rel = (result.numerical[both] - result.analytic[both]).abs() / result.analytic[both].abs()
    return {
        "class": result.target_class,
        "class_name": class_names[result.target_class],
        "feature": result.feature,
        "mode": result.mode,
        "modulation": result.modulation,
        "n_samples": summary["n_samples"],
        "qualifying": summary["n_qualifying_analytic"],
        "qualifying_numerical": summary["n_qualifying_numerical"],
        "analytic_median": summary["analytic"]["median"],
        "numerical_median": summary["numerical"]["median"],
        "alpha50": summary["alpha50"],
        "max_relative_difference": float(rel.max()) if rel.numel() else None,
        "validity_pooled_share_below_zero": summary["validity"]["pooled_share_below_zero"],
        "total_ablation": summary["total_ablation"],
        "alpha_off": summary["alpha_off"],
        "numerical_shown": summary["shown"],
        "withheld_reason": summary["withheld_reason"],
        "analytic_exact": summary["analytic_exact"],
        "note": summary["note"],
    }

def run_alpha_crit(
    session: Session,
    target_class: int | Sequence[int] | None = None,
    feature: int | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    curve: SweepResult | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> list[AlphaCritResult]:
    """Load → :func:`compute_alpha_crit` → record per class and feature (unless ``record`` is off)."""
    check_writable(session, record)
    x = row_inputs_for(session, inputs, split)
    results = compute_alpha_crit(x, target_class, feature, mode, modulation, curve, progress, cancel)
    if record:
        save_alpha_crit(session, results, x.class_names, x.dominant, x.computed_from)
    return results


def compute_alpha_crit(
    x: ControlInputs,
    target_class: int | Sequence[int] | None = None,
    feature: int | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    curve: SweepResult | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[AlphaCritResult]:
    """α_crit (analytic, numerical, α50, validity) per class on ``x`` (pure: nothing is written).

    ``target_class``: one class, several, or None for every class with samples. ``feature``:
    one feature for all of them (cross-class), default each class's dominant feature.
    ``curve``: a sweep of that feature to read α50 from (else one per class is computed).
    """
    if target_class is None:
        classes = sorted(int(c) for c in x.labels.unique().tolist())
    elif isinstance(target_class, int):
        classes = [target_class]
    else:
        classes = [int(c) for c in target_class]
    if feature is not None:
        check_features(x.D, [feature])
    reporter = ProgressReporter("alpha-crit", len(classes), progress)
    results = []
    for batch in _class_groups(x, classes):
        rows = x.rows.class_rows(batch) if x.streamed else None  # one pass over the split a group
        for c in batch:
            check_cancel(cancel)
            k = x.dominant_feature(c) if feature is None else int(feature)
            use_curve = curve if curve is not None and list(curve.features) == [k] else None
            if use_curve is not None and (use_curve.mode, use_curve.modulation) != ("suppress", modulation):
                use_curve = None
            results.append(inputs_alpha_crit(x, c, k, mode, modulation, use_curve, rows))
            reporter.report(len(results), f"class {x.class_names[c]}")
        rows = None  # free this group's rows before the next group's are read
    return results

def _class_groups(x: ControlInputs, classes: Sequence[int]) -> list[list[int]]:
    """All classes at once in memory; with the activations on disk, groups whose rows fit the
    budget (each group's rows are read in one pass)."""
    if not x.streamed:
        return [list(classes)]
    from core.workflow.outofcore import class_batches

    return list(class_batches(x.rows.labels, classes, 4 * x.rows.dim))


def inputs_alpha_crit(
    x: ControlInputs, target_class: int, feature: int, mode: str, modulation: str,
    curve: SweepResult | None = None, class_rows: dict[int, torch.Tensor] | None = None,
) -> AlphaCritResult:
    """:func:`class_alpha_crit` of one class on ``x`` (its samples evaluated in fixed chunks,
    ``core.control.alpha_crit.ROW_CHUNK``). With the activations on disk it runs on the class's rows
    alone (``class_rows[c]``, read if absent), which is what the in-memory call computes on too
    (it selects them by label): the same result bit for bit."""
    if not x.streamed:
        return class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, target_class, feature, mode, modulation,
                                curve=curve)
    mask = x.labels == target_class
    if not bool(mask.any()):
        raise ValueError(f"class {target_class} has no samples in this split")
    A_c = (class_rows or {}).get(target_class)
    if A_c is None:
        A_c = x.rows.class_rows([target_class])[target_class]
    return class_alpha_crit(A_c, x.labels[mask], x.W, x.b, x.D, target_class, feature, mode, modulation,
                            curve=curve, sample_indices=mask.nonzero().flatten())


_ALPHA_CRIT_ARRAYS = (
    "sample_index", "prediction", "z", "S", "analytic", "numerical", "validity_below_zero"
)
_OPTIONAL_ARRAYS = ("total_ablation",)  # absent in sessions written before it existed

def save_alpha_crit(
    session: Session,
    results: Sequence[AlphaCritResult],
    class_names: Sequence[str],
    dominant: torch.Tensor | None = None,
    computed_from: dict[str, float] | None = None,
) -> None:
    """Store α_crit results (per-sample arrays + summaries); dominant-feature ones also go to
    the session summary. ``computed_from``: the stage runs they read
    (``ControlInputs.computed_from``; default the session's current ones)."""
    from core.workflow.provenance import stage_runs

    check_writable(session, True)
    stored = alpha_crit_records(session)
    computed_from = stage_runs(session) if computed_from is None else computed_from
    with session.transaction() as tx:
        write_alpha_crit(tx, stored, results, class_names, dominant, computed_from)


def alpha_crit_records(session: Session) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The stored α_crit index and the summary's α_crit block, for :func:`write_alpha_crit`."""
    return (ALPHA_CRIT.load(session), dict(session.summary().get("alpha_crit", {}) or {}),
            list(session.summary().get("warnings") or []))


def write_alpha_crit(
    tx: Any,
    stored: tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]],
    results: Sequence[AlphaCritResult],
    class_names: Sequence[str],
    dominant: torch.Tensor | None = None,
    computed_from: dict[str, float] | None = None,
) -> None:
    """Write α_crit results into an open transaction; ``stored`` (:func:`alpha_crit_records`)
    is updated and rewritten, so several batches can share it. ``computed_from``: the stage
    runs the results were computed from (``core.workflow.provenance``)."""
    from core.workflow.quality import refresh_alpha_crit_warnings

    index, summary_block, warnings = stored
    new = []
    for r in results:
        setting = setting_key(r.mode, r.modulation)
        arrays = {name: getattr(r, name).numpy() for name in _ALPHA_CRIT_ARRAYS}
        arrays["total_ablation"] = r.total_ablation_mask.numpy()
        new.append(NewResult(f"{setting}/c{r.target_class}-f{r.feature}", r.summary(), {"": arrays}))
        if dominant is not None and int(dominant[r.target_class]) == r.feature:
            brief = alpha_crit_brief(r, class_names)
            summary_block.setdefault(setting, {})[class_names[r.target_class]] = {
                k: brief[k]
                for k in ("feature", "analytic_median", "numerical_median", "alpha50",
                          "qualifying", "qualifying_numerical", "n_samples", "total_ablation",
                          "numerical_shown", "withheld_reason", "analytic_exact")
            }
    ALPHA_CRIT.save(tx, index, new, computed_from or {})
    warnings[:] = refresh_alpha_crit_warnings(warnings, summary_block)  # the dashboard reads these
    tx.update_json("summary", alpha_crit=summary_block, warnings=warnings)


def load_alpha_crit(
    session: Session, mode: str = "suppress", modulation: str = "linear"
) -> list[AlphaCritResult]:
    """Every stored α_crit result of one setting, ordered by class then feature."""
    setting = setting_key(mode, modulation)
    index = ALPHA_CRIT.load(session).get(setting, {})
    results = []
    for key in sorted(index, key=lambda k: tuple(int(p[1:]) for p in k.split("-"))):
        s = index[key]
        arrays = ALPHA_CRIT.read_arrays(session, f"{setting}/{key}")
        results.append(
            AlphaCritResult(
                target_class=int(s["class"]),
                feature=int(s["feature"]),
                mode=s["mode"],
                modulation=s["modulation"],
                alpha_max=float(s["alpha_max"]),
                alpha50=s["alpha50"],
                validity_histogram=dict(s["validity"]["histogram"]),
                first_order_exact=bool(s.get("analytic_exact", s["modulation"] == "linear")),
                alpha_off=s.get("alpha_off"),
                **{name: torch.from_numpy(arrays[name]) for name in _ALPHA_CRIT_ARRAYS},
                **{name: torch.from_numpy(arrays[name]) for name in _OPTIONAL_ARRAYS
                   if name in arrays},
            )
        )
    return results


def recorded_times(session: Session, mode: str = "suppress", modulation: str = "linear") -> dict[tuple[int, int], float]:
    """(class, feature) → when its current α_crit result was recorded (0 if unknown)."""
    index = ALPHA_CRIT.load(session).get(
        setting_key(mode, modulation), {}
    )
    return {(int(s["class"]), int(s["feature"])): float(s.get("recorded_at", 0.0))
            for s in index.values()}


def current_per_class(
    results: Sequence[AlphaCritResult],
    dominant: Sequence[int] | None = None,
    recorded: dict[tuple[int, int], float] | None = None,
) -> list[AlphaCritResult]:
    """One result per class, ordered by class: its dominant feature's when stored, else the
    most recently recorded one (cross-class runs do not crowd the per-class figure)."""
    best: dict[int, AlphaCritResult] = {}
    recorded = recorded or {}

    def rank(r: AlphaCritResult) -> tuple[bool, float]:
        is_dominant = dominant is not None and int(dominant[r.target_class]) == r.feature
        return is_dominant, recorded.get((r.target_class, r.feature), 0.0)

    for r in results:
        if r.target_class not in best or rank(r) > rank(best[r.target_class]):
            best[r.target_class] = r
    return [best[c] for c in sorted(best)]
