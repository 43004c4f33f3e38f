"""Session selectivity report of a sweep: side effects on the test split, the same edit on the
train split (generalisation) and control sweeps (``core.control.selectivity``).

Computed on demand from the cached activations (a few extra sweeps, no backbone run), so a
stored sweep always gets a report that matches the current session.
"""

from __future__ import annotations

from typing import Any

from core.control.alpha_crit import alpha50
from core.control.curves import SweepResult
from core.control.methods.base import EditRequest
from core.control.methods.registry import get_method
from core.control.selectivity import (
    control_summary,
    control_sweeps,
    generalisation,
    selectivity,
    unedited_accuracy,
)
from core.control.sweep import sweep
from core.store.session import Session, SessionError
from core.workflow.inputs import ControlInputs, load_inputs


def _train_inputs(session: Session | None) -> ControlInputs | None:
    if session is None:
        return None
    try:
        return load_inputs(session, "train")
    except (KeyError, ValueError, OSError, SessionError):
        return None


def same_edit_on(result: SweepResult, test: ControlInputs, other: ControlInputs) -> SweepResult:
    """``result``'s edit at its strengths on another split (built on the test split: ROME keeps
    its key, ``EditMethod.replay_options``)."""
    m = get_method(result.method)
    request = EditRequest(int(result.target_class), list(result.features) or None, result.alphas,
                          result.mode, result.modulation,
                          options=m.replay_options(result, test.cached()))
    return sweep(m, other.cached(), request)


def selectivity_report(
    session: Session | None,
    result: SweepResult,
    inputs: ControlInputs | None = None,
    controls: bool = True,
    train: bool = True,
) -> dict[str, Any]:
    """Selectivity per strength, the selective window, generalisation and controls, JSON-ready.

    ``session`` may be None when ``inputs`` are given (no train split then).
    """
    if inputs is None and session is None:
        raise ValueError("a selectivity report needs a session or the control inputs")
    x = inputs if inputs is not None else load_inputs(session, "test")
    names = x.class_names
    sel = selectivity(result, unedited_accuracy(x.cached()))
    report: dict[str, Any] = sel.summary(names)
    report["symbol"] = get_method(result.method).symbol  # the strength on screen: α, β, target
    c = int(result.target_class)
    main_a50 = alpha50(result.alphas, result.per_class_accuracy[c])
    report["target_alpha50"] = main_a50
    report["generalisation"] = None
    if train:
        xt = _train_inputs(session)
        if xt is not None:
            train_result = same_edit_on(result, x, xt)
            train_sel = selectivity(train_result, unedited_accuracy(xt.cached()))
            report["generalisation"] = generalisation(sel, train_sel, names)
    report["controls"] = None
    if controls:
        report["controls"] = control_summary(sel, control_sweeps(result, x.cached()), names,
                                             main_a50)
    return report


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.0f}%"


#: Strength names in words for the narrow panels (the edit preview's, the figures' captions).
PARAM_WORDS = {"alpha": "α", "beta": "β", "target_value": "logit target"}


def ordered_window(report: dict[str, Any]) -> list[tuple[float, float]]:
    """The selective window low to high: a sweep that runs downwards (ROME lowers its logit
    target) stores its ends in sweep order, which would print as a reversed range."""
    return [(min(lo, hi), max(lo, hi)) for lo, hi in report["selective_window"]]


def compact_selectivity_lines(report: dict[str, Any]) -> list[str]:
    """Short lines for a narrow panel: the selective window (low to high, whatever way the sweep
    ran) or why there is none, side effects where the target is first suppressed, and the
    controls; strengths in words."""
    name = report["param_name"]
    p = PARAM_WORDS.get(name, report.get("symbol", name))
    window = ordered_window(report)
    lines = ["selective " + (", ".join(f"{p} {lo:.3g} to {hi:.3g}" for lo, hi in window)
                             if window else "window: none")]
    if report.get("no_window_reason"):
        lines.append(f"no window: {report['no_window_reason']}")
    first = report["first_suppressed"]
    if first is None:
        lines.append("target never < 10%")
    else:
        lines.append(f"at {p} {first[name]:.3g}: worst other {first['worst_other_class_name']}"
                     f" {_pct(first['worst_other_accuracy'])}, {first['n_other_lost_over_10_points']}"
                     " lost >10 points")
    controls = report.get("controls")
    if controls:
        low, rnd = controls.get("low_association", {}), controls.get("random", {})
        feature = low.get("feature")
        lines.append(f"controls at the 50% point: low{'' if feature is None else f' f{feature}'}"
                     f" {_pct(low.get('target_accuracy_at_main_alpha50'))},"
                     f" random {_pct(rnd.get('target_accuracy_at_main_alpha50'))}")
    return lines


def selectivity_lines(report: dict[str, Any]) -> list[str]:
    """A human summary (CLI text): window, side effects, generalisation, controls."""
    p = report["param_name"]
    words = PARAM_WORDS.get(p, p)
    window = ordered_window(report)
    lines = [
        "selective window: "
        + (", ".join(f"{words} {lo:.3g}–{hi:.3g}" for lo, hi in window) if window else "none")
        + f" (target < {_pct(report['thresholds']['target_below'])}, every other class keeps"
        f" ≥ {_pct(report['thresholds']['others_keep_share'])} of its baseline)"
    ]
    if report.get("no_window_reason"):  # second line: figure captions start from it
        lines.append(f"no window for this class: {report['no_window_reason']}")
    first = report["first_suppressed"]
    if first is None:
        lines.append("target never below 10% on this grid")
    else:
        lines.append(
            f"at {p} {first[p]:.3g} (first target < 10%): target {_pct(first['target_accuracy'])},"
            f" others mean {_pct(first['others_mean_accuracy'])}, worst"
            f" {first['worst_other_class_name']} {_pct(first['worst_other_accuracy'])}"
            f" (keeps {_pct(first['worst_other_kept'])}),"
            f" {first['n_other_lost_over_10_points']} lost > 10 pts"
        )
    g = report.get("generalisation")
    if g is not None and g["max_efficacy_gap"] is not None:
        lines.append(f"train vs test efficacy: largest gap {100 * g['max_efficacy_gap']:.1f} pts")
    ctrl = report.get("controls")
    if ctrl:
        a50 = report.get("target_alpha50")
        parts = []
        for name, label in (("low_association", "low-association"), ("random", "random dir.")):
            if name in ctrl:
                feat = ctrl[name]["feature"]
                tag = f"{label}{'' if feat is None else f' f{feat}'}"
                parts.append(f"{tag} {_pct(ctrl[name]['target_accuracy_at_main_alpha50'])}")
        at = "—" if a50 is None else f"{a50:.3g}"
        lines.append(f"controls, target at the edit's 50% point ({p} {at}): " + ", ".join(parts))
    return lines
