"""Cancel takes effect at the next work unit for every job kind the TUI starts.

Each job body is the one the TUI runs (same core call); the cancel arrives with the first
progress report, and the test counts what the job still did after it: no further progress unit
(for the exports, no further file). Counting work units instead of timing keeps the test exact
under any load; ``bench/bench_cancel.py`` measures the latency in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.jobs import CancelToken, JobCancelled, Progress
from core.store.session import Session, copy_session


def _dominant(session: Session) -> int:
    import numpy as np

    return int(np.asarray(session.read_array("rankings/dominant"))[0])


def _bodies() -> dict[str, Callable[[Session, Any, CancelToken], Any]]:
    from core.workflow.actmax_images import actmax_png
    from core.workflow.all_dominant import run_all_dominant
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.faithfulness import run_faithfulness
    from core.workflow.ground_truth import run_groundtruth
    from core.workflow.pipeline import run_pipeline
    from core.workflow.robustness import run_seed_robustness
    from core.workflow.sae_search_session import run_search
    from salve_tui.app.screens.analysis_exports import EXPORTS, run_exports

    def stage(name: str) -> Callable[..., Any]:
        return lambda s, p, c: run_pipeline(s, [name], p, c, force=True)

    return {
        "backbone": stage("backbone"),
        "activations": stage("activations"),
        "sae": stage("sae"),
        "act-max": lambda s, p, c: actmax_png(s, _dominant(s), progress=p, cancel=c),
        "robustness": lambda s, p, c: run_seed_robustness(s, k=2, epochs=2, progress=p, cancel=c),
        "faithfulness": lambda s, p, c: run_faithfulness(s, samples=2, steps=2, n_random=1,
                                                         progress=p, cancel=c),
        "sae-search": lambda s, p, c: run_search(s, p, c),
        "all-dominant": lambda s, p, c: run_all_dominant(s, progress=p, cancel=c, redo=True,
                                                         batch_classes=1),
        "alpha-crit": lambda s, p, c: run_alpha_crit(s, progress=p, cancel=c),
        "ground-truth": lambda s, p, c: run_groundtruth(s, p, c),
        "exports": lambda s, p, c: run_exports(tuple(k.key for k in EXPORTS), s, p, c),
    }


@pytest.fixture
def session_copy(tmp_path: Path, built_session_path: Path):
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    with Session.open(path) as session:
        yield session


def run_cancelled_at_first_unit(body: Callable[..., Any], session: Session) -> list[Progress]:
    """Run ``body``; cancel when its first unit of work is reported; return the reports after."""
    token = CancelToken()
    after: list[Progress] = []

    def progress(p: Progress) -> None:
        if token.cancelled:
            after.append(p)
        elif p.done > 0:  # a unit was done (a 0-report only announces a stage)
            token.cancel()

    with pytest.raises(JobCancelled):
        body(session, progress, token)
    return after


@pytest.mark.parametrize("kind", sorted(_bodies()))
def test_a_cancel_stops_every_job_kind_before_its_next_unit(kind: str, session_copy: Session) -> None:
    after = run_cancelled_at_first_unit(_bodies()[kind], session_copy)
    assert [(p.stage, p.done) for p in after if p.done > 0] == []


def test_exports_start_no_further_export_after_the_cancel(session_copy: Session) -> None:
    """A cancel that arrives with the last suppression curve stops before the α_crit tables:
    before, the α_crit export (which had no look at the cancel) still ran and wrote its files."""
    from core.workflow.alpha_crit import run_alpha_crit
    from salve_tui.app.screens.analysis_exports import run_exports

    run_alpha_crit(session_copy)  # stored: the α_crit export then only writes (no compute to cancel)
    token = CancelToken()

    def progress(p: Progress) -> None:
        if p.stage == "suppression curves" and p.done == p.total:
            token.cancel()

    with pytest.raises(JobCancelled):
        run_exports(("curves", "alpha_crit"), session_copy, progress, token)
    written = [p.name for p in session_copy.exports_dir.rglob("*") if p.is_file()]
    assert any(name.startswith("curve_") for name in written), written
    assert not [name for name in written if name.endswith(".csv") or "alpha_crit" in name], written


def test_faithfulness_looks_at_the_cancel_for_every_sample(session_copy: Session) -> None:
    """A feature's curves take seconds on a real model: the job looks at the cancel before each
    sample's curves, so it is looked at (after loading) once per pair and once per sample."""
    from core.workflow.faithfulness import run_faithfulness

    class Counting(CancelToken):
        looks = 0

        @property
        def cancelled(self) -> bool:  # type: ignore[override]
            Counting.looks += 1
            return super().cancelled

        def raise_if_cancelled(self) -> None:
            if self.cancelled:
                raise JobCancelled("cancelled")

    feature = _dominant(session_copy)
    run_faithfulness(session_copy, [feature], samples=3, steps=2, n_random=1, cancel=Counting(),
                     figure=False)
    assert Counting.looks == 1 + 1 + 3  # after loading, the pair, its 3 samples
