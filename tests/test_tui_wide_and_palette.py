"""Conventions: the footer uses the width it has, help lists every view one keystroke away, and
the palette offers a view's main actions ("all dominant") from every screen."""

from __future__ import annotations

from pathlib import Path

from test_tui_analysis import synth_app
from test_tui_helpers import wait_for
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.help import HelpScreen


async def footer_keys(size: tuple[int, int], folder: Path) -> list[str]:
    app = synth_app(folder)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.loaded,
                       what="edit preview")
        await pilot.pause(0.2)
        keys = [key.key for key in app.screen.query(FooterKey)]
        right = max(key.region.right for key in app.screen.query(FooterKey))
        assert right <= size[0], "the footer runs past the screen"
        return keys


async def test_footer_shows_more_keys_when_wide(synth_session_folder: Path) -> None:
    narrow = await footer_keys((80, 24), synth_session_folder)
    wide = await footer_keys((200, 60), synth_session_folder)
    assert set(narrow) < set(wide)
    assert {"equals_sign", "b"} <= set(wide) - set(narrow)  # type strength, confusion: help-only at 80


async def test_help_lists_every_view_and_its_key_opens_it(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen), what="edit preview")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        views = app.screen.query_one("#help-views", Static)
        listed = str(views.render())
        assert all(f"{view.key} {view.title}" in listed for view in app.views)
        assert views.region.bottom <= 24  # in view without paging
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen), what="α_crit from help")


async def test_all_dominant_from_the_dashboard_palette(synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        titles = {c.title: c for c in app.get_system_commands(app.screen)}
        title = next(t for t in titles if "all dominant" in t)
        assert title.startswith("α_crit: ") and "(k, then a)" in title
        assert any(t.startswith("Exports: write every export") for t in titles)
        titles[title].callback()
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen), what="α_crit")
        await wait_for(pilot, lambda: any("all dominant" in m.text or "all dominant" in m.title
                                          for m in app.messages.messages) or app.jobs.busy
                       or "all dominant" in " ".join(str(x) for x in app.log_lines), what="the job")
        assert any("all dominant" in str(line) for line in app.log_lines)
        crit_titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not any(t.startswith("α_crit: ") for t in crit_titles)  # its own command instead
