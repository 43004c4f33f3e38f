"""The α_crit screen's all-dominant job: sweeps + α_crit of every class in the background."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_analysis import SYNTH_NAMES, synth_app
from test_tui_helpers import wait_for

from core.store.session import Session
from core.workflow.sweeps import list_sweeps
from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
from salve_tui.app.screens.dashboard import DashboardScreen

SIZE = (80, 24)


@pytest.fixture
def synth_folder(synth_session_folder: Path) -> Path:
    return synth_session_folder  # conftest: a copy of the synthetic session in sessions/


async def test_all_dominant_job_from_the_alpha_crit_screen(synth_folder: Path) -> None:
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded)
        crit = app.screen
        assert any("all dominant features" in c.title for c in app.get_system_commands(crit))
        await pilot.press("a")
        await wait_for(pilot, lambda: app.jobs.busy or crit._job is None, what="job started")
        await wait_for(pilot, lambda: not app.jobs.busy, what="job finished")
        await wait_for(pilot, lambda: app.screen is crit and crit.loaded
                       and len({r.target_class for r in crit.results}) == len(SYNTH_NAMES), what="reloaded")
    with Session.open(synth_folder / "synth.h5", read_only=True) as session:
        sweeps = list_sweeps(session)
    assert sorted(meta["target_class"] for meta in sweeps.values()) == list(range(len(SYNTH_NAMES)))
