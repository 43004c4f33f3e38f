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
from salve_tui.app.job_kinds import dominant_feature, job_bodies


def _bodies() -> dict[str, Callable[[Session, Any, CancelToken], Any]]:
    return job_bodies(quick=True)


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

    feature = dominant_feature(session_copy)
    run_faithfulness(session_copy, [feature], samples=3, steps=2, n_random=1, cancel=Counting(),
                     figure=False)
    assert Counting.looks == 1 + 1 + 3  # after loading, the pair, its 3 samples
