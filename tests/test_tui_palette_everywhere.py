"""Session-level jobs are in the palette from every session screen: α_crit, all dominant, seed
robustness, ground truth and the SAE width search, each named with the keys that reach it."""

from __future__ import annotations

from pathlib import Path

from test_tui_analysis import synth_app
from test_tui_helpers import wait_for

from salve_tui.app.palette import matches_every_word
from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
from salve_tui.app.screens.analysis_matrix import MatrixScreen
from salve_tui.app.screens.dashboard import DashboardScreen

JOBS = {  # title start → the key path it names
    "α_crit: compute α_crit of every class": "(k, then r)",
    "α_crit: Sweeps + α_crit of all dominant features": "(k, then a)",
    "SAE-seed robustness: train K SAE seeds": "(n, then r)",
    "Ground truth: score the features": "(g, then r)",
    "SAE training: search the SAE width": "(t, then w)",
}


def titles_on(app) -> dict:  # noqa: ANN001
    return {c.title: c for c in app.get_system_commands(app.screen)}


async def test_session_jobs_are_in_the_palette_of_every_screen(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        for screen in ("dashboard", "matrix"):
            if screen == "matrix":
                await pilot.press("m")
                await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), what="matrix")
            titles = titles_on(app)
            for start, keys in JOBS.items():
                found = [t for t in titles if t.startswith(start)]
                assert len(found) == 1 and found[0].endswith(keys), (screen, start, sorted(titles))
        assert any(matches_every_word("robustness seeds", t, titles[t].help) for t in titles)


async def test_alpha_crit_runs_from_the_dashboard_palette(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        command = next(c for t, c in titles_on(app).items() if t.startswith("α_crit: compute"))
        command.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen), what="α_crit")
        await wait_for(pilot, lambda: app.jobs.current is not None and app.jobs.current.finished,
                       what="the α_crit job")
        assert app.jobs.current.name == "α_crit (linear)"
        await wait_for(pilot, lambda: app.screen.loaded and len(app.screen.rows) > 0, what="α_crit rows")
