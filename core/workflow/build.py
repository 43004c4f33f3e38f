"""The first build of a session: every pipeline stage, then the diagnostics every screen shows.

``salve demo`` and the TUI's build (``salve-tui NAME --build``, ``make demo`` in a terminal) run
the same :func:`build_session`, so whichever a new user starts with, the α_crit screen has every
class's thresholds and a Shapes session its ground-truth scores when first opened.
"""

from __future__ import annotations

from core.jobs import CancelToken, ProgressFn
from core.store.session import Session
from core.workflow.pipeline import StageOutcome, run_pipeline
from core.workflow.results import GROUNDTRUTH


def run_diagnostics(session: Session, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> list[StageOutcome]:
    """α_crit of every class's dominant feature and, on Shapes, the ground-truth scores.

    Each is skipped when already stored, so building again only opens what exists.
    """
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.ground_truth import run_groundtruth

    outcomes = []
    if not (session.summary().get("alpha_crit") or {}):
        results = run_alpha_crit(session, progress=progress, cancel=cancel)
        outcomes.append(StageOutcome("alpha-crit", "done", f"{len(results)} classes"))
    else:
        outcomes.append(StageOutcome("alpha-crit", "skipped", "already stored"))
    if session.config.data.kind == "shapes":
        if not session.has(GROUNDTRUTH.key):
            run_groundtruth(session, progress=progress, cancel=cancel)
            outcomes.append(StageOutcome("ground truth", "done", "pointing game, concept AUROC"))
        else:
            outcomes.append(StageOutcome("ground truth", "skipped", "already stored"))
    return outcomes


def build_session(session: Session, progress: ProgressFn | None = None,
                  cancel: CancelToken | None = None) -> list[StageOutcome]:
    """Run (or resume) every pending stage, then :func:`run_diagnostics`."""
    outcomes = run_pipeline(session, None, progress, cancel)
    return outcomes + run_diagnostics(session, progress, cancel)
