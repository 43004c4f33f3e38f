"""Quality gates: warnings that say when a session's results may mislead (issue 11, item 1).

Each check is a small pure function of measured numbers and returns :class:`QualityWarning`
objects with a code, the measured value and the threshold it crossed. The results are still
produced; the warning travels with them (``salve info``, the dashboard, the sessions list,
figure captions). :func:`record_warnings` runs after every pipeline stage and stores the list
in the session summary, so readers that only look at JSON documents see it.

Thresholds (module constants, stated in every warning):

- backbone near chance: test accuracy below halfway between chance (1/C) and 100%;
- SAE not overcomplete: h ≤ d (a linear SAE with h ≥ d can reconstruct without a sparse basis,
  and h = d gives a trivial explained variance);
- dense latents: L0 above 50% of h; dead latents: more than 25% of h;
- classes sharing a dominant feature; weak dominance: top |μ| less than 1.5× the second;
- classes already below 10% test accuracy before any edit.
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


def check_sae(hidden: int, dim: int, l0: float | None, dead: float | None) -> list[QualityWarning]:
    out = []
    if hidden <= dim:
        out.append(QualityWarning(
            "sae_not_overcomplete", "sae",
            f"SAE width h={hidden} ≤ activation dim d={dim}: not an overcomplete basis"
            + (" and reconstruction can be trivial (explained variance near 1 says little)"
               if hidden == dim else " (undercomplete: features are a compressed basis)"),
            float(hidden), float(dim)))
    if l0 is not None and hidden > 0 and l0 / hidden > DENSE_L0_SHARE:
        out.append(QualityWarning(
            "sae_dense", "sae",
            f"SAE latents are dense: L0 {l0:.1f} of h={hidden} ({l0 / hidden:.0%} > "
            f"{DENSE_L0_SHARE:.0%}); raise λ or normalise activations",
            float(l0 / hidden), DENSE_L0_SHARE))
    if dead is not None and hidden > 0 and dead / hidden > DEAD_SHARE:
        out.append(QualityWarning(
            "sae_many_dead", "sae",
            f"{dead:.0f} of {hidden} SAE latents are dead ({dead / hidden:.0%} > {DEAD_SHARE:.0%})",
            float(dead / hidden), DEAD_SHARE))
    return out


def check_rankings(means: np.ndarray, class_names: Sequence[str]) -> list[QualityWarning]:
    """Shared dominant features and weak dominance, from the class-mean latents M (C×h)."""
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
        weak = [c for c in range(M.shape[0]) if ratio[c] < DOMINANCE_RATIO]
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
    if done("sae") and "sae" in summary:
        s = summary["sae"]
        dim = int(summary.get("activation_dim", 0))
        out += check_sae(int(s.get("hidden", 0)), dim, s.get("l0"), s.get("dead"))
    if done("rankings") and session.has("rankings/class_means"):
        out += check_rankings(session.read_array("rankings/class_means"), names)
    return out


def record_warnings(session: Session) -> list[QualityWarning]:
    """Compute the warnings and store them in the summary (``warnings``: list of dicts)."""
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
