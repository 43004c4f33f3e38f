"""The feature card on the screens' load pattern (``LOADING`` / ``CONTENT_ACTIONS`` / ``load`` /
``show`` of :mod:`salve_tui.app.screens.base`), driven with Pilot on a real tiny session.

The card's ``load()`` is gated with a :class:`threading.Event`, so the loading state is observed
deterministically: the notice names the feature, keys pressed meanwhile act on the card when it
arrives (a panel key, a row move), the content actions are inert until then, and ``show()``
fills the rows with the card the core computes.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from test_tui_helpers import FIXED_TIME, wait_for, wait_or_cancelled
from textual.widgets import Static

from core.store.session import Session, copy_session
from core.workflow.feature_card import load_card_inputs
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_feature import FeatureDetailScreen, SampleRow, Thumbnail
from salve_tui.app.screens.base import LoadingNotice
from salve_tui.app.screens.dashboard import DashboardScreen

SIZE = (80, 24)


@pytest.fixture
def tiny_folder(tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    return folder


async def test_feature_card_paints_its_notice_then_fills_in(tiny_folder: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    calls: list[int] = []
    real = FeatureDetailScreen.load

    def gated(self):  # noqa: ANN001, ANN202
        calls.append(self.feature)
        if not wait_or_cancelled(gate):
            return None  # the app closed before the test opened the gate
        return real(self)

    monkeypatch.setattr(FeatureDetailScreen, "load", gated)
    with Session.open(tiny_folder / "tiny.h5", read_only=True) as ro:
        expected = load_card_inputs(ro).card(3)
    app = SalveApp(sessions_folder=tiny_folder, start_session="tiny", clock=lambda: FIXED_TIME)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
            app.push_screen(FeatureDetailScreen(3, selected_class=1))
            await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen) and calls, what="load")
            screen = app.screen
            notice = screen.query_one(LoadingNotice)
            assert "loading feature 3: latents, decoder, test images" in str(notice.render())
            assert not screen.loaded and screen.card is None
            # Content actions wait for the content: < > do nothing, e opens nothing.
            assert screen.check_action("step_feature", (1,)) is None
            await pilot.press("greater_than_sign", "e")
            assert app.screen is screen and screen.feature == 3
            # Keys that choose what to look at are kept and applied when the card arrives.
            await pilot.press("2", "down")
            assert screen.panel == "classes" and screen.selection == (1, 0)

            gate.set()
            await wait_for(pilot, lambda: screen.loaded and screen.card is not None, what="card")
            await pilot.pause(0.1)
            assert calls == [3]  # loaded once
            assert "-hidden" in notice.classes
            card = screen.card
            assert card.feature == 3
            np.testing.assert_array_equal(card.top, expected.top)
            np.testing.assert_array_equal(card.bottom, expected.bottom)
            # show() drew the rows: the ▲ row's thumbnails are the top samples, in order.
            top_row = screen.query_one("#row-top", SampleRow)
            shown = [t.sample for t in top_row.query(Thumbnail) if t.sample is not None]
            assert shown == [int(s) for s in expected.top[: len(shown)]] and shown
            assert str(screen.query_one("#feature-info", Static).render()).startswith("feature 3/")
            # The kept keys took effect on the drawn card.
            assert screen.query_one("#feature-panels").current == "panel-classes"
            assert screen.selected_sample == int(expected.quantile_samples[0])
            # Now the content actions run: > loads feature 4 through the same pattern.
            await pilot.press("greater_than_sign")
            await wait_for(pilot, lambda: screen.card is not None and screen.card.feature == 4, what="feature 4")
            assert calls == [3, 4]
    finally:
        gate.set()
