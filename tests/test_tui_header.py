"""Every screen's header: the breadcrumb, the global job indicator (bar, %, ETA, how the job
ended), the read-only badge; the message history (ctrl+n) keeps what toasts showed."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from test_session_safety import read_only_folder
from test_tui_analysis import make_synthetic_session, synth_app
from test_tui_helpers import wait_for
from textual.widgets import Static

from core.jobs import Progress
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.messages import MessagesScreen
from salve_tui.app.widgets.chrome import JobIndicator, bar_text


def header_text(app: SalveApp) -> str:
    return str(app.screen.query_one(JobIndicator).render())


def title_text(app: SalveApp) -> str:
    from textual.widgets._header import HeaderTitle

    return str(app.screen.query_one(HeaderTitle).render())


def test_bar_text_fills_in_eighths() -> None:
    assert bar_text(0.0, 4) == "    "
    assert bar_text(1.0, 4) == "████"
    assert bar_text(0.5, 4) == "██  "
    assert bar_text(1 / 32, 4) == "▏   "  # one eighth of one of four cells
    assert bar_text(2.0, 4) == "████"  # clamped


async def test_job_shows_on_every_screen_with_percent_and_then_how_it_ended(
        synth_session_folder: Path) -> None:
    release = threading.Event()
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        assert "synth" in title_text(app)

        def body(progress, cancel):  # noqa: ANN001, ANN202
            progress(Progress("demo", 3, 12, "step 3", started_at=None))
            release.wait()
            return []

        app.start_job("long thing", body)
        await wait_for(pilot, lambda: "25%" in header_text(app), what="percent on the dashboard")
        assert "long thing" in header_text(app) and "ETA" in header_text(app)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen), what="edit preview")
        await wait_for(pilot, lambda: "25%" in header_text(app), what="percent on the edit preview")
        assert title_text(app).endswith("synth › Edit preview")
        release.set()
        await wait_for(pilot, lambda: "✓ long thing done" in header_text(app), what="done in header")
        assert not app.screen.query("Toast")  # no toast over the results
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, MessagesScreen), what="messages")
        listed = str(app.screen.query_one("#messages-text", Static).render())
        assert "'long thing' finished" in listed
        await pilot.press("escape")
        assert isinstance(app.screen, EditPreviewScreen)


async def test_messages_keep_what_toasts_said(tmp_path: Path) -> None:
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.notify("first", title="one")
        app.notify("second; use --mode suppress", severity="warning")
        await pilot.press("ctrl+n")
        listed = str(app.screen.query_one("#messages-text", Static).render())
        assert listed.index("second") < listed.index("one: first")  # newest first
        assert "switch to suppress with s" in listed and "--mode" not in listed


async def test_read_only_session_has_a_badge_and_refuses_recording(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    make_synthetic_session(folder)
    shutil.rmtree(folder / "synth.exports", ignore_errors=True)
    with read_only_folder(folder):
        app = SalveApp(sessions_folder=folder, start_session="synth")
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
            await wait_for(pilot, lambda: "READ-ONLY" in header_text(app), what="badge")
            await pilot.press("a")  # run all: would save
            await pilot.pause()
            assert not app.jobs.busy
            said = " ".join(m.text for m in app.messages.messages)
            assert "read-only" in said and "copy its .h5 file" in said
            assert "Errno" not in said and "--" not in said


async def test_a_title_change_while_the_header_is_torn_down_does_not_end_the_app() -> None:
    """Random keys ended the app about one run in three with ``NoMatches: 'HeaderTitle' on
    ScreenHeader()``: Textual's Header catches NoScreen, not NoMatches, when the title changes
    after its HeaderTitle is gone (the screen being torn down)."""
    from textual.app import App, ComposeResult
    from textual.widgets._header import HeaderTitle

    from salve_tui.app.widgets.chrome import ScreenHeader

    class HeaderOnly(App):
        def compose(self) -> ComposeResult:
            yield ScreenHeader()

    app = HeaderOnly()
    async with app.run_test() as pilot:
        await pilot.pause()
        await app.screen.query_one(HeaderTitle).remove()
        app.title = "renamed while torn down"
        await pilot.pause()
        app.sub_title = "again"
        await pilot.pause()
        assert app.is_running and app.return_code is None
