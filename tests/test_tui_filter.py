"""``/`` filters the long lists: sessions, α_crit samples, PNG previews, the job log. Typing
narrows at once, Enter keeps the filter, esc clears it; letters typed there never act as keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from test_tui_analysis import synth_app
from test_tui_helpers import make_session, wait_for
from textual.widgets import DataTable, OptionList, Static

from core.store.session import Session
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
from salve_tui.app.screens.analysis_gallery import GalleryScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.sessions import SessionsScreen
from salve_tui.app.widgets.filter import FilterBar, matches


def test_matches_every_word_in_any_field() -> None:
    assert matches("cir 12", "circle", "#12")
    assert not matches("cir 13", "circle", "#12")
    assert matches("", "anything")


def test_a_spelled_greek_letter_finds_the_letter() -> None:
    """Help showed nothing for "alpha": its rows say α_crit."""
    assert matches("alpha crit", "k", "α_crit")
    assert matches("lambda", "SAE λ 0.01") and matches("λ", "SAE λ 0.01")
    assert not matches("beta", "α_crit")


async def test_sessions_filter(tmp_path: Path) -> None:
    for name in ("alpha-run", "beta-run", "alpha-two"):
        make_session(tmp_path, name)
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen), what="sessions")
        screen = app.screen
        assert len(screen.rows) == 3
        await pilot.press("slash", "a", "l", "p", "h", "a")  # 'a'/'n' typed here are not keys
        assert {r["name"] for r in screen.rows} == {"alpha-run", "alpha-two"}
        assert screen.query_one(DataTable).row_count == 2
        assert "2 of 3 sessions match 'alpha'" in str(screen.query_one("#sessions-folder", Static).render())
        await pilot.press("enter")  # keeps the filter, back to the table
        assert isinstance(app.focused, DataTable) and len(screen.rows) == 2
        await pilot.press("slash", "escape")
        assert len(screen.rows) == 3 and not screen.query_one(FilterBar).has_class("-open")


async def test_alpha_crit_and_png_filters(synth_session_folder: Path) -> None:
    from core.workflow.alpha_crit import run_alpha_crit

    with Session.open(synth_session_folder / "synth.h5") as session:
        run_alpha_crit(session)
        figures = session.exports_dir / "figures"
    figures.mkdir(parents=True)
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("curve_c0.png", "curve_c1.png", "matrix.png"):
        Image.fromarray(pixels).save(figures / name)
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded,
                       what="α_crit")
        crit = app.screen
        total = len(crit.rows)
        await pilot.press("slash", *"square")
        names = crit.class_names
        assert 0 < len(crit.rows) < total
        assert all("square" in (names[r["label"]], names[r["prediction"]]) for r in crit.rows)
        await pilot.press("escape")
        assert len(crit.rows) == total
        await pilot.press("escape", "p")
        await wait_for(pilot, lambda: isinstance(app.screen, GalleryScreen) and app.screen.files,
                       what="PNG previews")
        gallery = app.screen
        await pilot.press("slash", *"curve")
        listed = [str(o.prompt) for o in gallery.query_one(OptionList)._options]
        assert sorted(listed) == ["figures/curve_c0.png", "figures/curve_c1.png"]


async def test_png_previews_say_when_the_folder_is_empty(synth_session_folder: Path) -> None:
    """(A regression while adding the filter: an empty first listing never replaced 'listing…'.)"""
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, GalleryScreen) and app.screen.folder is not None,
                       what="PNG previews")
        await pilot.pause()
        assert "no PNG in" in str(app.screen.query_one("#gallery-info", Static).render())
