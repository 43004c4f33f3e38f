"""The feature card's first open before the preloader has read the test split: the numbers and
rows come at once, the thumbnails fill in once the images are read (issue 20: "the card's numbers
and first row are there within 1 s"; regenerating the demo's test split takes ~3 s)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_tui_conventions import open_dashboard
from test_tui_helpers import FIXED_TIME, wait_for, wait_or_cancelled
from textual.widgets import Static

from core.store.session import copy_session
from salve_tui.app import preload
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_feature import FeatureDetailScreen
from salve_tui.app.widgets.samples import SampleRow, Thumbnail


async def test_card_shows_numbers_and_rows_before_the_thumbnails(
        tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    gate = threading.Event()
    real = preload.LOADERS["thumbnails"]

    def slow_thumbnails(session):  # noqa: ANN001, ANN202 (the split still being read)
        wait_or_cancelled(gate)
        return real(session)

    monkeypatch.setitem(preload.LOADERS, "thumbnails", slow_thumbnails)
    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    app = SalveApp(sessions_folder=folder, start_session="tiny", clock=lambda: FIXED_TIME)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dashboard(pilot)
        app.push_screen(FeatureDetailScreen(3, selected_class=1))
        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen) and app.screen.card is not None,
                       what="the card's numbers")
        screen = app.screen
        top = screen.query_one("#row-top", SampleRow)
        assert "highest u_3" in str(top.query_one(".row-title", Static).render())
        thumbs = list(top.query(Thumbnail))
        assert thumbs[0].sample == int(screen.card.top[0])  # the first row, with its samples
        assert not app.shared.ready("thumbnails") and screen.images == {}  # no image read yet
        assert screen.images_pending
        gate.set()
        await wait_for(pilot, lambda: not screen.images_pending, what="the thumbnails")
        assert all(int(s) in screen.images for s in screen.card.top)
        await pilot.pause()
        assert thumbs[0].query_one("ImageView").image is not None
