"""Every number dialog validates the same way: a wrong value (not a number, out of range, not
whole) keeps the dialog open with the reason under the field; only a valid one closes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from test_tui_helpers import wait_for
from textual.widgets import Input, Static

from salve_tui.app.screens.analysis_alpha_explorer import AlphaExplorerScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.number_input import NumberInputModal, parse_number


def test_parse_number_names_the_problem() -> None:
    assert parse_number(" −2.5 ") == -2.5
    assert parse_number("7", 0, 63, whole=True) == 7
    with pytest.raises(ValueError, match="from 0 to 63"):
        parse_number("99", 0, 63, whole=True)
    with pytest.raises(ValueError, match="not a whole number"):
        parse_number("2.5", 0, 63, whole=True)
    with pytest.raises(ValueError, match="not a number"):
        parse_number("abc")
    with pytest.raises(ValueError, match="≥ 0"):
        parse_number("-1", 0)


async def test_alpha_explorer_feature_dialog_keeps_wrong_input(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaExplorerScreen) and app.screen.loaded,
                       what="explorer")
        explorer = app.screen
        for typed, reason in (("99", "from 0 to 63"), ("abc", "not a number"), ("2.5", "not a whole")):
            await pilot.press("equals_sign")
            await wait_for(pilot, lambda: isinstance(app.screen, NumberInputModal), what="dialog")
            app.screen.query_one(Input).value = typed
            await pilot.press("enter")
            assert isinstance(app.screen, NumberInputModal), f"'{typed}' closed the dialog"
            assert reason in str(app.screen.query_one("#number-error", Static).render())
            assert app.screen.query_one(Input).value == typed  # the input is kept to correct
            await pilot.press("escape")
        await pilot.press("equals_sign")
        await wait_for(pilot, lambda: isinstance(app.screen, NumberInputModal), what="dialog")
        app.screen.query_one(Input).value = "13"
        await pilot.press("enter")
        assert app.screen is explorer and explorer.feature == 13
