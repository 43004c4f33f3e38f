"""Sweeps and α_crit for every class's dominant feature as one job (issue 13: 1,000 classes).

Per class this computes exactly what ``salve sweep SESSION --class C`` does (the SALVE sweep of
the class's dominant feature, then, when suppressing, its α_crit read against that curve) by
calling the same functions, and stores the same records. What the job adds: one progress bar
over all classes, cancellation between (and inside) classes, commits in batches (every
:data:`BATCH_CLASSES` classes or :data:`BATCH_SECONDS`, whichever comes first, since every
session transaction has a cost), and resumption: a rerun skips the classes whose sweep and
α_crit were recorded after the current rankings, so a cancelled or killed job loses at most
one batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.control.alpha_crit import AlphaCritResult
from core.control.curves import DEFAULT_N_ALPHAS, SweepResult
from core.control.methods.base import EditRequest
from core.jobs import CancelToken, JobCancelled, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.workflow.alpha_crit import alpha_crit_records, compute_alpha_crit, write_alpha_crit
from core.workflow.inputs import ControlInputs, check_writable, row_inputs_for, setting_key
from core.workflow.results import ALPHA_CRIT, SWEEPS
from core.workflow.sweeps import compute_sweep, write_sweeps

BATCH_CLASSES = 50
BATCH_SECONDS = 20.0
JOB_NAME = "all-dominant"


@dataclass
class AllDominantOutcome:
    """What one run did: classes computed now, skipped (already recorded), without a feature."""

    mode: str
    modulation: str
    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    no_feature: list[int] = field(default_factory=list)
    commits: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.computed) + len(self.skipped) + len(self.no_feature)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "modulation": self.modulation, "computed": len(self.computed),
                "skipped": len(self.skipped), "no_feature": list(self.no_feature), "classes": self.total,
                "commits": self.commits, "seconds": self.seconds}


def sweep_key(target_class: int, feature: int, mode: str, modulation: str) -> str:
    """The id the dominant-feature SALVE sweep of a class is stored under (see ``sweep_id``)."""
    return f"salve-f{feature}-{mode}-{modulation}-c{target_class}"


def recorded_classes(session: Session, x: ControlInputs, mode: str, modulation: str) -> set[int]:
    """Classes whose dominant sweep (and α_crit, when suppressing) is stored and newer than the
    rankings they were computed from."""
    rankings = session.stages().get("rankings")
    since = rankings.updated if rankings is not None and rankings.updated else 0.0
    sweeps = SWEEPS.load(session)
    crit = ALPHA_CRIT.load(session).get(setting_key("suppress", modulation), {})
    done = set()
    for c in range(x.num_classes):
        k = int(x.dominant[c])
        if k < 0:
            continue
        entry = sweeps.get(sweep_key(c, k, mode, modulation))
        if entry is None or float(entry.get("recorded_at", 0.0)) < since:
            continue
        if mode == "suppress":
            crit_entry = crit.get(f"c{c}-f{k}")
            if crit_entry is None or float(crit_entry.get("recorded_at", 0.0)) < since:
                continue
        done.add(c)
    return done


def dominant_class_results(
    session: Session, x: ControlInputs, target_class: int, mode: str, modulation: str,
    alphas: torch.Tensor | Sequence[float] | None, n_alphas: int, cancel: CancelToken | None,
) -> tuple[SweepResult, AlphaCritResult | None]:
    """One class's sweep and α_crit, exactly as ``salve sweep --class`` computes them."""
    curve = compute_sweep(x, None, EditRequest(target_class, None, alphas, mode, modulation, n_alphas),
                          cancel=cancel)
    crit = None
    if mode == "suppress" and int(x.labels.eq(target_class).sum()) > 0:
        (crit,) = compute_alpha_crit(x, target_class, curve.features[0], "suppress", modulation, curve)
    return curve, crit


def _groups(x: ControlInputs, todo: Sequence[int], n_alphas: int) -> list[list[int]]:
    """One class at a time in memory; with the activations on disk, groups of classes whose
    rows and sweep tallies fit the budget, each group costing two passes over the split."""
    if not x.streamed:
        return [[c] for c in todo]
    from core.workflow.outofcore import class_batches

    return list(class_batches(x.rows.labels, todo, 4 * x.rows.dim, class_bytes=16 * n_alphas * x.num_classes))


def group_results(
    session: Session, x: ControlInputs, group: Sequence[int], mode: str, modulation: str,
    alphas: torch.Tensor | Sequence[float] | None, n_alphas: int, cancel: CancelToken | None,
) -> Iterator[tuple[SweepResult, AlphaCritResult | None]]:
    """:func:`dominant_class_results` of each class of ``group``; with the activations on disk
    the group's class rows are read in one pass and its sweeps share one pass over the row
    blocks (the same results: see ``streamed_sweeps`` and ``inputs_alpha_crit``)."""
    if not x.streamed:
        for c in group:
            check_cancel(cancel)
            yield dominant_class_results(session, x, c, mode, modulation, alphas, n_alphas, cancel)
        return
    from core.workflow.alpha_crit import inputs_alpha_crit
    from core.workflow.sweeps import streamed_sweeps

    rows = x.rows.class_rows(group)
    requests = [EditRequest(c, None, alphas, mode, modulation, n_alphas) for c in group]
    curves = streamed_sweeps(x, None, requests, cancel=cancel, class_rows=rows)
    for c, curve in zip(group, curves, strict=True):
        check_cancel(cancel)
        crit = None
        if mode == "suppress" and int(x.labels.eq(c).sum()) > 0:
            crit = inputs_alpha_crit(x, c, curve.features[0], "suppress", modulation, curve, rows)
        yield curve, crit


class _Batch:
    """Finished classes not yet committed: one transaction per :data:`BATCH_CLASSES` classes or
    :data:`BATCH_SECONDS`, whichever comes first (every transaction has a cost)."""

    def __init__(self, session: Session, x: ControlInputs, outcome: AllDominantOutcome,
                 classes: int, seconds: float) -> None:
        self.session, self.x, self.outcome = session, x, outcome
        self.classes, self.seconds = classes, seconds
        self.sweeps_index = SWEEPS.load(session)
        self.crit_records = alpha_crit_records(session)
        self.pending: list[tuple[int, SweepResult, AlphaCritResult | None]] = []
        self.last_commit = time.monotonic()

    def add(self, c: int, curve: SweepResult, crit: AlphaCritResult | None) -> None:
        self.pending.append((c, curve, crit))
        if len(self.pending) >= self.classes or time.monotonic() - self.last_commit >= self.seconds:
            self.commit()

    def commit(self) -> None:
        """Record the pending classes' sweeps and α_crit in one transaction."""
        x, pending = self.x, self.pending
        if pending:
            with self.session.transaction() as tx:
                write_sweeps(tx, self.sweeps_index, [curve for _, curve, _ in pending], x.computed_from)
                crits = [crit for _, _, crit in pending if crit is not None]
                if crits:
                    write_alpha_crit(tx, self.crit_records, crits, x.class_names, x.dominant, x.computed_from)
            self.outcome.computed += [c for c, _, _ in pending]
            self.outcome.commits += 1
            pending.clear()
        self.last_commit = time.monotonic()


def run_all_dominant(
    session: Session,
    mode: str = "suppress",
    modulation: str = "linear",
    alphas: torch.Tensor | Sequence[float] | None = None,
    n_alphas: int = DEFAULT_N_ALPHAS,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    redo: bool = False,
    inputs: ControlInputs | None = None,
    split: str = "test",
    batch_classes: int = BATCH_CLASSES,
    batch_seconds: float = BATCH_SECONDS,
) -> AllDominantOutcome:
    """Sweep (and α_crit, when suppressing) every class's dominant feature; see the module doc.

    ``redo``: recompute classes already recorded. On cancellation the finished classes are
    committed before :class:`JobCancelled` propagates; rerunning completes the rest.
    """
    check_writable(session, True)
    started = time.monotonic()
    x = row_inputs_for(session, inputs, split)
    outcome = AllDominantOutcome(mode, modulation)
    outcome.no_feature = [c for c in range(x.num_classes) if int(x.dominant[c]) < 0]
    done = set() if redo else recorded_classes(session, x, mode, modulation)
    todo = [c for c in range(x.num_classes) if c not in done and c not in outcome.no_feature]
    outcome.skipped = sorted(done)
    reporter = ProgressReporter(JOB_NAME, x.num_classes, progress, start=x.num_classes - len(todo))
    reporter.report(x.num_classes - len(todo), f"{len(todo)} of {x.num_classes} classes to compute"
                    + (f" ({len(done)} already recorded)" if done else ""))
    batch = _Batch(session, x, outcome, batch_classes, batch_seconds)
    try:
        i = 0
        for group in _groups(x, todo, n_alphas):
            for c, (curve, crit) in zip(group, group_results(session, x, group, mode, modulation, alphas,
                                                             n_alphas, cancel), strict=True):
                i += 1
                reporter.report(x.num_classes - len(todo) + i, f"class {x.class_names[c]}")
                batch.add(c, curve, crit)
    except JobCancelled:
        batch.commit()
        raise JobCancelled(
            f"sweeps of dominant features cancelled: {len(outcome.computed) + len(done)} of "
            f"{x.num_classes - len(outcome.no_feature)} classes are recorded; rerun to compute the rest"
        ) from None
    batch.commit()
    outcome.seconds = time.monotonic() - started
    return outcome
