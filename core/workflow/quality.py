"""Quality gates: warnings that say when a session's results may mislead (issue 11, item 1).

Each check is a small pure function of measured numbers and returns :class:`QualityWarning`
objects with a code, the measured value and the threshold it crossed. The results are still
produced; the warning travels with them (``salve info``, the dashboard, the sessions list,
figure captions). :func:`record_warnings` runs after every pipeline stage and stores the list
in the session summary, so readers that only look at JSON documents see it.

Thresholds (module constants, stated in every warning):

- backbone near chance: test accuracy below halfway between chance (1/C) and 100%;
- dense latents: L0 above 50% of h; dead latents: more than 25% of h;
- classes sharing a dominant feature; weak dominance: top |μ| less than 1.5× the second;
- classes already below 10% test accuracy before any edit;
- few selective windows: fewer than 80% of the classes have one for their dominant feature;
  controls: a low-association feature or a random direction drives the target below 50% at
  the dominant feature's own α50 in more than 10% of the classes (``selectivity_check``);
- clamped α_crit dominated by total-ablation roots: a class with more samples excluded at
  α ≥ α_off than kept (``core.control.alpha_off``).

The SAE's width is no gate: the paper's SAEs are undercomplete on purpose (A.4); what matters
is the outcome (dominance, selectivity, controls), which the gates above measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from core.store.session import Session

DENSE_L0_SHARE = 0.5
DEAD_SHARE = 0.25
DOMINANCE_RATIO = 1.5
ALREADY_SUPPRESSED = 0.10
WINDOW_SHARE = 0.8  # warn when fewer than 80% of the checked classes have a selective window
CONTROL_FAIL_SHARE = 0.1  # ... or when a control suppresses the target in more than 10% of them


@dataclass(frozen=True)
class QualityWarning:
    """One warning: ``code`` (stable, for scripts), the stage it concerns, a sentence for
    people, and the measured ``value`` against its ``threshold``."""

    code: str
    stage: str
    message: str
    value: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def near_chance_threshold(n_classes: int) -> float:
    chance = 1.0 / max(1, n_classes)
    return chance + 0.5 * (1.0 - chance)


def check_backbone(test_accuracy: float, n_classes: int) -> list[QualityWarning]:
    threshold = near_chance_threshold(n_classes)
    if test_accuracy >= threshold:
        return []
    return [QualityWarning(
        "backbone_near_chance", "backbone",
        f"backbone test accuracy {test_accuracy:.3f} is near chance ({1 / n_classes:.3f} for "
        f"{n_classes} classes; warn below {threshold:.3f}): features and edits describe a model "
        "that has not learnt the task",
        float(test_accuracy), threshold)]


def check_sae(hidden: int, l0: float | None, dead: float | None,
              normalized: bool = False) -> list[QualityWarning]:
    """Dense or dead latents. The advice names only what the user has not done already."""
    out = []
    if l0 is not None and hidden > 0 and l0 / hidden > DENSE_L0_SHARE:
        advice = "raise λ (--l1)" if normalized else "raise λ (--l1) or train on normalised activations"
        out.append(QualityWarning(
            "sae_dense", "sae",
            f"SAE latents are dense: L0 {l0:.1f} of h={hidden} ({l0 / hidden:.0%} > "
            f"{DENSE_L0_SHARE:.0%}); {advice} if the dominant features are not selective",
            float(l0 / hidden), DENSE_L0_SHARE))
    if dead is not None and hidden > 0 and dead / hidden > DEAD_SHARE:
        out.append(QualityWarning(
            "sae_many_dead", "sae",
            f"{dead:.0f} of {hidden} SAE latents are dead ({dead / hidden:.0%} > {DEAD_SHARE:.0%})",
            float(dead / hidden), DEAD_SHARE))
    return out


def check_rankings(means: np.ndarray, class_names: Sequence[str],
                   poor: set[str] | None = None) -> list[QualityWarning]:
    """Shared dominant features and weak dominance, from the class-mean latents M (C×h).

    ``poor``: the classes whose measured outcome is poor (:func:`poor_classes`); when given,
    weak dominance is reported only for them (a class with a selective, specific edit is fine
    whatever its ratio)."""
    M = np.abs(np.asarray(means, dtype=np.float64))
    out = []
    dominant = M.argmax(1)
    groups: dict[int, list[str]] = {}
    for c, k in enumerate(dominant):
        groups.setdefault(int(k), []).append(class_names[c] if c < len(class_names) else f"class {c}")
    shared = {k: v for k, v in groups.items() if len(v) > 1}
    if shared:
        n = sum(len(v) for v in shared.values())
        text = "; ".join(f"f{k}: {', '.join(v)}" for k, v in sorted(shared.items()))
        out.append(QualityWarning(
            "shared_dominant", "rankings",
            f"{n} classes share a dominant feature ({text}): editing one hits the others",
            float(n), 0.0))
    if M.shape[1] >= 2:
        top2 = np.sort(M, axis=1)[:, -2:]
        ratio = top2[:, 1] / np.maximum(top2[:, 0], 1e-12)
        weak = [c for c in range(M.shape[0]) if ratio[c] < DOMINANCE_RATIO
                and (poor is None or class_names[c] in poor)]
        if weak:
            listed = ", ".join(f"{class_names[c]} {ratio[c]:.2f}×" for c in weak)
            out.append(QualityWarning(
                "weak_dominance", "rankings",
                f"weak dominance in {len(weak)} class(es): top |μ| over the second {listed} "
                f"(< {DOMINANCE_RATIO}×): the dominant feature is barely ahead",
                float(ratio[weak].min()), DOMINANCE_RATIO))
    return out


def check_baseline(per_class_accuracy: np.ndarray, class_names: Sequence[str]) -> list[QualityWarning]:
    acc = np.asarray(per_class_accuracy, dtype=np.float64)
    low = [c for c in range(acc.size) if np.isfinite(acc[c]) and acc[c] < ALREADY_SUPPRESSED]
    if not low:
        return []
    listed = ", ".join(f"{class_names[c]} {acc[c]:.0%}" for c in low)
    return [QualityWarning(
        "already_suppressed", "activations",
        f"{len(low)} class(es) are below {ALREADY_SUPPRESSED:.0%} test accuracy before any edit "
        f"({listed}): suppressing them proves nothing",
        float(len(low)), ALREADY_SUPPRESSED)]


def check_selectivity(check: dict[str, Any] | None) -> list[QualityWarning]:
    """Few selective windows, or controls that suppress as well as the dominant feature, from
    the pipeline's ``selectivity_check`` (``core.workflow.selectivity``)."""
    if check and check.get("error"):
        return [QualityWarning("selectivity_unchecked", "rankings",
                               f"the selectivity check could not run ({check['error']}): dominance is "
                               "unmeasured; run `salve sweep SESSION --all-dominant` and read the sweeps", 0.0, 0.0)]
    if not check or not check.get("checked"):
        return []
    n = int(check["checked"])
    scope = f"{n} classes" if n == check.get("classes") else f"{n} of {check.get('classes')} classes checked"
    out = []
    windows = int(check["windows"])
    if windows < WINDOW_SHARE * n:
        listed = ", ".join(check["no_window"][:12]) + (" …" if len(check["no_window"]) > 12 else "")
        out.append(QualityWarning(
            "few_selective_windows", "rankings",
            f"the dominant feature has a selective SALVE window in only {windows}/{n} ({scope}; warn below "
            f"{WINDOW_SHARE:.0%}); none for {listed}: suppressing a class hits others too "
            "(try another λ or width: `salve new … --l1/--sae-hidden`)",
            windows / n, WINDOW_SHARE))
    fails = check.get("controls_fail") or []
    if len(fails) > CONTROL_FAIL_SHARE * n:
        out.append(QualityWarning(
            "controls_not_specific", "rankings",
            f"a low-association feature or a random direction drives the target below 50% at the dominant "
            f"feature's own α50 in {len(fails)}/{n} classes ({', '.join(fails[:12])}; warn above "
            f"{CONTROL_FAIL_SHARE:.0%}): the dominant feature is not what suppresses those classes",
            len(fails) / n, CONTROL_FAIL_SHARE))
    return out


def poor_classes(check: dict[str, Any] | None) -> set[str] | None:
    """Classes whose outcome is poor (no window or a control fails); None when not checked."""
    if not check or not check.get("checked"):
        return None
    return set(check.get("no_window") or []) | set(check.get("controls_fail") or [])


def check_alpha_crit(block: dict[str, Any] | None) -> list[QualityWarning]:
    """Classes whose clamped α_crit is dominated by total-ablation roots (more samples excluded
    at α ≥ α_off than kept), from the summary's ``alpha_crit`` block."""
    rows = (block or {}).get("suppress-clamped", {}) or {}
    bad = {name: r for name, r in rows.items()
           if int(r.get("total_ablation") or 0) > int(r.get("qualifying_numerical", r.get("qualifying", 0)) or 0)}
    if not bad:
        return []
    listed = ", ".join(f"{name} {r['total_ablation']}/{r['n_samples']}" for name, r in sorted(bad.items()))
    worst = max(r["total_ablation"] / max(1, r["n_samples"]) for r in bad.values())
    return [QualityWarning(
        "alpha_crit_total_ablation", "alpha-crit",
        f"clamped α_crit of {len(bad)} class(es) is dominated by total-ablation roots (excluded "
        f"samples: {listed}): the feature flips those samples only once ≥ 95% of its decoder mass "
        "is switched off, so its clamped α_crit says little about a selective edit",
        float(worst), 0.5)]


def per_class_test_accuracy(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    pred = np.asarray(logits).argmax(1)
    labels = np.asarray(labels)
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = labels == c
        if mask.any():
            out[c] = float((pred[mask] == c).mean())
    return out


def session_warnings(session: Session) -> list[QualityWarning]:
    """Every warning the session's completed stages support (computed now, from the file)."""
    stages = session.stages()

    def done(stage: str) -> bool:
        return stage in stages and stages[stage].state == "done"

    summary = session.summary()
    names = [str(c) for c in summary.get("class_names", [])]
    if not names and session.has("class_names"):  # a summary without them (older or synthetic)
        names = [str(c) for c in session.read_json("class_names")]
    out: list[QualityWarning] = []
    if done("backbone") and "backbone" in summary and names:
        out += check_backbone(float(summary["backbone"]["test_accuracy"]), len(names))
    if done("activations") and names:
        test = session.read_arrays("activations/test")
        out += check_baseline(per_class_test_accuracy(test["logits"], test["labels"], len(names)),
                              names)
    check = _current_check(session, summary)
    poor = poor_classes(check)
    if done("sae") and "sae" in summary:
        s = summary["sae"]
        # shape is only a hint: dense latents are reported when the outcome is poor or unmeasured
        if poor is None or poor:
            out += check_sae(int(s.get("hidden", 0)), s.get("l0"), s.get("dead"), bool(s.get("normalized")))
    if done("rankings") and session.has("rankings/class_means"):
        out += check_rankings(session.read_array("rankings/class_means"), names, poor)
        out += check_selectivity(check)
    out += check_alpha_crit(summary.get("alpha_crit"))
    return out


def _current_check(session: Session, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The stored selectivity check when it belongs to the current rankings, else None."""
    check = summary.get("selectivity_check")
    rankings = session.stages().get("rankings")
    if not check or rankings is None or rankings.state != "done":
        return None
    return check if check.get("rankings_updated") == rankings.updated else None


def update_selectivity_check(session: Session) -> None:
    """Measure and store the selectivity check of the current rankings if it is missing."""
    rankings = session.stages().get("rankings")
    if rankings is None or rankings.state != "done" or _current_check(session, session.summary()):
        return
    from core.workflow.outcome import selectivity_check

    try:
        check = selectivity_check(session)
    except (ValueError, RuntimeError, KeyError) as exc:  # the stage's results stand; say why unchecked
        check = {"error": str(exc) or type(exc).__name__, "rankings_updated": rankings.updated}
    if check is not None:
        with session.transaction() as tx:
            tx.update_json("summary", selectivity_check=check)


def refresh_alpha_crit_warnings(warnings: Sequence[dict[str, Any]], block: dict[str, Any]) -> list[dict[str, Any]]:
    """Stored warnings with the α_crit one recomputed from ``block`` (written with α_crit)."""
    kept = [w for w in warnings if w.get("code") != "alpha_crit_total_ablation"]
    return kept + [w.to_dict() for w in check_alpha_crit(block)]


def record_warnings(session: Session) -> list[QualityWarning]:
    """Compute the warnings and store them in the summary (``warnings``: list of dicts).

    Once the rankings are done, their selectivity check (``selectivity_check``: a SALVE sweep
    and two control sweeps per class on the cached activations) is measured first if missing."""
    update_selectivity_check(session)
    warnings = session_warnings(session)
    with session.transaction() as tx:
        tx.update_json("summary", warnings=[w.to_dict() for w in warnings])
    return warnings


def warning_lines(warnings: Sequence[dict[str, Any] | QualityWarning]) -> list[str]:
    """``⚠ code: message`` per warning, for text output and captions."""
    rows = [w.to_dict() if isinstance(w, QualityWarning) else w for w in warnings]
    return [f"⚠ {w['code']}: {w['message']}" for w in rows]


def figure_warning_lines(session: Session, width: int = 120) -> list[str]:
    """The session's quality warnings as short caption lines for every figure (codes, values,
    thresholds; `salve info` has the sentences). Empty when there is nothing to warn about."""
    import textwrap

    warnings = session_warnings(session)
    if not warnings:
        return []
    text = "warnings: " + "; ".join(f"{w.code} {w.value:.3g} (threshold {w.threshold:.3g})"
                                    for w in warnings)
    return textwrap.wrap(text, width=width)
